"""python bench/bench_needle_qa.py   # needle-video answer accuracy: retrieved vs uniform vs all, T = 16 .. 1024

    python bench/bench_needle_qa.py --lengths 16 64 --needles-per-color 1   # quick
    python bench/bench_needle_qa.py --colors red                            # only the needle retrieval finds

A needle video of T segments: T - 1 plain-background segments (voco/data/needle.py, no object) and one
needle segment showing a circle of one colour; the question is "what color is the circle?" and the answer
the needle's colour, which the bundled synthetic model reads well from the needle alone (`alone_accuracy`); what it
answers with no circle in view is `no_needle_answer` (needles of that colour score right when missed).
Caches are position-free, so a pool of distinct segments is compressed once and a long video is a list of
those caches (the needle at a random place). Per T and selection:

- `retrieved`: `RetrievedSegments(max_segments=--subset)` with scores from `VoCoKeyEmbedder` (in memory:
  the <voco> keys of the caches vs the question's queries) mixed with each segment's novelty in the video
  by `video_scores` (voco/search.py; `--novelty-weight 0`: the question score alone);
- `uniform`: a uniform subset of the same size (`UniformSubset` at that budget);
- `all`: every segment (they fit the synthetic model's positions up to ~4k segments).

Reports accuracy, needle recall (share of answers whose selection held the needle) and mean/p50 TTFT (the
session's: selection + prefill + first token; retrieval's scoring is timed apart as `score_ms`).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_model, machine  # noqa: E402
from voco.data.needle import draw_segment  # noqa: E402
from voco.data.world import OBJECT_COLORS  # noqa: E402
from voco.search import DEFAULT_NOVELTY_WEIGHT, VoCoKeyEmbedder, video_scores  # noqa: E402
from voco.session import AnswerSession, RetrievedSegments, UniformSubset  # noqa: E402

QUESTION = "what color is the circle?"
SELECTIONS = ("retrieved", "uniform", "all")


def compress_pools(model, args) -> tuple[list, list[tuple[str, object]]]:
    """(plain-background caches, [(colour, needle cache)]), each segment compressed once."""
    rng = np.random.default_rng(args.seed)
    fps = model.voco.frames_per_segment
    hay = [draw_segment(rng, fps, args.size, None) for _ in range(args.hay)]
    colors = [c for c in args.colors for _ in range(args.needles_per_color)]
    needles = [draw_segment(rng, fps, args.size, ("circle", c)) for c in colors]
    caches = model.compress(hay + needles, batch_size=32)
    return caches[:len(hay)], list(zip(colors, caches[len(hay):], strict=True))


def answer(model, caches, question: str, selector, scores=None) -> tuple[str, list[int], float]:
    """(answer, indices used, TTFT ms) through the answering session."""
    text, stats = AnswerSession(model, caches, selector).answer(question, scores, max_new_tokens=4)
    return text, [s.index for s in stats.segments_used], stats.ttft_ms


def run_length(model, embedder, hay, hay_vecs, needles, query, T: int, args, rng) -> dict:
    """Every needle in one video of T segments, answered by each selection."""
    rows = {name: {"correct": [], "found": [], "ttft_ms": []} for name in SELECTIONS}
    score_ms = []
    for color, needle in needles:
        picks = rng.choice(len(hay), T - 1, replace=True)
        at = int(rng.integers(T))
        order = np.insert(picks, at, -1)  # -1: the needle
        caches = [needle if i < 0 else hay[i] for i in order]
        start = time.perf_counter()  # scoring as a search would: the segment vectors are stored at ingest
        vectors = np.stack([embedder.segment_vectors([needle])[0] if i < 0 else hay_vecs[i] for i in order])
        scores = list(video_scores(vectors, query, args.novelty_weight))
        score_ms.append((time.perf_counter() - start) * 1e3)
        runs = {"retrieved": (RetrievedSegments(max_segments=args.subset), scores)}
        uniform = UniformSubset().select(T, min(args.subset, T))
        runs["uniform"] = ("all", None, uniform)
        runs["all"] = ("all", None)
        for name in SELECTIONS:
            selector, sc, *subset = runs[name]
            used_caches = [caches[i] for i in subset[0]] if subset else caches
            text, used, ttft = answer(model, used_caches, QUESTION, selector, sc)
            used = [subset[0][i] for i in used] if subset else used
            rows[name]["correct"].append(text == color)
            rows[name]["found"].append(at in used)
            rows[name]["ttft_ms"].append(ttft)
    out = {name: {"accuracy": round(float(np.mean(r["correct"])), 3),
                  "needle_recall": round(float(np.mean(r["found"])), 3),
                  "ttft_ms_mean": round(float(np.mean(r["ttft_ms"])), 1),
                  "ttft_ms_p50": round(float(np.median(r["ttft_ms"])), 1)} for name, r in rows.items()}
    out["score_ms_mean"] = round(float(np.mean(score_ms)), 2)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="synthetic",
                   help="a model of the synthetic world (its needles are coloured shapes)")
    p.add_argument("--lengths", type=int, nargs="+", default=[16, 64, 256, 1024])
    p.add_argument("--colors", nargs="+", default=list(OBJECT_COLORS), choices=list(OBJECT_COLORS))
    p.add_argument("--needles-per-color", type=int, default=2)
    p.add_argument("--hay", type=int, default=64, help="distinct plain-background segments in the pool")
    p.add_argument("--subset", type=int, default=8, help="segments the retrieved and uniform answers use")
    p.add_argument("--size", type=int, default=96, help="frame side in pixels")
    p.add_argument("--layer", type=int, default=None, help="search layer (default: the embedder's)")
    p.add_argument("--novelty-weight", type=float, default=DEFAULT_NOVELTY_WEIGHT,
                   help="w in z(question) + w * z(novelty) for the retrieved selection (voco/search.py "
                   "video_scores); 0: the question score alone")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    model = bench_model(args.model).eval()
    with torch.inference_mode():
        hay, needles = compress_pools(model, args)
        embedder = VoCoKeyEmbedder(model, args.layer)
        hay_vecs = embedder.segment_vectors(hay)
        query = embedder.query_vector(QUESTION)
        alone = [answer(model, [cache], QUESTION, "all")[0] == color for color, cache in needles]
        answer(model, hay[:16], QUESTION, "all")  # warm-up: the first long prefill pays one-off costs
        rng = np.random.default_rng(args.seed + 1)
        result = {"bench": "needle_qa", "model": args.model, "question": QUESTION, "colors": args.colors,
                  "needles": len(needles), "subset": args.subset, "signal": embedder.name,
                  "novelty_weight": args.novelty_weight,
                  "alone_accuracy": round(float(np.mean(alone)), 3),
                  # what the model says with no circle in view: a miss that happens to match scores as correct
                  "no_needle_answer": answer(model, hay[:args.subset], QUESTION, "all")[0]}
        for T in args.lengths:
            result[f"T{T}"] = run_length(model, embedder, hay, hay_vecs, needles, query, T, args, rng)
    first, last = f"T{args.lengths[0]}", f"T{args.lengths[-1]}"
    result["retrieved_drop_points"] = round(100 * (result[first]["retrieved"]["accuracy"]
                                                   - result[last]["retrieved"]["accuracy"]), 1)
    result["machine"] = machine()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
