"""Query cost: time to first token and decode speed over T segments, voco vs full caches vs recompute.

    python bench/bench_query.py --model synthetic          # docs/measured.md's figures (bundled synthetic-world model)
    python bench/bench_query.py --model tiny --segments 1,8,32

Side by side in one run, for each T: `voco` answers from k cached tokens per segment, `full` from
every vision token's cache (up to --full-max-tokens, timed even past the model's trained context),
`recompute` compresses the frames again before answering (no cache reuse). Prints one JSON line with
the figures, analytic FLOPs for this model's shapes and for LLaVA-1.5-7B's, and the ratios.

    python bench/bench_query.py --model llava7b --device cuda   # random weights, LLaVA-1.5-7B shapes, bf16
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_model, best_time, machine  # noqa: E402
from voco.cost import LLAVA_15_7B, DecoderShape, pass_flops  # noqa: E402
from voco.model import VoCoModel  # noqa: E402

QUESTION = "what color is the circle that moves left?"


def with_compressor(model: VoCoModel, compressor: str) -> VoCoModel:
    """The same weights under another compressor (no copy)."""
    voco = dataclasses.replace(model.voco, compressor=compressor)
    return VoCoModel(model.config, voco, model.vision_tower, model.projector, model.lm, model.tokenizer).eval()


def query_times(model: VoCoModel, caches, new_tokens: int, repeats: int, sync) -> tuple[float, float]:
    """(time to first token, decode tokens per second) answering from `caches`."""
    prefix, suffix = model.prompt_ids(QUESTION)

    @torch.inference_mode()
    def first_token():
        past, pos = model.past_from_caches(caches, prefix)
        return model.forward_tokens(suffix, past, pos)[-1].argmax(), past, pos + len(suffix)

    ttft = best_time(first_token, repeats, sync)
    token, past, pos = first_token()

    @torch.inference_mode()
    def decode():
        for i in range(new_tokens):
            model.forward_tokens([int(token)], past, pos + i)
        past.crop(-new_tokens)

    return ttft, new_tokens / best_time(decode, repeats, sync)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="synthetic",
                        help="a bundled name ('default', 'synthetic'), 'tiny', or a checkpoint folder")
    parser.add_argument("--segments", default="1,8,32,128,512", help="comma-separated T values")
    parser.add_argument("--recompute-max", type=int, default=128, help="largest T to recompute from frames")
    parser.add_argument("--full-max-tokens", type=int, default=20000, help="largest full-cache context to time")
    parser.add_argument("--new-tokens", type=int, default=16, help="decode steps timed per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    voco = bench_model(args.model, args.device).eval()
    full = with_compressor(voco, "full")
    F = voco.voco.frames_per_segment
    rng = np.random.default_rng(0)
    size = voco.config.vision_config.image_size
    distinct = [rng.integers(0, 256, (F, size, size, 3), dtype=np.uint8) for _ in range(8)]
    voco_caches, full_caches = voco.compress(distinct), full.compress(distinct)
    n_vision = full_caches[0].k
    shape = DecoderShape.from_config(voco.config.text_config, dtype_bytes=voco_caches[0].kv.element_size())
    prefix, suffix = voco.prompt_ids(QUESTION)
    P, Q = len(prefix), len(suffix)

    rows = []
    for T in (int(t) for t in args.segments.split(",")):
        row: dict = {"T": T}
        caches = [voco_caches[i % len(distinct)] for i in range(T)]
        row["voco_ttft_ms"], row["voco_decode_tok_s"] = (
            round(x, 3) for x in _scaled(query_times(voco, caches, args.new_tokens, args.repeats, sync)))
        # past the model's trained context the answers mean nothing, but the cost is the cost
        if P + T * n_vision + Q <= args.full_max_tokens:
            caches = [full_caches[i % len(distinct)] for i in range(T)]
            row["full_ttft_ms"], row["full_decode_tok_s"] = (
                round(x, 3) for x in _scaled(query_times(full, caches, args.new_tokens, args.repeats, sync)))
        if T <= args.recompute_max:
            segments = [distinct[i % len(distinct)] for i in range(T)]

            def recompute(segments=segments):
                voco.past_from_caches(voco.compress(segments), prefix)

            # recompute = compress the frames again, then the same first-token pass as voco
            row["recompute_ttft_ms"] = round(best_time(recompute, 1, sync) * 1000 + row["voco_ttft_ms"], 3)
        for name, this in (("", shape), ("llava7b_", LLAVA_15_7B)):
            n = n_vision if not name else 576 * F
            k = voco.k
            row[f"{name}voco_query_tflops"] = pass_flops(this, Q, P + T * k) / 1e12
            row[f"{name}full_query_tflops"] = pass_flops(this, Q, P + T * n) / 1e12
            row[f"{name}recompute_tflops"] = (T * pass_flops(this, 1 + n + k) + pass_flops(this, Q, P + T * k)) / 1e12
        if "full_ttft_ms" in row:
            row["full_over_voco_ttft"] = round(row["full_ttft_ms"] / row["voco_ttft_ms"], 2)
        if "recompute_ttft_ms" in row:
            row["recompute_over_voco_ttft"] = round(row["recompute_ttft_ms"] / row["voco_ttft_ms"], 2)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)

    print(json.dumps({
        "bench": "query", "machine": machine(), "device": args.device, "model": args.model,
        "settings": {"k": voco.k, "vision_tokens_per_segment": n_vision, "frames_per_segment": F,
                     "prefix_tokens": P, "question_tokens": Q, "decode_tokens": args.new_tokens,
                     "repeats": args.repeats, "dtype": str(voco.dtype)},
        "results": rows,
    }))
    return 0


def _scaled(times: tuple[float, float]) -> tuple[float, float]:
    ttft, tok_s = times
    return ttft * 1000, tok_s


if __name__ == "__main__":
    raise SystemExit(main())
