"""`SegmentCache`: the kept KV of one segment, position-free, and its placement on a timeline."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

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
    kind: ClassVar[str] = "dense"
    """How the store packs it (store/packs.py `PACK_WRITERS`): every segment keeps k tokens in every layer."""

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

    def layer_keys(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(keys [k, kv_heads, head_dim], positions [k]) of layer i: each kept token's key and the canonical
        position it is rotated at (what `RaggedSegmentCache.layer_keys` gives too: search reads either)."""
        positions = torch.arange(self.source_position, self.source_position + self.k)
        return self.kv[i, 0].transpose(0, 1), positions

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
    kv: torch.Tensor, source_positions: torch.Tensor, start: int, inv_freq: torch.Tensor,
    targets: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Put T segment caches one after another on a timeline starting at position `start`.

    kv: [T, layers, 2, kv_heads, k, head_dim]; source_positions: [T]
    Segment t's token j lands at `start + t * k + j`: its keys rotate by
    delta_t = start + t * k - source_positions[t]. Values do not move.
    targets: [T] the position of each segment's first token instead (e.g. with time labels between segments,
    `voco.timeline.place`); delta_t = targets[t] - source_positions[t].
    Returns (keys, values), each [layers, kv_heads, T * k, head_dim].
    """
    T, layers, _, heads, k, dim = kv.shape
    if targets is None:
        targets = start + torch.arange(T, device=kv.device) * k
    elif targets.shape != (T,):
        raise ValueError(f"targets {tuple(targets.shape)} must give one position per segment ({T})")
    else:
        targets = targets.to(kv.device)
    keys = shift_keys(kv[:, :, 0], targets - source_positions.to(kv.device), inv_freq)  # [T, L, H, k, D]
    values = kv[:, :, 1]
    # [T, L, H, k, D] -> [L, H, T, k, D] -> [L, H, T*k, D]
    keys = keys.permute(1, 2, 0, 3, 4).reshape(layers, heads, T * k, dim)
    values = values.permute(1, 2, 0, 3, 4).reshape(layers, heads, T * k, dim)
    return keys, values


RAGGED_FORMAT = "voco-ragged-cache/1"


@dataclass(frozen=True)
class RaggedSegmentCache:
    """Kept KV of one segment when every layer keeps its own tokens (ATP): per-layer lengths, per-token positions.

    kv:        [N, 2, kv_heads, head_dim], N = lengths.sum(): layer 0's tokens, then layer 1's, ... (token-major,
               so one segment is one contiguous run of bytes in a pack)
    lengths:   [layers] int64, tokens kept in each layer (>= 1)
    positions: [N] int64, each token's canonical position in the segment's own sequence (keys are rotated there)
    The segment occupies `span` timeline positions starting with canonical position `source_position`: token p
    lands at start + (p - source_position), so kept tokens keep their original spacing.
    """

    kv: torch.Tensor
    lengths: torch.Tensor
    positions: torch.Tensor
    source_position: int
    span: int
    fingerprint: str
    compressor: str
    kind: ClassVar[str] = "ragged"
    """How the store packs it: per-layer token sets."""

    def __post_init__(self) -> None:
        if self.kv.dim() != 4 or self.kv.shape[1] != 2:
            raise ValueError(f"RaggedSegmentCache.kv must be [N, 2, kv_heads, head_dim], got {tuple(self.kv.shape)}")
        if self.lengths.dim() != 1 or int(self.lengths.sum()) != self.kv.shape[0] or int(self.lengths.min()) < 1:
            raise ValueError(f"lengths {self.lengths.tolist()} must be >= 1 per layer and sum to the "
                             f"{self.kv.shape[0]} tokens of kv")
        if self.positions.shape != (self.kv.shape[0],):
            raise ValueError(f"positions {tuple(self.positions.shape)} must give one position per token "
                             f"({self.kv.shape[0]})")
        lo, hi = int(self.positions.min()), int(self.positions.max())
        if lo < self.source_position or hi >= self.source_position + self.span:
            raise ValueError(f"positions {lo}..{hi} fall outside the segment's span {self.source_position}.."
                             f"{self.source_position + self.span - 1}")

    @property
    def k(self) -> int:
        """Timeline positions the segment occupies (what the context budget counts)."""
        return self.span

    @property
    def layers(self) -> int:
        return self.lengths.shape[0]

    @property
    def nbytes(self) -> int:
        return self.kv.numel() * self.kv.element_size()

    def layer(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(kv [len_i, 2, kv_heads, head_dim], positions [len_i]) of layer i."""
        start = int(self.lengths[:i].sum())
        end = start + int(self.lengths[i])
        return self.kv[start:end], self.positions[start:end]

    def layer_keys(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(keys [len_i, kv_heads, head_dim], positions [len_i]) of layer i (as `SegmentCache.layer_keys`)."""
        kv, positions = self.layer(i)
        return kv[:, 0], positions

    def to_bytes(self) -> bytes:
        meta = {"format": RAGGED_FORMAT, "source_position": str(self.source_position), "span": str(self.span),
                "fingerprint": self.fingerprint, "compressor": self.compressor}
        tensors = {"kv": self.kv.detach().contiguous().cpu(), "lengths": self.lengths.to(torch.int64).cpu(),
                   "positions": self.positions.to(torch.int64).cpu()}
        return st_save(tensors, metadata=meta)

    @classmethod
    def from_bytes(cls, data: bytes) -> RaggedSegmentCache:
        meta = _safetensors_metadata(data)
        if meta.get("format") != RAGGED_FORMAT:
            raise ValueError(f"not a ragged segment cache (format {meta.get('format')!r}, want {RAGGED_FORMAT!r})")
        t = st_load(data)
        return cls(t["kv"], t["lengths"], t["positions"], int(meta["source_position"]), int(meta["span"]),
                   meta["fingerprint"], meta["compressor"])


def check_ragged_caches(caches: Sequence[RaggedSegmentCache], *, fingerprint: str, compressor: str,
                        layers: int) -> None:
    """Fail loudly when ragged caches do not belong to the model about to read them."""
    if not caches:
        raise ValueError("no segment caches given: compress at least one segment first")
    for i, cache in enumerate(caches):
        if not isinstance(cache, RaggedSegmentCache):
            raise ValueError(f"segment cache {i} is a {type(cache).__name__}; the {compressor!r} compressor reads "
                             "ragged caches: re-compress the video with this model")
        if cache.fingerprint != fingerprint or cache.compressor != compressor:
            raise ValueError(f"segment cache {i} was made by model {cache.fingerprint[:12]} ({cache.compressor!r}), "
                             f"not by this model ({fingerprint[:12]}, {compressor!r}): re-compress the video")
        if cache.layers != layers or cache.kv.shape[2:] != caches[0].kv.shape[2:]:
            raise ValueError(f"segment cache {i} has {cache.layers} layers of {tuple(cache.kv.shape[2:])}, "
                             f"want {layers} like cache 0")


def place_ragged_on_timeline(caches: Sequence[RaggedSegmentCache], start: int,
                             inv_freq: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], list[int], int]:
    """Put T ragged caches one after another on a timeline starting at `start`.

    Segment t starts at start_t = start + sum of earlier spans; its token at canonical position p lands at
    start_t + p - source_position_t, so every key of segment t rotates by delta_t = start_t - source_position_t.
    Returns per layer keys and values [kv_heads, M_l, head_dim] (segments concatenated, M_l tokens),
    the lengths M_l, and the position after the last segment.
    """
    layers = caches[0].layers
    shifted = []
    at = start
    for cache in caches:
        delta = torch.full((cache.kv.shape[0],), at - cache.source_position)
        shifted.append(shift_keys(cache.kv[:, 0], delta, inv_freq))  # [N, H, D]
        at += cache.span
    keys, values, lengths = [], [], []
    for i in range(layers):
        ks, vs = [], []
        for cache, k in zip(caches, shifted, strict=True):
            a = int(cache.lengths[:i].sum())
            b = a + int(cache.lengths[i])
            ks.append(k[a:b])
            vs.append(cache.kv[a:b, 1])
        keys.append(torch.cat(ks).transpose(0, 1))  # [H, M_l, D]
        values.append(torch.cat(vs).transpose(0, 1))
        lengths.append(keys[-1].shape[1])
    return keys, values, lengths, at
