"""Low-rank adapters (LoRA) on a decoder's linear layers: the frozen pretrained weight plus B @ A, B = 0 at start.

The adapted model computes exactly what the base model computes until training moves B, so an assembled
model with fresh adapters answers as its pretrained LM does.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class LoRALinear(nn.Module):
    """y = base(x) + (alpha / rank) * x A^T B^T, with `base` frozen."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.base = base
        self.scale = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, dtype=base.weight.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, dtype=base.weight.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self._merged: torch.Tensor | None = None  # merged_weight's cache (a plain tensor: not saved, not moved)
        self._merged_key: tuple | None = None

    @property
    def weight(self) -> torch.Tensor:  # code that inspects `.weight` (dtype, device) sees the base layer's
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():  # training: the adapters stay apart, so their gradients are the low-rank ones
            return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scale
        return F.linear(x, self.merged_weight(), self.base.bias)

    def merged_weight(self) -> torch.Tensor:
        """W + scale * B @ A, for inference: one matmul per layer instead of three (the adapters cost a fifth of
        an answer's prefill on the default model). Rebuilt when any of the three tensors is modified in place or
        swapped (`.data`, as the frozen KV teacher does), moved or cast."""
        tensors = (self.base.weight, self.lora_A, self.lora_B)
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
        if self._merged_key != key:
            weight = self.base.weight + self.scale * (self.lora_B @ self.lora_A)
            self._merged, self._merged_key = weight.detach(), key
        return self._merged


def add_lora(module: nn.Module, targets: list[str], rank: int, alpha: float) -> int:
    """Wrap every nn.Linear whose attribute name is in `targets` (e.g. q_proj, v_proj); returns how many."""
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if name in targets and isinstance(child, nn.Linear):
                setattr(parent, name, LoRALinear(child, rank, alpha))
                count += 1
    if count == 0:
        raise ValueError(f"no nn.Linear named any of {targets} in {type(module).__name__}: check lora_targets")
    return count


def lora_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' weights by their names in `module`."""
    return {name: p for name, p in module.named_parameters() if name.endswith((".lora_A", ".lora_B"))}
