"""Patch supervision: pretrain the vision tower on the synthetic world's per-frame ground truth.

LLaVA starts from a pretrained CLIP; nothing can be downloaded here, and a ViT trained from scratch through
the answer loss collapses (every projected token points the same way). A `patches` stage is our stand-in
for CLIP pretraining: every patch of a frame learns what covers it -- is there an object, its colour, its
shape, the background colour -- from the world's ground truth, through small linear heads that are thrown
away after the stage. The features then say what is where, and the LM stages learn to read them.

Labels per patch (grid = image_size / patch_size cells per side, cells cut in the world's pixel grid):
  object      1 when an object covers >= MIN_COVER of the cell, else 0
  color       that object's colour (ignored when there is no object)
  shape       that object's shape (ignored when there is no object)
  region      the region of the frame the object's centre is in (left / right / top / bottom / center),
              which ties the object's features to where it is
  background  the frame's background colour
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from voco.data.render import shape_mask
from voco.data.synthetic import video_name, video_seed_sequence
from voco.data.world import (
    BACKGROUND_COLORS,
    OBJECT_COLORS,
    REGIONS,
    SHAPES,
    Video,
    WorldConfig,
    generate_video,
    region_of,
)

TASKS = ("object", "color", "shape", "background", "region")
CLASSES = {"object": 2, "color": len(OBJECT_COLORS), "shape": len(SHAPES), "background": len(BACKGROUND_COLORS),
           "region": len(REGIONS)}
IGNORE = -100
MIN_COVER = 0.1
"""Fraction of a cell an object must cover for the cell to be labelled with it."""
SEGMENTS_PER_VIDEO = 4
"""Each video gives this many segments' worth of frames (frames_per_segment each), sampled at random."""


@dataclass
class PatchExample:
    frames: np.ndarray
    """uint8 [N, H, W, 3], N = SEGMENTS_PER_VIDEO * frames_per_segment."""
    labels: np.ndarray
    """int64 [N, len(TASKS), grid * grid], IGNORE where a label does not apply."""


def patch_labels(video: Video, frame: int, grid: int) -> np.ndarray:
    """Labels [len(TASKS), grid * grid] of one frame, from its ground truth (row-major cells, as ViT patches)."""
    size = video.size
    if size % grid:
        raise ValueError(f"the world's frame size {size} is not a multiple of the patch grid {grid}; "
                         f"pick data.world.size and model.image_size / patch_size so that it is")
    cell = size // grid
    ys, xs = np.mgrid[0:size, 0:size] + 0.5  # pixel centres [size, size]
    states = video.frame_states[frame]
    covers = np.zeros((len(states) + 1, grid, grid))  # [objects + 1, grid, grid], row 0: nothing
    owner = np.zeros((size, size), dtype=np.int64)  # later objects are drawn on top, as render_frames does
    for i, state in enumerate(states, start=1):
        owner[shape_mask(state.shape, xs - state.x, ys - state.y, state.size / 2)] = i
    for i in range(1, len(states) + 1):
        covers[i] = (owner == i).reshape(grid, cell, grid, cell).mean(axis=(1, 3))
    best = covers.argmax(0)  # [grid, grid]
    best[covers.max(0) < MIN_COVER] = 0
    best = best.ravel()
    labels = np.full((len(TASKS), grid * grid), IGNORE, dtype=np.int64)
    labels[0] = best > 0
    colors, shapes = list(OBJECT_COLORS), list(SHAPES)
    for i, state in enumerate(states, start=1):
        labels[1, best == i] = colors.index(state.color)
        labels[2, best == i] = shapes.index(state.shape)
        labels[4, best == i] = REGIONS.index(region_of(state.x, state.y, size))
    labels[3] = list(BACKGROUND_COLORS).index(video.background_at(frame))
    return labels


def load_patch_example(index: int, *, world: WorldConfig, base_seed: int, frames_per_segment: int,
                       grid: int) -> PatchExample:
    """Train video `index` (the same video the answer stages see at that index) -> frames + patch labels."""
    world_seed, _ = video_seed_sequence("train", index, base_seed).spawn(2)
    video = generate_video(world, world_seed, video_name("train", index, base_seed))
    want = SEGMENTS_PER_VIDEO * frames_per_segment
    rng = np.random.default_rng([base_seed, index, 0x9A7C])
    frames = np.sort(rng.choice(video.num_frames, size=want, replace=video.num_frames < want))
    labels = np.stack([patch_labels(video, int(f), grid) for f in frames])
    return PatchExample(video.frames[frames], labels)


class PatchHeads(nn.Module):
    """One linear classifier per task over the vision features the projector reads."""

    def __init__(self, features: int):
        super().__init__()
        self.heads = nn.ModuleDict({task: nn.Linear(features, CLASSES[task]) for task in TASKS})

    def forward(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        return {task: head(feats) for task, head in self.heads.items()}  # [N, p, classes] each


def feature_size(model) -> int:
    layer = model.config.vision_feature_layer
    return model.config.vision_config.hidden_size * (1 if isinstance(layer, int) else len(layer))


def patch_loss(model, heads: PatchHeads, examples: Sequence[PatchExample]) -> tuple[torch.Tensor, dict]:
    """Sum over tasks of the mean cross-entropy per patch, and each task's accuracy (stats)."""
    F_seg = model.voco.frames_per_segment
    frames = np.concatenate([e.frames for e in examples])  # [N, H, W, 3]
    labels = torch.from_numpy(np.concatenate([e.labels for e in examples])).to(model.device)  # [N, tasks, p]
    segments = [frames[i : i + F_seg] for i in range(0, len(frames), F_seg)]
    feats = model.vision_features(segments)  # [N, p, features]
    if feats.shape[1] != labels.shape[-1]:
        raise ValueError(f"the vision tower gives {feats.shape[1]} patch features per frame but the labels have "
                         f"{labels.shape[-1]} cells: is model.image_size / patch_size the label grid?")
    loss = feats.new_zeros(())
    stats = {}
    for t, (task, logits) in enumerate(heads(feats).items()):
        target = labels[:, t].flatten()
        logits = logits.flatten(0, 1).float()
        keep = target != IGNORE
        if keep.any():
            loss = loss + F.cross_entropy(logits[keep], target[keep])
            stats[f"acc_{task}"] = float((logits[keep].argmax(-1) == target[keep]).float().mean())
    return loss, stats
