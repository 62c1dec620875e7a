"""What a stage trains and at what rate: the learning-rate schedule and the parameter groups."""

from __future__ import annotations

import math

import torch

from voco.lora import lora_state
from voco.train.config import StageSpec


def lr_at(stage: StageSpec, step: int) -> float:
    """Linear warm-up to `lr`, then cosine decay to `lr * min_lr_ratio` at the stage's last step."""
    if stage.warmup_steps and step < stage.warmup_steps:
        return stage.lr * (step + 1) / stage.warmup_steps
    span = max(1, stage.steps - stage.warmup_steps)
    progress = min(1.0, (step - stage.warmup_steps) / span)
    floor = stage.lr * stage.min_lr_ratio
    return floor + (stage.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def set_trainable(model, groups: list[str]) -> list[dict]:
    """Freeze everything, unfreeze the stage's groups; return AdamW parameter groups (no decay on norms/biases)."""
    for p in model.parameters():
        p.requires_grad_(False)
        p._voco_row_mask = None  # type: ignore[attr-defined]
    modules = {"vision": model.vision_tower, "projector": model.projector, "lm": model.lm}
    if model.compressor.module is not None:  # the compressor's own weights train as its module name
        modules[model.compressor.module_name] = model.compressor.module
    for name in groups:
        if name in modules:
            for p in modules[name].parameters():
                p.requires_grad_(True)
    if "adapters" in groups:
        adapters = lora_state(model.lm)
        if not adapters:
            raise ValueError("a stage trains 'adapters' but the model has no LoRA adapters (an assembled model has)")
        for p in adapters.values():
            p.requires_grad_(True)
    embedding = model.lm.get_input_embeddings().weight
    if "voco_embedding" in groups and "lm" not in groups:
        # only the <voco> / segment-start rows of the input embeddings learn
        embedding.requires_grad_(True)
        rows = torch.zeros(embedding.shape[0], 1, dtype=embedding.dtype, device=embedding.device)
        rows[[model.voco_token_id, model.segment_start_id]] = 1
        embedding._voco_row_mask = rows  # type: ignore[attr-defined]
    decay, no_decay, masked = [], [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if getattr(p, "_voco_row_mask", None) is not None:
            masked.append(p)
        elif p.dim() < 2:
            no_decay.append(p)
        else:
            decay.append(p)
    out = [{"params": decay, "weight_decay": None}, {"params": no_decay, "weight_decay": 0.0},
           {"params": masked, "weight_decay": 0.0}]
    return [g for g in out if g["params"]]


def mask_row_grads(model) -> None:
    for p in model.parameters():
        mask = getattr(p, "_voco_row_mask", None)
        if mask is not None and p.grad is not None:
            p.grad.mul_(mask)
