"""A short tour of the library: generate a clip, compress it into VoCo caches, ask questions.

    python -m voco.demo                 # the bundled `synthetic` model, trained on this clip's world
    python -m voco.demo --model tiny    # a tiny random model: shows the mechanics, answers are noise
    python -m voco.demo --model PATH    # your own checkpoint folder
"""

from __future__ import annotations

import argparse
import time

import torch

from voco.data.synthetic import make_example
from voco.loading import load_model
from voco.reference import reference_logits
from voco.segments import split_frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voco.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="synthetic",
                        help="a bundled name ('synthetic', 'default'), 'tiny', or a checkpoint folder")
    parser.add_argument("--seed", type=int, default=0, help="which synthetic test clip to generate")
    parser.add_argument("--questions", type=int, default=4, help="how many of the clip's questions to ask")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    model = load_model(args.model)
    video, qas = make_example("test", args.seed)
    segments = split_frames(video.frames, video.fps, model.voco.segment_seconds, model.voco.frames_per_segment)
    print(f"clip: {video.video_id}, {video.duration_s:.1f} s, {len(video.frames)} frames "
          f"{video.frames.shape[2]}x{video.frames.shape[1]} @ {video.fps} fps -> {len(segments)} segments "
          f"of {model.voco.segment_seconds:g} s ({model.voco.frames_per_segment} frames each)")

    start = time.perf_counter()
    caches = model.compress(segments)
    seconds = time.perf_counter() - start
    n_vision = model.embed_segment(segments[0]).shape[0]
    kept = caches[0].k
    print(f"compressed in {seconds:.2f} s: {n_vision} vision tokens -> {kept} kept token(s) per segment "
          f"({n_vision / kept:.0f}x), {caches[0].nbytes} bytes of KV per segment, "
          f"{sum(c.nbytes for c in caches) / 1024:.1f} KiB for the whole clip")

    for qa in qas[: args.questions]:
        start = time.perf_counter()
        reply = model.answer(qa.question, caches, max_new_tokens=8)
        ms = (time.perf_counter() - start) * 1000
        print(f"  Q: {qa.question}\n     model: {reply!r}   truth: {qa.answer}   ({ms:.0f} ms)")

    two_stage = model.next_token_logits(qas[0].question, caches)
    single = reference_logits(model, qas[0].question, segments)
    print(f"two-stage vs single-pass reference, max |logit diff|: {float((two_stage - single).abs().max()):.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
