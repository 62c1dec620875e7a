"""Per-layer key biases inside transformers' own forward: one registered attention function.

ATP (voco/compressors/atp/pruning.py) keeps a different set of vision tokens in every decoder layer. Expressed as
attention, a token pruned at layer l is a key that no query of layer l (or deeper) may read: an additive bias on
that key, -inf (hard pruning, inference) or log(mask) (soft masks, training), different per layer. A single attention
mask cannot say that (transformers builds one mask for all layers), so this module registers an attention
function `voco_key_bias` that adds a per-layer bias to the mask transformers built, then calls transformers'
own SDPA attention. The bias travels as the forward kwarg `key_bias` (transformers passes unknown kwargs down
to the attention function): any object with `__call__(layer_idx, query, key) -> [B, kv] | None`.

Without `key_bias` the function is exactly SDPA, so a model switched to it computes what it computed before.
The mask function registered with it is SDPA's, so transformers builds the same causal / padding masks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "voco_key_bias"
READS_KEY_BIAS: set[str] = {NAME}
"""Attention implementations that read `key_bias`: this one, and those that wrap it (voco/batching.py's per-row
decoding attention registers itself here)."""


def key_bias_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       attention_mask: torch.Tensor | None, **kwargs):
    """SDPA with `kwargs["key_bias"](layer, query, key)` [B, kv] added to every query's scores."""
    source = kwargs.pop("key_bias", None)
    bias = None if source is None else source(module.layer_idx, query, key)
    if bias is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    # query [B, Hq, q, D], key [B, Hkv, kv, D]; bias [B, kv]
    mask = additive_mask(attention_mask, query.shape[2], key.shape[2], query.dtype, query.device)
    mask = mask + bias.to(query.dtype)[:, None, None, : key.shape[2]]  # [B or 1, 1, q, kv]
    return sdpa_attention_forward(module, query, key, value, mask, **kwargs)


def additive_mask(attention_mask: torch.Tensor | None, q: int, kv: int, dtype: torch.dtype,
                  device: torch.device) -> torch.Tensor:
    """transformers' mask (None = causal, bool = allowed, float = additive) as an additive [.., 1|H, q, kv]."""
    low = torch.finfo(dtype).min
    if attention_mask is None:  # causal: the q queries are the last q of the kv positions
        allowed = torch.arange(kv, device=device)[None, :] <= (kv - q + torch.arange(q, device=device))[:, None]
        return torch.zeros(q, kv, dtype=dtype, device=device).masked_fill(~allowed, low)[None, None]
    if attention_mask.dtype == torch.bool:
        return torch.zeros(attention_mask.shape, dtype=dtype, device=device).masked_fill(~attention_mask, low)
    return attention_mask[..., :kv].to(dtype)


def use_key_bias_attention(lm: nn.Module) -> None:
    """Switch a transformers LM to `voco_key_bias` (idempotent). Only SDPA-compatible models: fail otherwise."""
    AttentionInterface.register(NAME, key_bias_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    current = lm.config._attn_implementation
    if current in READS_KEY_BIAS:
        return
    if current not in ("sdpa", "eager", None):
        raise ValueError(f"per-layer key biases (ATP) wrap SDPA attention; this LM uses {current!r}: load it with "
                         "attn_implementation='sdpa'")
    lm.set_attn_implementation(NAME)


class StaticKeyBias:
    """Fixed per-layer key biases: layer l adds `biases[l]` [B, K_l] to its first K_l keys (0 beyond: keys
    appended later, e.g. question and decoded tokens, are never biased)."""

    def __init__(self, biases: Sequence[torch.Tensor]):
        self.biases = list(biases)

    def __call__(self, layer: int, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        bias = self.biases[layer]
        extra = key.shape[2] - bias.shape[-1]
        return nn.functional.pad(bias, (0, extra)) if extra > 0 else bias[..., : key.shape[2]]

    def select(self, rows: torch.Tensor) -> StaticKeyBias:
        """The biases of batch rows `rows` (e.g. each question row's video)."""
        return StaticKeyBias([b[rows] for b in self.biases])
