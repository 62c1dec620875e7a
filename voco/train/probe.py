"""Cache probe: an auxiliary loss that asks each segment's kept cache to say what the segment shows.

Trained from scratch, VoCo compression collapses: early on the caches are noise to a reader that has not
learned to use them, the cheapest fix is to make every cache the same, and the model then answers from
the question alone (a linear probe on the kept KV of such a model reads the object's colour at chance,
while the same probe on the untrained model reads it well above). A pretrained LLaVA never meets this,
its reader already reads vision tokens. A `probe_weight > 0` stage adds linear heads that read each
segment's kept KV -- all layers, keys and values, flattened -- and predict the segment's content from the
world's ground truth (multi-hot, class-balanced binary cross-entropy), so the caches keep the content while the reader
learns to use it. The heads are thrown away after training; inference is untouched.

Targets per segment (union over its sampled frames): which (colour, shape), (colour, region) and
(colour, motion direction) pairs are on screen, and the background colour.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from voco.cost import DecoderShape
from voco.data.world import BACKGROUND_COLORS, DIRECTIONS, OBJECT_COLORS, REGIONS, SHAPES, Video, region_of

_COLORS, _SHAPES, _REGIONS, _DIRECTIONS = list(OBJECT_COLORS), list(SHAPES), list(REGIONS), list(DIRECTIONS)
_OFFSETS = np.cumsum([0, len(_COLORS) * len(_SHAPES), len(_COLORS) * len(_REGIONS),
                      len(_COLORS) * len(_DIRECTIONS), len(BACKGROUND_COLORS)])
TARGETS = int(_OFFSETS[-1])
"""Length of a segment's multi-hot target."""


def segment_targets(video: Video, frames: np.ndarray) -> np.ndarray:
    """float32 [TARGETS] multi-hot of what the frames `frames` (indices into the video) show."""
    target = np.zeros(TARGETS, dtype=np.float32)
    tracks = {obj.object_id: obj for obj in video.objects}
    for f in frames:
        for s in video.frame_states[int(f)]:
            c = _COLORS.index(s.color)
            target[_OFFSETS[0] + c * len(_SHAPES) + _SHAPES.index(s.shape)] = 1
            target[_OFFSETS[1] + c * len(_REGIONS) + _REGIONS.index(region_of(s.x, s.y, video.size))] = 1
            target[_OFFSETS[2] + c * len(_DIRECTIONS) + _DIRECTIONS.index(tracks[s.object_id].direction)] = 1
        target[_OFFSETS[3] + list(BACKGROUND_COLORS).index(video.background_at(int(f)))] = 1
    return target


class CacheProbe(nn.Module):
    """Linear read-out of a segment's kept KV [layers, 2, kv_heads, kept, head_dim] -> TARGETS logits."""

    def __init__(self, cache_numel: int):
        super().__init__()
        self.norm = nn.LayerNorm(cache_numel, elementwise_affine=False)  # layers differ wildly in scale
        self.linear = nn.Linear(cache_numel, TARGETS)

    def forward(self, kv: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(kv.flatten(1).float()))  # [S, TARGETS]


def cache_numel(model) -> int:
    """Elements of one segment's kept KV for `model` (what a CacheProbe reads)."""
    shape = DecoderShape.from_config(model.config.text_config)
    return shape.layers * 2 * shape.kv_heads * model.k * shape.head_dim


def probe_loss(probe: CacheProbe, kv: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Mean binary cross-entropy of the probe on kept KV [S, ...] against multi-hot targets [S, TARGETS]."""
    if kv.shape[0] != targets.shape[0]:
        raise ValueError(f"{kv.shape[0]} segment caches but {targets.shape[0]} probe targets")
    logits = probe(kv)
    # balanced: targets are sparse (~1 in 20 set), and an unweighted probe learns to say "nothing" everywhere
    positives = targets.sum()
    pos_weight = (targets.numel() - positives) / positives.clamp(min=1.0)
    loss = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight)
    hits = ((logits > 0) == (targets > 0.5)).float()
    # recall on what is there (the all-zero guess scores ~0.95 on plain accuracy)
    recall = float(hits[targets > 0.5].mean()) if (targets > 0.5).any() else float("nan")
    return loss, {"probe": float(loss.detach()), "probe_recall": recall}
