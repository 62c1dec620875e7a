"""Time to first token through the answering session (`voco.session`) on a long video: all segments vs a
retrieved subset.

    python bench/bench_session.py --model synthetic --minutes 60 --subset 64
    python bench/bench_session.py --model tiny --minutes 10

A video of `--minutes` at the model's segment length (one compressed segment repeated: the caches are
position-free, so the cost does not depend on what they show). `all` answers from every segment (or, past the model's
position budget, from as many as fit, spread evenly: `segments_used` says how many);
`retrieved` from `--subset` of them picked by `RetrievedSegments` from given scores (random here: the
scorer's own cost is not included); `retrieved_scored` the same with the relevance the app computes inside the
timed answer (the model's own search embedder embeds the question, `video_scores` ranks the video's stored
vectors: one per segment, the repeated segment's vector plus a little noise). TTFT is the session's (selection
+ prefill of the question over the placed caches + the first token), best of `--repeats`. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_model, machine  # noqa: E402
from voco.generation import ContextTooLong  # noqa: E402
from voco.search import embedder_for, video_scores  # noqa: E402
from voco.session import AnswerSession, RetrievedSegments, UniformSubset  # noqa: E402

QUESTION = "what color is the circle that moves left?"


def session_ttft_ms(model, caches, selector, scores, repeats: int) -> tuple[float, int]:
    """(best TTFT in ms, segments used) over `repeats` answers of one token."""
    best, used = float("inf"), 0
    for _ in range(repeats + 1):  # the first is a warm-up
        _, stats = AnswerSession(model, caches, selector).answer(QUESTION, scores, max_new_tokens=1)
        best, used = min(best, stats.ttft_ms), len(stats.segments_used)
    return best, used


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="synthetic", help="tiny, a bundled name or a checkpoint folder")
    p.add_argument("--minutes", type=float, default=60.0, help="video length")
    p.add_argument("--subset", type=int, default=64, help="segments the retrieved answer uses")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    model = bench_model(args.model)
    size = model.config.vision_config.image_size
    frames = np.random.default_rng(0).integers(0, 256, (model.voco.frames_per_segment, size, size, 3), np.uint8)
    segments = max(1, round(args.minutes * 60 / model.voco.segment_seconds))
    caches = [model.compress([frames])[0]] * segments
    scores = list(np.random.default_rng(1).random(segments))
    try:
        all_ms, all_used = session_ttft_ms(model, caches, "all", None, args.repeats)
    except ContextTooLong:  # more segments than the model's position budget: as many as fit, spread evenly
        all_ms, all_used = session_ttft_ms(model, caches, UniformSubset(), None, args.repeats)
    sub_ms, sub_used = session_ttft_ms(model, caches, RetrievedSegments(max_segments=args.subset), scores,
                                       args.repeats)
    embedder = embedder_for(model)
    vectors = embedder.segment_vectors(caches[:1], frames=[frames]).repeat(segments, axis=0)
    vectors += np.random.default_rng(2).normal(0, 0.01, vectors.shape).astype(np.float32)

    def relevance():  # what the app runs when it must choose (MomentSearch.scores_for, vectors read)
        return video_scores(vectors, embedder.query_vector(QUESTION), embedder.novelty_weight)
    scored_ms, scored_used = session_ttft_ms(model, caches, RetrievedSegments(max_segments=args.subset), relevance,
                                             args.repeats)
    print(json.dumps({"bench": "session", "model": args.model, "minutes": args.minutes, "segments": segments,
                      "k": model.k, "all": {"segments_used": all_used, "ttft_ms": round(all_ms, 1)},
                      "retrieved": {"segments_used": sub_used, "ttft_ms": round(sub_ms, 1)},
                      "retrieved_scored": {"segments_used": scored_used, "ttft_ms": round(scored_ms, 1),
                                           "embedder": embedder.name},
                      "ttft_ratio": round(all_ms / sub_ms, 1), "ttft_ratio_scored": round(all_ms / scored_ms, 1),
                      "machine": machine()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
