"""What a segment's pass-1 sequence holds and which of its positions are kept, per compressor.

    voco: [<seg>, V_1 .. V_n, <voco>_1 .. <voco>_k]  keep positions n+1 .. n+k
    full: [<seg>, V_1 .. V_n]                        keep positions 1 .. n
    pool: [<seg>, P_1 .. P_m]                        keep positions 1 .. m   (P = linear(avgpool(V)))

<seg> is the tokenizer's <bos> (or a dedicated start token for tokenizers without one).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class SegmentLayout:
    """Token layout of one segment's compression sequence."""

    length: int
    """Tokens in the pass-1 sequence, positions 0 .. length - 1."""
    kept_start: int
    """Canonical position of the first kept token."""
    kept: int
    """Number of kept tokens (the k of the cache)."""


def segment_layout(compressor: str, n_vision: int, k: int) -> SegmentLayout:
    if compressor == "voco":
        return SegmentLayout(length=1 + n_vision + k, kept_start=1 + n_vision, kept=k)
    if compressor == "full":
        return SegmentLayout(length=1 + n_vision, kept_start=1, kept=n_vision)
    if compressor == "pool":
        if k > n_vision:
            raise ValueError(f"pool compressor: m = {k} pooled tokens exceeds the segment's {n_vision} tokens")
        return SegmentLayout(length=1 + k, kept_start=1, kept=k)
    raise ValueError(f"unknown compressor {compressor!r}")


class PoolCompressor(nn.Module):
    """The paper's 'Avg Pool + Linear' baseline: n vision embeddings -> m, then a trained linear."""

    def __init__(self, hidden_size: int, m: int):
        super().__init__()
        self.m = m
        self.linear = nn.Linear(hidden_size, hidden_size)
        with torch.no_grad():  # start as the identity so an untrained pool is plain average pooling
            self.linear.weight.copy_(torch.eye(hidden_size))
            self.linear.bias.zero_()

    def forward(self, vision: torch.Tensor) -> torch.Tensor:
        # vision: [B, n, hidden] -> [B, m, hidden]
        pooled = F.adaptive_avg_pool1d(vision.transpose(1, 2), self.m).transpose(1, 2)
        return self.linear(pooled)


class LinearProjector(nn.Module):
    """A single linear vision-to-LM projector; `linear_1` matches LLaVA's key name on disk."""

    def __init__(self, vision_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.linear_1 = nn.Linear(vision_size, hidden_size, bias=bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_1(features)
