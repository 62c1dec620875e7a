"""int8 caches: how a pack stores KV in a quarter of float32's bytes, and how it is read back.

One scheme, one function pair, used by the writer (`encode_kv`), the reader (`decode_kv`) and the evaluations that
measure what it costs (`round_trip`, `as_stored`):

    quantize    float [..., head_dim]  ->  int8 [..., head_dim + 2]
    dequantize  int8  [..., head_dim + 2]  ->  float [..., head_dim]

Symmetric absmax int8 per vector: every (layer, key/value, head, token) vector of `head_dim` values is rotated by a
fixed Hadamard matrix (which spreads a key's outlier channels over the vector) and gets one scale, absmax / 127,
kept as float16 in the vector's last two bytes. Why per vector rather than per channel (KIVI, KVQuant):
a VoCo segment keeps only k = 1 or 2 tokens, so per-channel scales per segment would cost as much as the data, and
scales shared by a whole pack would tie every segment's bytes to the others' (a segment is read, checksummed and
copied alone: chunk consolidation, any subset of segments on a timeline). Inline scales keep a segment's bytes
(values and scales) one contiguous run of the file, so the database's (offset, nbytes, checksum) per segment covers
both, for dense and ragged packs alike. Bytes: (head_dim + 2) / (4 * head_dim) of float32, 0.258x at head_dim 64.
The float16 scale's bytes are in the host's order: little-endian, as safetensors stores every tensor.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where caches are encoded: listing videos (ingest --list) starts without it
    import torch

MODEL = "model"
INT8 = "int8"
CACHE_DTYPES = (MODEL, INT8)
"""How a video's caches are stored: `model` (as computed, in the model's dtype) or `int8` (this module's scheme)."""
SCALE_BYTES = 2  # one float16 per vector
_DEQUANTIZE_ROWS = 8192  # vectors per block: 2 MB of float32 at head_dim 64
_LEVELS = 127  # symmetric: -127 .. 127 (-128 unused, so the scale maps absmax exactly onto the grid's end)
_FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")  # what int8 caches decode to (the model's dtype)
QUANT_SCHEME = "hadamard-absmax-int8-vector/1"
"""What `quantize` computes (pack metadata `kv_quant`): a reader refuses int8 packs of a scheme it does not know."""
ENCODING_KEYS = ("cache_dtype", "kv_dtype", "kv_quant")
"""Pack metadata saying how its kv is stored (absent: as computed)."""


class UnknownEncoding(ValueError):
    """A pack stored in a way this version cannot read (written by a newer one): not damage, nothing to repair."""


def check_cache_dtype(value: str, field: str = "cache_dtype") -> str:
    if value not in CACHE_DTYPES:
        raise ValueError(f"{field} must be one of {', '.join(CACHE_DTYPES)}, got {value!r}")
    return value


@functools.cache
def _hadamard_block(head_dim: int) -> torch.Tensor:
    """The orthonormal Sylvester-Hadamard block the rotation uses for `head_dim`, of order the largest power of two
    dividing it (64 for head_dim 64, 128 for 128, 16 for 48 or 80, 1 for odd sizes: no rotation). Symmetric and
    orthonormal: its own inverse."""
    import torch

    order = head_dim & -head_dim
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < order:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)])
    return (h / order ** 0.5).to(torch.float32)


