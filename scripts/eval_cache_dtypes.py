"""A trained checkpoint on its own synthetic test split, once per way of storing caches, side by side.

    python scripts/eval_cache_dtypes.py --model synthetic --config configs/synthetic.yaml   # 200 test videos
    python scripts/eval_cache_dtypes.py --model runs/x/final --config runs/x/train_config.yaml --cache-dtypes int8

(The bundled synthetic model's own train_config.yaml predates a config change; configs/synthetic.yaml is its recipe.)

Every question is answered from the same compressed caches, as computed (`model`) or after a round trip through
the store's own int8 quantize/dequantize (`int8`, store/quant.py: what `python -m ingest --cache-dtype int8`
stores); open-ended greedy decoding and exact match, as the training's test (voco/train/evaluate.py). Prints a
markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def score(model, config, cache_dtypes: list[str], test_videos: int) -> dict[str, dict]:
    """{cache dtype: the test metrics answering from caches stored so}, on the same questions."""
    from store.quant import INT8, round_trip
    from voco.train.datasets import eval_examples
    from voco.train.evaluate import evaluate

    test = eval_examples(config, model, "test", test_videos)
    out = {}
    for dtype in cache_dtypes:
        started = time.perf_counter()
        result = evaluate(model, test, max_new_tokens=config.eval_max_new_tokens,
                          cache_transform=round_trip if dtype == INT8 else None)
        out[dtype] = {k: v for k, v in result.items() if k != "samples"}
        out[dtype]["seconds"] = round(time.perf_counter() - started, 1)
    return out


def table(scores: dict[str, dict]) -> str:
    types = list(next(iter(scores.values()))["accuracy"])
    lines = ["| cache dtype | " + " | ".join(types) + " | average |", "|" + "---|" * (len(types) + 2)]
    for dtype, r in scores.items():
        cells = [f"{100 * r['accuracy'][t]:.1f}" for t in types] + [f"{100 * r['average']:.1f}"]
        lines.append(f"| {dtype} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="synthetic", help="bundled name or checkpoint folder")
    p.add_argument("--config", help="its training config (default: train_config.yaml in the checkpoint folder)")
    p.add_argument("--cache-dtypes", default="model,int8", help="comma-separated: model, int8")
    p.add_argument("--test-videos", type=int, help="default: the config's test_videos")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    import torch

    from store.quant import check_cache_dtype
    from voco import VoCoModel
    from voco.folders import resolve_checkpoint
    from voco.train.config import ConfigError, load_config

    try:
        dtypes = [check_cache_dtype(d, "--cache-dtypes") for d in args.cache_dtypes.split(",") if d]
        config = load_config(args.config or resolve_checkpoint(args.model) / "train_config.yaml")
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    model = VoCoModel.from_pretrained(args.model).eval()
    scores = score(model, config, dtypes, args.test_videos or config.data.test_videos)
    print(table(scores), file=sys.stderr)
    print(json.dumps({"model": args.model, "test_videos": args.test_videos or config.data.test_videos,
                      "cache_dtypes": scores}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
