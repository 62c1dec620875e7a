"""Analytic costs of VoCo caches and queries: bytes of KV, FLOPs of a decoder pass.

FLOPs follow the count FastV and PDrop use for a decoder layer over `new` tokens attending to
`past + new` keys: projections 4 * new * d^2 (q, k, v, o), attention 2 * new * (past + new) * d,
and a gated FFN 3 * new * d * m; multiply-adds count as two FLOPs. GQA's smaller k/v projections
are counted exactly (k and v project to kv_heads * head_dim).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DecoderShape:
    """What costs depend on in a decoder LM."""

    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    dtype_bytes: int = 2

    @classmethod
    def from_config(cls, text_config, dtype_bytes: int = 2) -> DecoderShape:
        head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // text_config.num_attention_heads
        return cls(
            layers=text_config.num_hidden_layers,
            hidden=text_config.hidden_size,
            ffn=text_config.intermediate_size,
            heads=text_config.num_attention_heads,
            kv_heads=text_config.num_key_value_heads,
            head_dim=head_dim,
            dtype_bytes=dtype_bytes,
        )


# LLaVA-1.5-7B's decoder (Vicuna-7B / Llama-2-7B shapes), fp16: the paper's Table 7 setting.
LLAVA_15_7B = DecoderShape(layers=32, hidden=4096, ffn=11008, heads=32, kv_heads=32, head_dim=128, dtype_bytes=2)


def kv_bytes(shape: DecoderShape, tokens: int) -> int:
    """Bytes of keys and values for `tokens` positions over all layers."""
    return shape.layers * 2 * shape.kv_heads * tokens * shape.head_dim * shape.dtype_bytes


def pass_flops(shape: DecoderShape, new: int, past: int = 0) -> int:
    """FLOPs of running `new` tokens through the decoder with `past` cached positions (no LM head)."""
    d, kv = shape.hidden, shape.kv_heads * shape.head_dim
    projections = 2 * new * (2 * d * d + 2 * d * kv)  # q, o: d -> d; k, v: d -> kv
    attention = 2 * 2 * new * (past + new) * shape.heads * shape.head_dim  # scores and weighted sum
    ffn = 2 * 3 * new * d * shape.ffn
    return shape.layers * (projections + attention + ffn)
