"""What a stock checkpoint's caches cost (issue 24): bytes per segment and per hour for voco / pool_frames / full at
real shapes, and time to first token over 64 segments of each, side by side in one run.

    python bench/bench_zero_shot.py                 # the table + SmolVLM-256M's shapes timed on this CPU (~2 min)
    python bench/bench_zero_shot.py --no-timing     # the table only (analytic, instant)
    python bench/bench_zero_shot.py --shapes llava-1.5-7b --device cuda   # LLaVA-1.5-7B's shapes, bf16, on a GPU

Bytes: keys and values of the kept tokens over all layers in bf16 (`voco.cost.kv_bytes`), one frame per 2-second
segment (an hour: 1,800 segments); tokens per frame are each family's own video path. Timing: a random model of
SmolVLM-256M's shapes (float32, this CPU) compresses one real-size frame with each compressor; 64 copies of that
cache are placed on one timeline and `AnswerSession` answers one token (best of --repeats): selection, the
question's prefill over the placed caches, the first token. Prints a table on stderr and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine  # noqa: E402
from voco.cost import DecoderShape, kv_bytes  # noqa: E402

# name: (decoder shape, vision tokens per frame through the family's video path)
CHECKPOINTS = {
    "LLaVA-1.5-7B": (DecoderShape(32, 4096, 11008, 32, 32, 128), 576),
    "LLaVA-NeXT-Video-7B": (DecoderShape(32, 4096, 11008, 32, 32, 128), 144),  # 24x24 pooled by 2
    "LLaVA-OneVision-7B": (DecoderShape(28, 3584, 18944, 28, 4, 128), 196),  # 27x27 pooled 2x2 -> 14x14
    "SmolVLM-500M": (DecoderShape(32, 960, 2560, 15, 5, 64), 64),
    "SmolVLM-256M": (DecoderShape(30, 576, 1536, 9, 3, 64), 64),
}
KEPT = {"voco-1": 1, "voco-2": 2, "pool_frames-16": 16}  # tokens kept per segment (one frame); full keeps all
SEGMENTS_PER_HOUR = 1800
QUESTION = "what is the person holding?"


def cost_table() -> list[dict]:
    rows = []
    for name, (shape, tokens) in CHECKPOINTS.items():
        kept = {**KEPT, "full": tokens}
        rows.append({"checkpoint": name, "vision_tokens_per_frame": tokens,
                     "mb_per_segment": {c: round(kv_bytes(shape, n) / 1e6, 3) for c, n in kept.items()},
                     "gb_per_hour": {c: round(kv_bytes(shape, n) * SEGMENTS_PER_HOUR / 1e9, 3)
                                     for c, n in kept.items()}})
    return rows


def random_model(shapes: str, compressor: str, k: int, device: str):
    """A random model of a real checkpoint's shapes: SmolVLM-256M (float32) or LLaVA-1.5-7B (bf16, for a GPU)."""
    import torch

    from voco.config import PromptTemplate, VoCoConfig
    from voco.model import VoCoModel
    from voco.tiny import llava7b_model, smolvlm_256m_config, tiny_tokenizer

    if shapes == "llava-1.5-7b":
        return llava7b_model(device=device, dtype=torch.bfloat16, compressor=compressor, k=k)
    voco = VoCoConfig(compressor=compressor, k=k, frames_per_segment=1, prompt=PromptTemplate())
    return VoCoModel.from_config(smolvlm_256m_config(), tiny_tokenizer(), voco, seed=0).to(device).eval()


def ttft_ms(shapes: str, device: str, repeats: int) -> dict:
    """TTFT over placed caches of a random model of `shapes`, per compressor: 64 segments (SmolVLM), or the 6 whose
    full caches fit LLaVA-1.5-7B's 4,096 positions (6 x 576)."""
    import torch

    from voco.session import AnswerSession, Timeline

    segments = 6 if shapes == "llava-1.5-7b" else 64
    out = {"segments": segments}
    kinds = {"voco-1": ("voco", 1), "pool_frames-16": ("pool_frames", 16), "full": ("full", 1)}
    for name, (compressor, k) in kinds.items():
        model = random_model(shapes, compressor, k, device)
        side = model.config.vision_config.image_size
        frame = np.random.default_rng(0).integers(0, 256, (1, side, side, 3), np.uint8)
        with torch.inference_mode():
            cache = model.compress([frame])[0]
        timeline = Timeline.of([cache] * segments, [(2.0 * i, 2.0 * i + 2) for i in range(segments)])
        best = float("inf")
        for _ in range(repeats + 1):  # the first is a warm-up
            _, stats = AnswerSession(model, timeline, "all").answer(QUESTION, max_new_tokens=1)
            best = min(best, stats.ttft_ms)
        out[name] = {"tokens_per_segment": cache.k, "past_tokens": cache.k * segments, "ttft_ms": round(best, 1)}
        del model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--no-timing", action="store_true", help="only the analytic table")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--shapes", choices=("smolvlm-256m", "llava-1.5-7b"), default="smolvlm-256m",
                   help="whose shapes are timed (llava-1.5-7b: bf16, needs a GPU: --device cuda)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows = cost_table()
    kinds = [*KEPT, "full"]
    print(f"{'checkpoint':<22}{'tokens':>7}  " + "  ".join(f"{k + ' MB/seg':>14}" for k in kinds)
          + f"  {'full GB/hour':>12}", file=sys.stderr)
    for r in rows:
        print(f"{r['checkpoint']:<22}{r['vision_tokens_per_frame']:>7}  "
              + "  ".join(f"{r['mb_per_segment'][k]:>14.3f}" for k in kinds)
              + f"  {r['gb_per_hour']['full']:>12.1f}", file=sys.stderr)
    result = {"machine": machine(), "bf16_kv": rows}
    if not args.no_timing:
        result["ttft"] = timing = {"shapes": args.shapes, "device": args.device,
                                               **ttft_ms(args.shapes, args.device, args.repeats)}
        for name in ("voco-1", "pool_frames-16", "full"):
            t = timing[name]
            print(f"{args.shapes} shapes, {timing['segments']} segments, {name}: {t['past_tokens']} cached tokens, "
                  f"TTFT {t['ttft_ms']} ms", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
