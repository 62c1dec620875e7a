"""How many tokens of a segment must a cache keep for an assembled model to name what the segment shows?

    python -m voco.train --config configs/real_kv_distill.yaml --max-steps 40     # a model that reads names
    python scripts/probe_kept_names.py --model runs/real_kv_distill/last --keep 0 # every vision token
    python scripts/probe_kept_names.py --model runs/real_kv_distill/last --keep 4 # the top name's 4 tokens
    python scripts/probe_kept_names.py --model runs/real_kv_distill/last --keep 1 # its first token only
    python scripts/probe_kept_names.py --model runs/real_summary/last --view summary  # kv_distill's target
    python scripts/probe_kept_names.py --model runs/real_summary/last --view cache    # the <voco> caches

--view summary answers from the training view `summary`: the KV that `voco.train.kv_distill` teaches the
`<voco>` slots to hold (the summary tokens' in-context KV, moved to the `<voco>` positions), i.e. whether that
target is readable at all; --view cache from the model's own caches (what ingest stores).

A diagnostic for issue 11. Each segment is compressed in the full view (every vision token's KV, computed in
context), then only its first `--keep` kept tokens are placed on the timeline: for the class-evidence projector
those are the top class name's tokens. Answers are greedy, scored by exact match on class-mixture validation
videos (never the held-out photos). Prints one JSON line: accuracy per kind and the first answers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import torch

import voco.train.evaluate as evaluation
from voco import VoCoModel
from voco.train.class_mixture import ClassMixtureSpec, ClassMixtureWorld
from voco.train.forward import compress_segments


def keep_first(keep: int):
    """A stand-in for the evaluation's compress step: full-view KV, first `keep` kept tokens (0: all)."""

    def compress(model, segments, view="cache", **kwargs):
        kv, layout = compress_segments(model, segments, view="full", **kwargs)  # [S, layers, 2, H, n, D]
        if keep:
            kv, layout = kv[..., :keep, :], dataclasses.replace(layout, kept=keep)
        return kv, layout

    return compress


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="an assembled checkpoint folder (or bundled name)")
    p.add_argument("--keep", type=int, default=0, help="kept tokens per segment, from the first (0: all)")
    p.add_argument("--view", default="full", choices=("full", "summary", "cache"),
                   help="full: the full view's first --keep tokens; summary: kv_distill's target in the <voco> "
                        "slots; cache: the model's own caches")
    p.add_argument("--videos", type=int, default=8, help="class-mixture validation videos")
    p.add_argument("--answer-names", default="full", choices=("full", "word"),
                   help="how answers name classes (the model's training data.options.answer_names)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = VoCoModel.from_pretrained(args.model).eval()
    if args.keep < 0 or args.keep > model.projector.tokens_per_frame:
        raise SystemExit(f"error: --keep must lie in 0 .. {model.projector.tokens_per_frame} (tokens per frame)")
    spec = ClassMixtureSpec(max_segments=4, kinds=("what", "first", "exists"), answer_names=args.answer_names)
    world = ClassMixtureWorld.for_model(model, spec, questions_per_video=3)
    examples = [world.load("val", i) for i in range(args.videos)]
    if args.view == "full":
        evaluation.compress_segments = keep_first(args.keep)  # the evaluation's one compress call
    result = evaluation.evaluate(model, examples, max_new_tokens=14, view="cache" if args.view == "full" else args.view)
    print(json.dumps({"model": args.model, "view": args.view, "keep": args.keep, "accuracy": result["accuracy"],
                      "average": round(result["average"], 3),
                      "answers": [s["predicted"] for s in result["samples"][:6]]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
