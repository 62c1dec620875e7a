"""The dense compressors: one plain LM pass per segment, the same kept window for every layer.

    voco: [<seg>, V_1 .. V_n, <voco>_1 .. <voco>_k]  keep positions n+1 .. n+k
    full: [<seg>, V_1 .. V_n]                        keep positions 1 .. n
    pool: [<seg>, P_1 .. P_m]                        keep positions 1 .. m   (P = linear(avgpool(V)), m = k)
    pool_frames: full over V' = each frame's token grid pooled to k tokens (the family's own pooling)

<seg> is the tokenizer's <bos> (or a dedicated start token for tokenizers without one).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from voco.cache import check_caches
from voco.compressors.base import Compressor, SegmentLayout, register


def segment_start(model, batch: int, device) -> torch.Tensor:
    """The <seg> token's embedding for B segments: [B, 1, hidden]."""
    return model.lm.get_input_embeddings()(torch.full((batch, 1), model.segment_start_id, device=device))


@register
class VoCoCompressor(Compressor):
    """VoCo-LLaMA: k `<voco>` tokens after the vision tokens; their KV stands for the segment."""

    name = "voco"
    reads_voco_token = True

    def layout(self, n_vision: int) -> SegmentLayout:
        return SegmentLayout(length=1 + n_vision + self.k, kept_start=1 + n_vision, kept=self.k)

    def sequence_embeds(self, model, vision: torch.Tensor) -> torch.Tensor:
        B = vision.shape[0]
        voco = model.lm.get_input_embeddings()(torch.full((B, self.k), model.voco_token_id, device=vision.device))
        return torch.cat([segment_start(model, B, vision.device), vision, voco], dim=1)

    def design_row(self, model, vision: torch.Tensor):
        from voco.reference import DesignSegment

        embed, dev, n = model.lm.get_input_embeddings(), vision.device, vision.shape[0]
        start = embed(torch.tensor([model.segment_start_id], device=dev))
        voco = embed(torch.tensor([model.voco_token_id] * self.k, device=dev))
        return DesignSegment(torch.cat([start, vision, voco]), range(n + 1, n + 1 + self.k))

    def describe(self, n_vision: int) -> str:
        return f"the KV cache of {self.k} `<voco>` token(s) read after the {n_vision} vision tokens"


@register
class FullCompressor(Compressor):
    """Full caching (the paper's upper bound): keep the KV of every vision token."""

    name = "full"
    uses_k = False
    keeps_all_vision = True

    def layout(self, n_vision: int) -> SegmentLayout:
        return SegmentLayout(length=1 + n_vision, kept_start=1, kept=n_vision)

    def sequence_embeds(self, model, vision: torch.Tensor) -> torch.Tensor:
        return torch.cat([segment_start(model, vision.shape[0], vision.device), vision], dim=1)

    def design_row(self, model, vision: torch.Tensor):
        from voco.reference import DesignSegment

        start = model.lm.get_input_embeddings()(torch.tensor([model.segment_start_id], device=vision.device))
        return DesignSegment(torch.cat([start, vision]), range(1, vision.shape[0] + 1))

    def describe(self, n_vision: int) -> str:
        return f"the KV cache of all {n_vision} vision tokens (no compression)"


@register
class FramePoolCompressor(FullCompressor):
    """Each frame's token grid pooled to k tokens (a sqrt(k) x sqrt(k) grid) by the model family's own spatial
    pooling (`Family.pool_grid`), then every pooled token's KV kept, as `full` keeps them. No trained weights:
    a stock checkpoint answers from these caches zero-shot, at k / p of the full caches' bytes."""

    name = "pool_frames"
    uses_k = True
    keeps_all_vision = False

    def __init__(self, k: int, module: nn.Module | None = None, options: dict | None = None):
        super().__init__(k, module, options)
        self.side = math.isqrt(k)
        if self.side * self.side != k:
            raise ValueError(f"pool_frames: k = {k} tokens per frame must be a square number (1, 4, 9, 16, 36, "
                             "64, ...): each frame's token grid is pooled to sqrt(k) x sqrt(k)")

    def frame_tokens(self, model, tokens: torch.Tensor) -> torch.Tensor:
        return model.family.pool_grid(tokens, self.side)  # [frames, k, hidden]

    def check_caches(self, caches, fingerprint: str) -> None:
        # a cache keeps k tokens per frame (and the family's tail): its count is not k; the fingerprint covers k
        check_caches(caches, fingerprint=fingerprint, compressor=self.name, k=None)

    def describe(self, n_vision: int) -> str:
        return f"the KV cache of {n_vision} vision tokens: each frame's token grid pooled to {self.k} tokens"


class AvgPoolLinear(nn.Module):
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


@register
class PoolCompressor(Compressor):
    """Average-pool the segment's vision embeddings to m = k tokens (+ a trained linear); keep those."""

    name = "pool"
    module_name = "pool"

    @classmethod
    def build_module(cls, k: int, text_config, options: dict) -> nn.Module:
        return AvgPoolLinear(text_config.hidden_size, k)

    def layout(self, n_vision: int) -> SegmentLayout:
        if self.k > n_vision:
            raise ValueError(f"pool compressor: m = {self.k} pooled tokens exceeds the segment's {n_vision} tokens")
        return SegmentLayout(length=1 + self.k, kept_start=1, kept=self.k)

    def sequence_embeds(self, model, vision: torch.Tensor) -> torch.Tensor:
        return torch.cat([segment_start(model, vision.shape[0], vision.device), self.module(vision)], dim=1)

    def design_row(self, model, vision: torch.Tensor):
        """P = linear(mean of V over m equal bins, floor .. ceil edges), written out without adaptive pooling."""
        from voco.reference import DesignSegment

        k, n = self.k, vision.shape[0]
        bins = [vision[(i * n) // k : -((-(i + 1) * n) // k)].mean(0) for i in range(k)]
        pooled = self.module.linear(torch.stack(bins))
        start = model.lm.get_input_embeddings()(torch.tensor([model.segment_start_id], device=vision.device))
        return DesignSegment(torch.cat([start, pooled]), range(1, k + 1))

    def describe(self, n_vision: int) -> str:
        return f"the KV cache of {self.k} token(s) average-pooled from the {n_vision} vision tokens (+ a linear)"

    def untrained_start(self) -> str:
        return "as plain averaging"
