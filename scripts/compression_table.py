"""Compression table: full vs pool (m = k) vs VoCo (k = 1, 2, 4) vs Q-Former under one training budget, same data.

    python scripts/compression_table.py --config configs/table.yaml [--steps N] [--variants full,pool-1,voco-1]
    python scripts/compression_table.py --config configs/table.yaml --variants voco-2 --cache-dtypes model,int8

A row is any registered compressor (`voco.compressors`): `full`, or `NAME-K` (`pool-1`, `voco-2`, `qformer-1`).
Every row trains the config's model from the same seed on the same train videos for the same steps (only the
compressor and k differ; a compressor's own weights train where the LM reads its caches), then answers the
same test videos (open-ended greedy decoding, exact match). A row whose `OUTPUT_DIR/<row>/final/metrics.json`
exists is loaded, not retrained, so an interrupted table resumes (a half-trained row resumes from its
`last/`). Prints a markdown table and writes JSON (`--json`, default OUTPUT_DIR/compression_table.json).

`--cache-dtypes model,int8` scores every row's final model once per way of storing caches, side by side on the same
test questions: `model` answers from the caches as computed, `int8` from the same caches after a round trip through
the store's own quantize/dequantize (store/quant.py, what `python -m ingest --cache-dtype int8` stores).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

from voco.compressors import REGISTRY, compressor_class, load_builtin, module_names
from voco.data.questions import QUESTION_TYPES
from voco.train.config import ConfigError, TrainConfig, load_config

DEFAULT_VARIANTS = ("full", "pool-1", "voco-1", "voco-2", "voco-4")
load_builtin()  # every registered compressor names a row


def parse_variant(name: str) -> tuple[str, int]:
    """`NAME` for a compressor that does not use k (`full`), `NAME-K` for one that does (`voco-2`, `pool-1`,
    `qformer-1`) -> (compressor, k)."""
    kind, _, k = name.partition("-")
    cls = REGISTRY.get(kind)
    if cls is not None and not cls.uses_k and not k:
        return kind, 1
    if cls is None or not cls.uses_k or not k.isdigit() or int(k) < 1:
        forms = [c.name if not c.uses_k else f"{c.name}-K" for c in REGISTRY.values()]
        raise ValueError(f"variant must be one of {', '.join(forms)} (K >= 1), got {name!r}")
    return kind, int(k)


def variant_config(base: TrainConfig, name: str, steps: int | None = None, init_from: str | None = None) -> TrainConfig:
    """The row's config: the common budget with this compressor/k (optionally starting from `init_from`)."""
    config = copy.deepcopy(base)
    compressor, k = parse_variant(name)
    cls = compressor_class(compressor)
    config.model.voco = {**config.model.voco, "compressor": compressor, "k": k}
    config.output_dir = str(Path(base.output_dir) / (f"from-full/{name}" if init_from else name))
    if init_from:  # the paper's setting: every compressor is fine-tuned from the same full-token model
        config.model.init, config.model.path = "pretrained", init_from
    config.export_dir = None
    for stage in config.stages:
        if steps is not None:
            stage.steps = steps
            stage.warmup_steps = min(stage.warmup_steps, steps)  # --steps sets every stage
        # a compressor's own weights (pool's linear, the Q-Former) train wherever the LM reads the compressed
        # caches; other compressors have none (and a `patches` stage trains the vision tower only)
        reads_caches = stage.training_objective.answers and stage.view == "cache"
        if cls.keeps_all_vision:  # the cache probe is a compression aid; `full` keeps every token
            stage.probe_weight = 0.0
        own = [cls.module_name] if cls.module_name and reads_caches else []
        stage.train = [g for g in stage.train if g not in module_names()] + own
    return TrainConfig(**{f: getattr(config, f) for f in config.__dataclass_fields__})  # re-validate


