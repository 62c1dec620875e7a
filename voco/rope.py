"""Moving cached keys along the position axis by a pure RoPE rotation.

A RoPE key at position p is R(p) k. Since R(a) R(b) = R(a + b), a key cached at its canonical
position moves to any other position by R(delta). We build R(delta) from the LM's own inverse
frequencies and never from its cos/sin outputs: variants such as YaRN fold an attention scaling
into cos/sin, which must be applied once (when the key was computed), not again on every move.
"""

from __future__ import annotations

import torch
from torch import nn

# RoPE types whose frequencies change with sequence length: a cached key cannot be moved exactly.
_LENGTH_DEPENDENT_ROPE = ("dynamic", "longrope")


def rotary_inv_freq(lm: nn.Module) -> torch.Tensor:
    """Inverse frequencies `[rot_dim / 2]` of a transformers decoder LM (Llama, Qwen2, Mistral ...)."""
    rotary = getattr(lm.model, "rotary_emb", None)
    if rotary is None or not hasattr(rotary, "inv_freq"):
        raise TypeError(
            f"{type(lm).__name__} has no `model.rotary_emb` with `inv_freq`: VoCo caches need a decoder "
            "with rotary position embeddings shared by all layers (Llama, Qwen2, Mistral families)."
        )
    rope_type = getattr(rotary, "rope_type", "default")
    if rope_type in _LENGTH_DEPENDENT_ROPE:
        raise ValueError(
            f"RoPE type {rope_type!r} changes its frequencies with sequence length, so a cached key cannot "
            "be moved to another position exactly. Use a checkpoint with a static RoPE (default, linear, "
            "llama3, yarn)."
        )
    return rotary.inv_freq


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """The Llama convention: (x1, x2) -> (-x2, x1) on the two halves of the rotary dims."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def shift_keys(keys: torch.Tensor, delta: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """Rotate keys by `delta` positions.

    keys:  [T, ..., D]  (any middle dims), one position shift per leading index
    delta: [T]          integer shifts, may be negative
    Returns keys of the same shape and dtype. The first `2 * len(inv_freq)` dims rotate; any
    remaining dims (partial rotary) pass through.
    """
    if delta.shape != keys.shape[:1]:
        raise ValueError(f"delta {tuple(delta.shape)} must give one shift per leading key index {keys.shape[0]}")
    rot_dim = 2 * inv_freq.shape[0]
    freqs = delta.to(torch.float64)[:, None] * inv_freq.to(torch.float64)[None, :]  # [T, rot_dim/2]
    angles = torch.cat((freqs, freqs), dim=-1).view(-1, *([1] * (keys.dim() - 2)), rot_dim)
    cos, sin = angles.cos().float(), angles.sin().float()
    k = keys.float()
    k_rot, k_pass = k[..., :rot_dim], k[..., rot_dim:]
    k_rot = k_rot * cos + rotate_half(k_rot) * sin
    return torch.cat((k_rot, k_pass), dim=-1).to(keys.dtype)
