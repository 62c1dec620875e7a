"""`SegmentCache`: the kept KV of one segment, position-free, and its placement on a timeline."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from voco.rope import shift_keys

CACHE_FORMAT = "voco-segment-cache/1"


@dataclass(frozen=True)
class SegmentCache:
    """Keys and values of the tokens kept from one segment, for every layer.

    kv: [layers, 2, kv_heads, k, head_dim] in the model's dtype; kv[:, 0] are keys, kv[:, 1] values.
    Keys are rotated as computed at canonical positions `source_position .. source_position + k - 1`
    of the segment's own sequence ([<bos>, vision tokens, <voco> tokens] at 0 .. n + k), so the same
    cache serves any place on any timeline.
    """

    kv: torch.Tensor
    source_position: int
    fingerprint: str
    compressor: str

    def __post_init__(self) -> None:
        if self.kv.dim() != 5 or self.kv.shape[1] != 2:
            raise ValueError(
                f"SegmentCache.kv must be [layers, 2, kv_heads, k, head_dim], got {tuple(self.kv.shape)}"
            )
        if self.source_position < 0:
            raise ValueError(f"source_position must be >= 0, got {self.source_position}")

    @property
    def k(self) -> int:
        """Number of kept tokens."""
        return self.kv.shape[3]

    @property
    def nbytes(self) -> int:
        return self.kv.numel() * self.kv.element_size()

    def to_bytes(self) -> bytes:
        """Lossless safetensors bytes (no pickle); metadata carries position and provenance."""
        meta = {
            "format": CACHE_FORMAT,
            "source_position": str(self.source_position),
            "fingerprint": self.fingerprint,
            "compressor": self.compressor,
        }
        return st_save({"kv": self.kv.detach().contiguous().cpu()}, metadata=meta)

    @classmethod
    def from_bytes(cls, data: bytes) -> SegmentCache:
        meta = _safetensors_metadata(data)
        if meta.get("format") != CACHE_FORMAT:
            raise ValueError(f"not a VoCo segment cache (format {meta.get('format')!r}, want {CACHE_FORMAT!r})")
        return cls(
            kv=st_load(data)["kv"],
            source_position=int(meta["source_position"]),
            fingerprint=meta["fingerprint"],
            compressor=meta["compressor"],
        )


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    header_len = int.from_bytes(data[:8], "little")
    if header_len <= 0 or header_len > len(data) - 8:
        raise ValueError("not a safetensors buffer (bad header length)")
    return json.loads(data[8 : 8 + header_len]).get("__metadata__", {})


def check_caches(caches: Sequence[SegmentCache], *, fingerprint: str, compressor: str, k: int | None) -> None:
    """Fail loudly when caches do not belong to the model about to read them."""
    if not caches:
        raise ValueError("no segment caches given: compress at least one segment first")
    for i, cache in enumerate(caches):
        if cache.fingerprint != fingerprint:
            raise ValueError(
                f"segment cache {i} was made by model {cache.fingerprint[:12]}, not by this model "
                f"({fingerprint[:12]}): re-compress the video with this model."
            )
        if cache.compressor != compressor:
            raise ValueError(
                f"segment cache {i} was made by the {cache.compressor!r} compressor, this model uses "
                f"{compressor!r}: re-compress the video."
            )
        if k is not None and cache.k != k:
            raise ValueError(f"segment cache {i} keeps {cache.k} tokens but this model's k is {k}")
    shape = caches[0].kv.shape
    bad = [i for i, c in enumerate(caches) if c.kv.shape != shape]
    if bad:
        raise ValueError(f"segment caches {bad[:5]} differ in shape from cache 0 {tuple(shape)}")


def place_on_timeline(
    kv: torch.Tensor, source_positions: torch.Tensor, start: int, inv_freq: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Put T segment caches one after another on a timeline starting at position `start`.

    kv: [T, layers, 2, kv_heads, k, head_dim]; source_positions: [T]
    Segment t's token j lands at `start + t * k + j`: its keys rotate by
    delta_t = start + t * k - source_positions[t]. Values do not move.
    Returns (keys, values), each [layers, kv_heads, T * k, head_dim].
    """
    T, layers, _, heads, k, dim = kv.shape
    targets = start + torch.arange(T, device=kv.device) * k
    keys = shift_keys(kv[:, :, 0], targets - source_positions.to(kv.device), inv_freq)  # [T, L, H, k, D]
    values = kv[:, :, 1]
    # [T, L, H, k, D] -> [L, H, T, k, D] -> [L, H, T*k, D]
    keys = keys.permute(1, 2, 0, 3, 4).reshape(layers, heads, T * k, dim)
    values = values.permute(1, 2, 0, 3, 4).reshape(layers, heads, T * k, dim)
    return keys, values