def _rotate(x: torch.Tensor) -> torch.Tensor:
    """x float32 [..., D] in the Hadamard basis (block-diagonal blocks of `_hadamard_block(D)`); applied twice, x."""
    d = x.shape[-1]
    h = _hadamard_block(d).to(x.device)
    if h.shape[0] == 1:
        return x
    return (x.reshape(*x.shape[:-1], d // h.shape[0], h.shape[0]) @ h).reshape(x.shape)


def quantize(kv: torch.Tensor) -> torch.Tensor:
    """float [..., D] -> int8 [..., D + 2]: each vector, rotated, in units of its scale; then the float16 scale.

    Rotated (a fixed Hadamard rotation, QuaRot-style) because keys carry a few outlier channels that would set the
    scale of every other value of their vector: the rotation spreads them over the whole vector, which halves the
    error on real caches at the same bytes (scripts/probe_int8_caches.py). Each vector's error (L2) is at most
    sqrt(D) / 254 of its norm, outliers or not. ValueError for non-finite values (no scale represents them) or a
    vector whose scale overflows float16 (|x| > 8.3e6, far beyond any KV cache). A vector whose absmax is below
    0.0078 (float16's normal range times 127) gets a subnormal scale, coarser in relative terms; one below 7.6e-6
    is stored as zeros.
    """
    import torch

    if not kv.is_floating_point():
        raise TypeError(f"quantize takes floating-point KV, got {kv.dtype}")
    x = kv.detach().to(torch.float32)
    if not bool(torch.isfinite(x).all()):
        raise ValueError("cannot store the caches as int8: they hold non-finite values (inf or nan)")
    x = _rotate(x)
    scale = (x.abs().amax(-1, keepdim=True) / _LEVELS).to(torch.float16)
    if bool(torch.isinf(scale).any()):
        raise ValueError("cannot store the caches as int8: a vector's scale overflows float16 (values above 8e6)")
    used = scale.to(torch.float32)  # quantize with the scale as stored, so dequantize inverts exactly that
    inverse = torch.where(used > 0, 1.0 / used, 0.0)  # a scale that rounds to 0 (absmax < 7.6e-6): zeros
    out = torch.empty(*x.shape[:-1], x.shape[-1] + SCALE_BYTES, dtype=torch.int8, device=x.device)
    out[..., :-SCALE_BYTES] = torch.mul(x, inverse).round_().clamp_(-_LEVELS, _LEVELS)
    out[..., -SCALE_BYTES:] = scale.view(torch.int8)
    return out


def dequantize(q: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """int8 [..., D + 2] (from `quantize`) -> `dtype` [..., D] (default float32)."""
    import torch

    if q.dtype != torch.int8 or q.dim() < 1 or q.shape[-1] <= SCALE_BYTES:
        raise ValueError(f"dequantize takes int8 [..., head_dim + {SCALE_BYTES}], got {q.dtype} {tuple(q.shape)}")
    d = q.shape[-1] - SCALE_BYTES
    flat = q.reshape(-1, d + SCALE_BYTES)
    h = _hadamard_block(d).to(q.device)
    b = h.shape[0]
    out = torch.empty(flat.shape[0], d, dtype=torch.float32, device=q.device)
    # in blocks of rows that stay in the CPU's cache, each byte of the result written once: an hour of the default
    # model (41 M values) loads in about 115 ms as int8 against 90 ms as float32 (bench/bench_cache.py)
    for start in range(0, flat.shape[0], _DEQUANTIZE_ROWS):
        part, dest = flat[start:start + _DEQUANTIZE_ROWS], out[start:start + _DEQUANTIZE_ROWS]
        # clone: a slice may start at an odd byte, which a float16 view cannot
        scale = part[:, d:].clone(memory_format=torch.contiguous_format).view(torch.float16).to(torch.float32)
        values = part[:, :d].to(torch.float32).mul_(scale)  # int8 -> float32 is exact, and so is the product
        if b > 1:
            torch.mm(values.reshape(-1, b), h, out=dest.view(-1, b))  # the rotation back (h is its own inverse)
        else:
            dest.copy_(values)
    return out.reshape(*q.shape[:-1], d).to(dtype or torch.float32)


def round_trip(kv: torch.Tensor) -> torch.Tensor:
    """`kv` as an int8 pack gives it back: what evaluations use to measure the storage's cost."""
    return dequantize(quantize(kv), kv.dtype).to(kv.device)


def as_stored(caches: Sequence, cache_dtype: str) -> list:
    """Caches (`SegmentCache`s or `RaggedSegmentCache`s) as a store that keeps them as `cache_dtype` gives them back:
    what an evaluation answers from to measure the storage's cost without a store."""
    if check_cache_dtype(cache_dtype) == MODEL:
        return list(caches)
    return [dataclasses.replace(c, kv=round_trip(c.kv)) for c in caches]


def stored_nbytes(values: int, head_dim: int, cache_dtype: str, element_size: int) -> int:
    """Bytes `values` KV numbers take on disk stored as `cache_dtype` (scales included)."""
    if check_cache_dtype(cache_dtype) == MODEL:
        return values * element_size
    return values // head_dim * (head_dim + SCALE_BYTES)


# ---- pack metadata: what a pack says about its kv tensor ----------------------------------------------------------

def encode_kv(kv: torch.Tensor, cache_dtype: str) -> tuple[torch.Tensor, dict[str, str]]:
    """(the tensor a pack stores, the metadata saying how to read it back) for caches stored as `cache_dtype`.

    Caches stored as computed add no metadata: their packs stay byte-identical to those of older code.
    """
    if check_cache_dtype(cache_dtype) == MODEL:
        return kv, {}
    name = str(kv.dtype).removeprefix("torch.")
    if name not in _FLOAT_DTYPES:
        raise ValueError(f"cannot store {kv.dtype} caches as int8: only floating-point caches are quantized")
    return quantize(kv), {"cache_dtype": INT8, "kv_dtype": name, "kv_quant": QUANT_SCHEME}


def encoding_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """The part of a pack's metadata that says how its kv is stored (copied along with the stored bytes)."""
    return {key: metadata[key] for key in ENCODING_KEYS if key in metadata}


def pack_cache_dtype(metadata: dict[str, str]) -> str:
    """How a pack's kv is stored (`model` for packs that do not say: every pack older code wrote)."""
    return metadata.get("cache_dtype", MODEL)


def decode_kv(kv: torch.Tensor, metadata: dict[str, str]) -> torch.Tensor:
    """A pack's stored kv back in the model's dtype; ValueError when the metadata does not describe `kv`."""
    stored = pack_cache_dtype(metadata)
    if stored == MODEL:
        return kv
    if stored != INT8 or metadata.get("kv_quant") != QUANT_SCHEME:
        raise UnknownEncoding(f"its caches are stored as {stored!r} ({metadata.get('kv_quant')}), which this version "
                         f"cannot read")
    import torch

    name = metadata.get("kv_dtype", "")
    if name not in _FLOAT_DTYPES or kv.dtype != torch.int8 or kv.dim() < 1 or kv.shape[-1] <= SCALE_BYTES:
        raise ValueError(f"its int8 caches are inconsistent (kv {kv.dtype} {tuple(kv.shape)}, kv_dtype {name!r})")
    return dequantize(kv, getattr(torch, name))
