"""What a trained ATP model keeps and what it costs, on the test split of its training config (one JSON line).

    python -m voco.compressors.atp.stats --checkpoint runs/table/atp-30/final --config configs/table.yaml [--videos 100]

- tokens kept per layer: mean, std, min and max over the test segments (hard masks, as stored);
- the layer-averaged kept share of the vision-token KV, and the cache's KV bytes per segment (+ the per-token
  positions and per-layer lengths a ragged pack adds);
- analytic compress-pass FLOPs per segment with the pruned tokens removed from each layer on (voco/cost.py's
  count), against the same pass keeping every token;
- time to first token over `--segments` segments: the ragged caches against the same model's caches of
  every vision token (padded-layer answering vs a plain dense cache), median of `--repeats`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from voco.cache import RaggedSegmentCache
from voco.compressors.atp.pruning import atp_layers
from voco.compressors.dense import FullCompressor
from voco.cost import DecoderShape, pass_flops


def kept_per_layer(caches: list[RaggedSegmentCache]) -> dict:
    lengths = torch.stack([c.lengths for c in caches]).float()  # [S, layers]
    n = caches[0].span
    return {"mean": [round(float(x), 2) for x in lengths.mean(0)], "std": [round(float(x), 2) for x in lengths.std(0)],
            "min": [int(x) for x in lengths.min(0).values], "max": [int(x) for x in lengths.max(0).values],
            "vision_tokens": n, "kept_share": round(float(lengths.mean() / n), 4),
            "kept_share_std": round(float((lengths.mean(1) / n).std()), 4)}


def compress_flops(shape: DecoderShape, n: int, text: int, lengths: torch.Tensor) -> float:
    """One segment's compress pass: layer l runs <seg> + its kept vision tokens + the text stand-in."""
    one = DecoderShape(1, shape.hidden, shape.ffn, shape.heads, shape.kv_heads, shape.head_dim)
    return float(sum(pass_flops(one, 1 + int(k) + text) for k in lengths))


def ttft_ms(model, question: str, caches, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.next_token_logits(question, caches)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(model, segments, question: str, segments_for_ttft: int, repeats: int) -> dict:
    caches = model.compress(segments)
    shape = DecoderShape.from_config(model.lm.config.get_text_config(), dtype_bytes=model.dtype.itemsize)
    n = caches[0].span
    text = len(model.compressor.text_ids(model, None))
    flops = [compress_flops(shape, n, text, c.lengths) for c in caches]
    full_flops = compress_flops(shape, n, text, torch.full((shape.layers,), n))
    kv_bytes = [c.nbytes for c in caches]
    index_bytes = [8 * c.kv.shape[0] + 8 * c.layers for c in caches]  # positions + lengths, int64
    with torch.inference_mode():
        vision = model.vision_embeds(segments[:segments_for_ttft])
        dense = FullCompressor(1).compress_batch(model, vision, model.fingerprint)
    timeline = caches[:segments_for_ttft]
    dense_fn = FullCompressor(1)
    ragged_ms = ttft_ms(model, question, timeline, repeats)
    prefix_ids, suffix_ids = model.prompt_ids(question)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.inference_mode():
            past, pos = dense_fn.past_from_caches(model, dense, prefix_ids)
            model.forward_tokens(suffix_ids, past, pos)
        times.append((time.perf_counter() - start) * 1000)
    return {"atp_layers": atp_layers(shape.layers), "segments": len(caches), "kept_per_layer": kept_per_layer(caches),
            "kv_bytes_per_segment": round(statistics.mean(kv_bytes)),
            "kv_bytes_full": shape.layers * 2 * shape.kv_heads * n * shape.head_dim * model.dtype.itemsize,
            "index_bytes_per_segment": round(statistics.mean(index_bytes)),
            "compress_mflops": round(statistics.mean(flops) / 1e6, 2),
            "compress_mflops_full": round(full_flops / 1e6, 2),
            "ttft_ms": round(ragged_ms, 2), "ttft_ms_all_tokens": round(statistics.median(times), 2),
            "ttft_segments": len(timeline)}


def main(argv: list[str] | None = None) -> int:
    from voco.model import VoCoModel
    from voco.train.config import load_config
    from voco.train.datasets import eval_examples

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a trained `atp` checkpoint folder")
    parser.add_argument("--config", default="configs/table.yaml", help="its training config (for the test split)")
    parser.add_argument("--videos", type=int, default=100)
    parser.add_argument("--segments", type=int, default=8, help="segments on the timeline for time to first token")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compressor", help="read the checkpoint with this compressor instead (e.g. `atp` on a "
                        "full-token model: training-free pruning, the ATP modules at their prior thresholds)")
    parser.add_argument("--k", type=int, help="with --compressor: its k (for `atp`, the budget in percent)")
    parser.add_argument("--evaluate", action="store_true",
                        help="also score the test questions (greedy exact match, as the table does)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    overrides = {} if args.compressor is None else {"compressor": args.compressor, "k": args.k or 1}
    model = VoCoModel.from_pretrained(args.checkpoint, **overrides).eval()
    config = load_config(args.config)
    examples = eval_examples(config, model, "test", args.videos)
    out = {"checkpoint": args.checkpoint, "compressor": model.voco.compressor, "k": model.k}
    if args.evaluate:
        from voco.train.evaluate import evaluate

        result = evaluate(model, examples, max_new_tokens=config.eval_max_new_tokens)
        out["test"] = {key: result[key] for key in ("accuracy", "count", "average", "overall")}
    segments = [s for e in examples for s in e.segments]
    if isinstance(model.compress(segments[:1])[0], RaggedSegmentCache):
        out.update(measure(model, segments, examples[0].qas[0].question, args.segments, args.repeats))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
