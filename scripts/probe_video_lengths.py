"""Class-mixture validation accuracy by video length: does a question kind fail only on longer videos?

    python scripts/probe_video_lengths.py --model default                      # 2-4, 6-9, 10-12 segments
    python scripts/probe_video_lengths.py --model default --lengths 2-4 13-16 --videos 32
    python scripts/probe_video_lengths.py --lengths 2-8 --option drift=0.5   # another class-mixture knob too

Validation videos only (never the held-out photos). Each length range re-draws the recipe's validation videos
with `min_segments`/`max_segments` set to it, asks the kinds that name things (what, exists, first, last), and
answers from the `<voco>` caches by greedy decoding (`voco.train.evaluate`). Prints one line per range.
"""

from __future__ import annotations

import argparse

import torch
import yaml

from voco import VoCoModel
from voco.train.config import load_config
from voco.train.datasets import eval_examples
from voco.train.evaluate import evaluate


def length_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        low, high = int(low), int(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a length range is LOW-HIGH segments, got {text!r}") from None
    if not 1 <= low <= high:
        raise argparse.ArgumentTypeError(f"need 1 <= LOW <= HIGH, got {text!r}")
    return low, high


def option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"an option is KEY=VALUE (a class_mixture data option), got {text!r}")
    return key, yaml.safe_load(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="bundled model name or checkpoint folder")
    parser.add_argument("--config", default="configs/default.yaml", help="the recipe whose validation videos to draw")
    parser.add_argument("--lengths", nargs="+", type=length_range, default=[(2, 4), (6, 9), (10, 12)],
                        help="segment-count ranges LOW-HIGH")
    parser.add_argument("--option", action="append", type=option, default=[], metavar="KEY=VALUE",
                        help="also set this class_mixture data option (e.g. drift=0.5); repeatable")
    parser.add_argument("--videos", type=int, default=24, help="validation videos per range")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = VoCoModel.from_pretrained(args.model)
    config = load_config(args.config)
    base = {**config.data.options, "kinds": ["what", "exists", "first", "last"], **dict(args.option)}
    for low, high in args.lengths:
        config.data.options = {**base, "min_segments": low, "max_segments": high}
        result = evaluate(model, eval_examples(config, model, "val", args.videos), max_new_tokens=14)
        kinds = " ".join(f"{k}={v:.2f}" for k, v in sorted(result["accuracy"].items()))
        print(f"{low:>2}-{high:<2} segments: average {result['average']:.3f} | {kinds} | questions "
              f"{sum(result['count'].values())}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
