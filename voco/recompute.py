"""Gradient checkpointing that keeps VoCo's KV caches: transformers' own (`activation_checkpointing_enable`, formerly
`gradient_checkpointing_enable`), per layer, plus a replay-safe cache.

VoCo needs the LM's KV cache while training: the compression pass returns the kept `<voco>` keys and values
from it, and the question pass reads the segment caches through it. transformers' per-layer checkpointing
(`gradient_checkpointing_enable()`) drops any cache a layer is given, because a cache that appends would be
appended to a second time when the backward pass replays the layer. A layer may keep its cache when it sets
`_can_checkpoint_with_cache` (transformers' own switch, `GradientCheckpointingLayer`); `OnePassCache` makes
that safe: within one forward pass its `update` returns [what it held before the pass, the new keys] and
*replaces* what an earlier call of the pass wrote, so a replay computes the very same tensors.

    enable_gradient_checkpointing(model.lm)           # and model.vision_tower
    out = lm.model(inputs_embeds=x, cache=OnePassCache(), use_cache=True)  # the cache survives checkpointing
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import DynamicCache
from transformers.cache_utils import Cache, DynamicLayer
from transformers.modeling_layers import GradientCheckpointingLayer


class OnePassLayer(DynamicLayer):
    """One layer's cache for one forward pass: update() gives [base, new] and keeps it, idempotently."""

    def __init__(self, keys: torch.Tensor | None = None, values: torch.Tensor | None = None, **kwargs):
        super().__init__(**kwargs)
        self._base: tuple[torch.Tensor, torch.Tensor] | None = None
        if keys is not None:
            self.lazy_initialization(keys, values)
            self.keys, self.values = keys, values
            self._base = (keys, values)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if self._base is None:
            self._base = (self.keys, self.values)
        self.keys = torch.cat([self._base[0], key_states], dim=-2)  # [B, H, base + new, D]
        self.values = torch.cat([self._base[1], value_states], dim=-2)
        return self.keys, self.values


class OnePassCache(DynamicCache):
    """A cache for exactly one forward pass (VoCo's compression and question passes while training), safe
    under gradient checkpointing; `past`: per layer (keys, values) [B, kv_heads, T, head_dim] it starts from.
    Decoding step by step needs an ordinary `DynamicCache` (each step would replace the previous one here)."""

    def __init__(self, past: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None):
        if past:
            Cache.__init__(self, layers=[OnePassLayer(k, v) for k, v in past])
        else:
            Cache.__init__(self, layer_class_to_replicate=OnePassLayer)


def enable_gradient_checkpointing(module: nn.Module) -> int:
    """transformers' activation (gradient) checkpointing, non-reentrant, on `module`, with every checkpointed
    layer keeping the cache it is given (see the module docstring); returns how many layers checkpoint."""
    if not hasattr(module, "activation_checkpointing_enable"):
        raise TypeError(f"{type(module).__name__} is not a transformers model: cannot enable its gradient "
                        "checkpointing")
    # `activation_checkpointing_enable` is transformers' new name of `gradient_checkpointing_enable`
    module.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    layers = [m for m in module.modules() if isinstance(m, GradientCheckpointingLayer)]
    for layer in layers:
        layer._can_checkpoint_with_cache = True  # transformers' switch; OnePassCache makes the replay exact
    if not layers:
        raise ValueError(f"{type(module).__name__} has no checkpointable layers")
    return len(layers)
