"""Which int8 scheme for stored caches? Reconstruction error of a model's real caches (held-out footage) under the
store's scheme and the alternatives, against how far apart different segments' caches lie.

    python scripts/probe_int8_caches.py --model default
    python scripts/probe_int8_caches.py --model synthetic --videos 10

Schemes (bytes per segment relative to float32, scales included, for the model's head_dim and k):
    store           the store's (store/quant.py): each head_dim vector Hadamard-rotated, then per-vector
    per-vector      symmetric absmax int8 per head_dim vector with a float16 scale, not rotated
    asym-vector     min/max (uint8, float16 scale and zero point) per head_dim vector
    kivi-pack       KIVI-style: keys per channel, one scale per (layer, head, channel) shared by the whole pack
                    (every segment of a video); values per vector
    kivi-segment    keys per channel within each segment (over its k tokens: as many scales as values)
    residual-pack   per-vector int8 of each cache minus the pack's mean cache (float32, once per pack)
Pack-shared scales tie a segment's bytes to the others' (chunks could no longer be copied and checksummed alone);
the probe says what they would buy. `spread`: mean relative distance between two different segments' caches: an
error well below it cannot confuse one segment for another. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store.quant import round_trip  # noqa: E402

LEVELS = 127


def per_vector(kv: torch.Tensor) -> torch.Tensor:
    """Symmetric absmax int8 per vector with a float16 scale, in the channels' own basis."""
    scale = (kv.abs().amax(-1, keepdim=True) / LEVELS).half().float().clamp_min(1e-12)
    return (kv / scale).round().clamp(-LEVELS, LEVELS) * scale


def asym_vector(kv: torch.Tensor) -> torch.Tensor:
    lo, hi = kv.amin(-1, keepdim=True), kv.amax(-1, keepdim=True)
    scale = ((hi - lo) / 255).half().float().clamp_min(1e-12)
    zero = lo.half().float()
    return ((kv - zero) / scale).round().clamp(0, 255) * scale + zero


def _per_channel(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    scale = (x.abs().amax(dims, keepdim=True) / LEVELS).half().float().clamp_min(1e-12)
    return (x / scale).round().clamp(-LEVELS, LEVELS) * scale


def kivi(kv: torch.Tensor, shared: bool) -> torch.Tensor:
    """kv [T, layers, 2, H, k, D]: keys per channel over the pack (T and k) or per segment (k); values per vector."""
    keys = _per_channel(kv[:, :, 0], (0, 3) if shared else (3,))
    return torch.stack([keys, per_vector(kv[:, :, 1])], dim=2)


def residual(kv: torch.Tensor) -> torch.Tensor:
    mean = kv.mean(0, keepdim=True)
    return per_vector(kv - mean) + mean


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def spread(kv: torch.Tensor, pairs: int = 2000, seed: int = 0) -> float:
    """Mean ||c_i - c_j|| / ||c_i|| over random pairs of different segments."""
    g = torch.Generator().manual_seed(seed)
    i, j = torch.randint(len(kv), (pairs,), generator=g), torch.randint(len(kv), (pairs,), generator=g)
    keep = i != j
    flat = kv.reshape(len(kv), -1)
    return float(((flat[i[keep]] - flat[j[keep]]).norm(dim=1) / flat[i[keep]].norm(dim=1)).mean())


def scheme_bytes(shape: torch.Size) -> dict[str, float]:
    """Bytes per segment relative to float32, for a pack of T segments of [layers, 2, H, k, D]."""
    T, layers, _, heads, k, D = shape
    vectors = layers * 2 * heads * k
    full = vectors * D * 4
    pack_keys = layers * heads * D * 2 / T  # float16 per (layer, head, channel), over T segments
    return {"store": vectors * (D + 2) / full, "per-vector": vectors * (D + 2) / full,
            "asym-vector": vectors * (D + 4) / full,
            "kivi-pack": (vectors * D + vectors // 2 * 2 + pack_keys) / full,
            "kivi-segment": (vectors * D + vectors // 2 * 2 + layers * heads * D * 2) / full,
            "residual-pack": (vectors * (D + 2) + layers * 2 * heads * k * D * 4 / T) / full}


def caches_of(model_name: str, videos: int, threads: int) -> tuple[torch.Tensor, int]:
    from evaluation.footage import heldout_videos, load_footage
    from voco import VoCoModel

    torch.set_num_threads(threads)
    model = VoCoModel.from_pretrained(model_name).eval()
    chosen = heldout_videos(load_footage(), 0, model.voco.frames_per_segment)[:videos]
    with torch.inference_mode():
        kv = torch.cat([torch.stack([c.kv for c in model.compress(v.segments)]) for v in chosen])
    return kv.float(), len(chosen)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="bundled name or checkpoint folder")
    p.add_argument("--videos", type=int, default=41, help="held-out videos whose caches are probed (41: all)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    kv, videos = caches_of(args.model, args.videos, args.threads)
    schemes = {"store": round_trip, "per-vector": per_vector, "asym-vector": asym_vector,
               "kivi-pack": lambda x: kivi(x, True), "kivi-segment": lambda x: kivi(x, False),
               "residual-pack": residual}
    sizes = scheme_bytes(kv.shape)
    between = spread(kv)
    out = {"model": args.model, "videos": videos, "segments": len(kv), "shape": list(kv.shape[1:]),
           "spread": round(between, 4), "schemes": {}}
    for name, fn in schemes.items():
        back = fn(kv)
        err = relative(back, kv)
        out["schemes"][name] = {"bytes_vs_float32": round(sizes[name], 4), "relative_error": round(err, 5),
                                "keys": round(relative(back[:, :, 0], kv[:, :, 0]), 5),
                                "values": round(relative(back[:, :, 1], kv[:, :, 1]), 5),
                                "error_vs_spread": round(err / between, 4)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
