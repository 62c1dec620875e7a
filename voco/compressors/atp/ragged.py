"""Answering from ragged caches: layers of different lengths in one transformers cache, exactly.

Layer l of the answering cache is [prefix (P), the segments' layer-l tokens (M_l), pads (M - M_l)], M = max_l M_l,
so every layer has the same length (transformers' masks, `get_seq_length`, `crop` and decoding work unchanged).
Pads are zero KV that no query may read: a per-layer key bias of -inf on them (voco/key_bias.py) removes them
from the softmax exactly (they get probability 0, not a small one), so the result equals attention over the
M_l real tokens alone. Keys already sit at their timeline positions (RoPE applied), so slot order is free.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F
from transformers import DynamicCache

from voco.cache import RaggedSegmentCache, place_ragged_on_timeline
from voco.key_bias import StaticKeyBias, use_key_bias_attention


class BiasedCache(DynamicCache):
    """A DynamicCache whose layers carry a fixed key bias (`key_bias`, passed to the LM by `forward_tokens`)."""

    def __init__(self, layers, key_bias: StaticKeyBias):
        super().__init__(ddp_cache_data=layers)
        self.key_bias = key_bias


def pad_layers(prefix_k: torch.Tensor, prefix_v: torch.Tensor, keys: Sequence[torch.Tensor],
               values: Sequence[torch.Tensor], lengths: Sequence[int]) -> BiasedCache:
    """prefix KV [layers, H, P, D] + per-layer segment KV [H, M_l, D] -> a BiasedCache, pads masked per layer."""
    M = max(lengths)
    P = prefix_k.shape[2]
    layers, biases = [], []
    for pk, pv, k, v, m in zip(prefix_k, prefix_v, keys, values, lengths, strict=True):
        pad = M - m
        layers.append((torch.cat((pk, F.pad(k, (0, 0, 0, pad))), dim=1)[None],  # [1, H, P + M, D]
                       torch.cat((pv, F.pad(v, (0, 0, 0, pad))), dim=1)[None]))
        bias = torch.zeros(1, P + M, dtype=torch.float32, device=pk.device)
        bias[:, P + m :] = float("-inf")
        biases.append(bias)
    return BiasedCache(layers, StaticKeyBias(biases))


def past_from_ragged(model, caches: Sequence[RaggedSegmentCache], prefix_ids: list[int]) -> tuple[BiasedCache, int]:
    """[prefix KV, ragged segment caches on the timeline] as the LM's cache, and the next position."""
    use_key_bias_attention(model.lm)
    prefix_k, prefix_v = model._prefix_kv(prefix_ids)
    moved = [RaggedSegmentCache(c.kv.to(model.device, model.dtype), c.lengths, c.positions, c.source_position,
                                c.span, c.fingerprint, c.compressor) for c in caches]
    keys, values, lengths, end = place_ragged_on_timeline(moved, len(prefix_ids), model.inv_freq)
    return pad_layers(prefix_k, prefix_v, keys, values, lengths), end