def tokens_per_segment(config: TrainConfig) -> tuple[int, int]:
    """(vision tokens per segment, tokens kept per segment) for a new-model config."""
    m = config.model
    n = (m.image_size // m.patch_size) ** 2 * m.voco.get("frames_per_segment", 4)
    compressor, k = m.voco.get("compressor", "voco"), m.voco.get("k", 1)
    return n, compressor_class(compressor)(k).kept_tokens(n)


def parse_cache_dtypes(text: str) -> list[str]:
    from store.quant import check_cache_dtype

    dtypes = [check_cache_dtype(d.strip(), "--cache-dtypes") for d in text.split(",") if d.strip()]
    if not dtypes or len(set(dtypes)) != len(dtypes):
        raise ValueError(f"--cache-dtypes must name each way of storing caches once, got {text!r}")
    return dtypes


def run_variant(base: TrainConfig, name: str, steps: int | None, progress: bool, init_from: str | None = None) -> dict:
    from voco.train.loop import train

    config = variant_config(base, name, steps, init_from)
    done = Path(config.output_dir) / "final" / "metrics.json"
    if done.is_file():
        metrics = json.loads(done.read_text())
    else:
        started = time.perf_counter()
        metrics = train(config, resume=True, progress=progress)
        metrics["wall_seconds"] = round(time.perf_counter() - started, 1)
    n, kept = tokens_per_segment(config)
    test = metrics["test"]
    compressor = config.model.voco["compressor"]
    return {"variant": name, "compressor": compressor, "kept": kept, "vision_tokens": n,
            "reference": compressor_class(compressor).keeps_all_vision,
            "accuracy": test["accuracy"], "count": test["count"], "average": test["average"],
            "overall": test["overall"], "steps": metrics["steps"], "train_seconds": metrics["train_seconds"],
            "blind_baseline": metrics.get("blind_baseline")}


def stored_as_rows(base: TrainConfig, row: dict, cache_dtypes: list[str], init_from: str | None) -> list[dict]:
    """`row` scored again from its saved final model once per cache dtype (caches round-tripped through the store's
    quantize/dequantize for int8), on the same test questions; one row each."""
    from store.quant import INT8, round_trip
    from voco import VoCoModel
    from voco.train.datasets import eval_examples
    from voco.train.evaluate import evaluate

    config = variant_config(base, row["variant"], None, init_from)
    model = VoCoModel.from_pretrained(str(Path(config.output_dir) / "final")).eval()
    test = eval_examples(config, model, "test", config.data.test_videos)
    out = []
    for dtype in cache_dtypes:
        started = time.perf_counter()
        result = evaluate(model, test, max_new_tokens=config.eval_max_new_tokens,
                          cache_transform=round_trip if dtype == INT8 else None)
        name = row["variant"] if dtype == "model" else f"{row['variant']} ({dtype})"
        out.append({**row, "variant": name, "cache_dtype": dtype, "accuracy": result["accuracy"],
                    "count": result["count"], "average": result["average"], "overall": result["overall"],
                    "eval_seconds": round(time.perf_counter() - started, 1),
                    "reference": row["reference"] and dtype == "model"})
    return out


def add_retention(rows: list[dict]) -> None:
    full = next((r for r in rows if r.get("reference")), None)  # the uncompressed row
    for r in rows:
        r["retention"] = r["average"] / full["average"] if full and full["average"] > 0 else None


def format_table(rows: list[dict]) -> str:
    types = [t for t in QUESTION_TYPES if any(t in r["accuracy"] for r in rows)]
    head = ["compressor", "kept/seg"] + types + ["average", "retention"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["variant"], str(r["kept"])] + [f"{100 * r['accuracy'].get(t, float('nan')):.1f}" for t in types]
        cells += [f"{100 * r['average']:.1f}", "-" if r["retention"] is None else f"{100 * r['retention']:.1f}%"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/table.yaml", help="the common budget (YAML training config)")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help="comma-separated rows: full, pool-M, voco-K, qformer-K (any registered compressor)")
    parser.add_argument("--steps", type=int, help="override the steps of every stage (the budget)")
    parser.add_argument("--output-dir", help="override the config's output_dir")
    parser.add_argument("--json", help="where to write the table as JSON (default OUTPUT_DIR/compression_table.json, "
                        "or OUTPUT_DIR/compression_table_from_full.json with --from-full)")
    parser.add_argument("--from-full", action="store_true",
                        help="first train the `full` row, then fine-tune every row (full included) from it for the "
                             "same budget, as the paper fine-tunes each compressor from one LLaVA")
    parser.add_argument("--probe-weight", type=float,
                        help="add the cache probe (voco.train.probe) with this weight to every stage where a "
                             "compressed row reads its caches (not to `full`); rows go to OUTPUT_DIR/probe-W")
    parser.add_argument("--cache-dtypes", default="model",
                        help="comma-separated ways of storing caches to score each row with, side by side: model (as "
                             "computed), int8 (round trip through store/quant.py); more than `model` re-scores each "
                             "row's saved final model")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        base = load_config(args.config)
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        for v in variants:
            parse_variant(v)
        cache_dtypes = parse_cache_dtypes(args.cache_dtypes)
    except (ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.output_dir:
        base.output_dir = args.output_dir
    if args.probe_weight is not None:
        if args.probe_weight < 0:
            print("error: --probe-weight must be >= 0", file=sys.stderr)
            return 2
        for stage in base.stages:
            if stage.training_objective.answers and stage.view == "cache":
                stage.probe_weight = args.probe_weight
        base.output_dir = str(Path(base.output_dir) / f"probe-{args.probe_weight:g}")
    init_from = None
    if args.from_full:
        run_variant(base, "full", args.steps, not args.no_progress)
        init_from = str(Path(base.output_dir) / "full" / "final")
    rows = [run_variant(base, v, args.steps, not args.no_progress, init_from) for v in variants]
    if cache_dtypes != ["model"]:
        rows = [r for row in rows for r in stored_as_rows(base, row, cache_dtypes, init_from)]
    blind = next((r["blind_baseline"] for r in rows if r.get("blind_baseline")), None)
    if blind:  # the floor: answering from the question alone (same test questions)
        rows.append({"variant": "question-only", "compressor": "none", "kept": 0, "vision_tokens": 0,
                     "accuracy": blind["accuracy"], "count": blind["count"], "average": blind["average"],
                     "overall": blind["overall"], "steps": 0, "train_seconds": 0.0})
    for r in rows:
        r.pop("blind_baseline", None)
    add_retention(rows)
    steps = max((r["steps"] for r in rows), default=0)
    m = base.model
    if init_from:
        print(f"\nevery row fine-tuned from the `full` model trained with the same budget ({init_from})")
    print(f"\nbudget: {steps} steps x {base.data.videos_per_batch} videos x {base.data.questions_per_video} questions "
          f"per compressor, same seed and train videos; model hidden {m.hidden}, {m.layers} layers, "
          f"{m.image_size} px / patch {m.patch_size}; test: {base.data.test_videos} videos, greedy exact match\n")
    table = format_table(rows)
    print(table)
    default_json = "compression_table_from_full.json" if init_from else "compression_table.json"
    out = Path(args.json) if args.json else Path(base.output_dir) / default_json
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": args.config, "steps": steps, "init_from": init_from, "rows": rows,
                               "markdown": table}, indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
