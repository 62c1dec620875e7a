"""Low-rank adapters (LoRA) on a decoder's linear layers: the frozen pretrained weight plus B @ A, B = 0 at start.

The adapted model computes exactly what the base model computes until training moves B, so an assembled
model with fresh adapters answers as its pretrained LM does.
"""

from __future__ import annotations

import math

import torch
from torch import nn


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

    @property
    def weight(self) -> torch.Tensor:  # code that inspects `.weight` (dtype, device) sees the base layer's
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scale


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
