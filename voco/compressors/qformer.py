"""The Q-Former baseline (`qformer`, the paper's Table 1 row; BLIP-2's querying transformer, kept small).

m = k learned queries cross-attend the segment's projected vision embeddings *outside* the LM; the LM then
reads the queries' outputs (projected back to its hidden size) as the segment's tokens, and the KV of those
query positions is kept, as `pool` keeps its pooled tokens:

    qformer: [<seg>, Q_1 .. Q_m]    keep positions 1 .. m    (Q = QFormer(queries, V_1 .. V_n))

The block stack (BLIP-2 order, pre-norm, residual):  queries -> [self-attention over the queries ->
cross-attention from the queries to the vision tokens -> MLP] x `LAYERS` -> output projection.
Its width is the LM's hidden size capped at BLIP-2's 768 (`MAX_WIDTH`), heads of 64 dimensions, 2 layers:
about 16 width^2 parameters per layer (0.5 M for the table's hidden-128 model). Choices where BLIP-2 is
bigger or different (documented, not measured against it): no text branch (queries are not conditioned on
a question, which caches made before any question cannot be), no image-text pretraining, the queries read the
LLaVA projector's output rather than the raw vision features, and the untrained stack starts close to an
attention-weighted average of the vision tokens plus the (small) query vector: the first block's cross-attention
value and output projections and the in/out projections start as the identity when the widths match, every
other residual branch (self-attention, MLP, later cross-attention) starts at zero. So it starts about where
`pool` starts (one query: near a weighted average pool) and training moves it from there.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from voco.compressors.base import Compressor, SegmentLayout, register
from voco.compressors.dense import segment_start

LAYERS = 2
MAX_WIDTH = 768
HEAD_DIM = 64
INIT_SEED = 0


class Attention(nn.Module):
    """Multi-head attention of `x` over `context` (no mask: queries see all queries / all vision tokens)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(width, width) for _ in range(4))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        # x: [B, m, w], context: [B, c, w] -> [B, m, w]
        B, m, w = x.shape

        def split(t):  # [B, L, w] -> [B, heads, L, w / heads]
            return t.reshape(B, t.shape[1], self.heads, w // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(context)), split(self.v(context)))
        return self.o(out.transpose(1, 2).reshape(B, m, w))


class QFormerBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm_self, self.norm_cross, self.norm_mlp = (nn.LayerNorm(width) for _ in range(3))
        self.self_attn = Attention(width, heads)
        self.cross_attn = Attention(width, heads)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, queries: torch.Tensor, vision: torch.Tensor) -> torch.Tensor:
        # queries: [B, m, w], vision: [B, n, w] -> [B, m, w]
        h = self.norm_self(queries)
        queries = queries + self.self_attn(h, h)
        queries = queries + self.cross_attn(self.norm_cross(queries), vision)
        return queries + self.mlp(self.norm_mlp(queries))


class QFormer(nn.Module):
    """m learned queries read n vision embeddings: [B, n, hidden] -> [B, m, hidden]."""

    def __init__(self, hidden: int, queries: int, layers: int = LAYERS):
        super().__init__()
        width = min(hidden, MAX_WIDTH)
        heads = max(1, width // HEAD_DIM)
        self.in_proj = nn.Linear(hidden, width)
        self.queries = nn.Parameter(torch.randn(queries, width) * 0.02)
        self.blocks = nn.ModuleList(QFormerBlock(width, heads) for _ in range(layers))
        self.out_proj = nn.Linear(width, hidden)
        self._start_near_pooling()

    @torch.no_grad()
    def _start_near_pooling(self) -> None:
        def identity(linear: nn.Linear) -> None:
            if linear.weight.shape[0] == linear.weight.shape[1]:
                linear.weight.copy_(torch.eye(linear.weight.shape[0]))
                linear.bias.zero_()

        identity(self.in_proj)
        identity(self.out_proj)
        identity(self.blocks[0].cross_attn.v)
        identity(self.blocks[0].cross_attn.o)
        for i, block in enumerate(self.blocks):  # every other residual branch adds nothing at the start
            zeros = [block.self_attn.o, block.mlp[-1]] + ([block.cross_attn.o] if i > 0 else [])
            for zero in zeros:
                zero.weight.zero_()
                zero.bias.zero_()

    def forward(self, vision: torch.Tensor) -> torch.Tensor:
        context = self.in_proj(vision)  # [B, n, w]
        x = self.queries.expand(vision.shape[0], -1, -1)  # [B, m, w]
        for block in self.blocks:
            x = block(x, context)
        return self.out_proj(x)  # [B, m, hidden]


@register
class QFormerCompressor(Compressor):
    """Learned queries outside the LM (a small BLIP-2 Q-Former); the LM keeps the KV of the m = k query tokens."""

    name = "qformer"
    module_name = "qformer"

    @classmethod
    def build_module(cls, k: int, text_config, options: dict) -> nn.Module:
        # initialised from its own seed: the global RNG (and so everything a training run draws after building
        # the model) stays as it is for the other compressors, so every row shares the same earlier stages
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(INIT_SEED)
            return QFormer(text_config.hidden_size, k)

    def layout(self, n_vision: int) -> SegmentLayout:
        return SegmentLayout(length=1 + self.k, kept_start=1, kept=self.k)

    def sequence_embeds(self, model, vision: torch.Tensor) -> torch.Tensor:
        return torch.cat([segment_start(model, vision.shape[0], vision.device), self.module(vision)], dim=1)

    def design_row(self, model, vision: torch.Tensor):
        from voco.reference import DesignSegment

        start = model.lm.get_input_embeddings()(torch.tensor([model.segment_start_id], device=vision.device))
        return DesignSegment(torch.cat([start, self.module(vision[None])[0]]), range(1, self.k + 1))

    def describe(self, n_vision: int) -> str:
        return f"the KV cache of {self.k} Q-Former query token(s) that read the {n_vision} vision tokens"

    def untrained_start(self) -> str:
        return "untrained (close to attention-weighted pooling)"
