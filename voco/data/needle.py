"""Needle-in-a-haystack segments for retrieval checks: one segment shows the needle object, the rest don't.

    segments, needle = needle_segments(64, frames_per_segment=2, seed=0)   # uint8 [F, S, S, 3] each
    # segment `needle` shows a red circle; the others show a plain background or another shape/colour

Drawn with the synthetic world's shapes and colours (voco/data/world.py), so any model trained on
that world has seen them. Caches are position-free, so these serve as one long video.
"""

from __future__ import annotations

import numpy as np

from voco.data.render import BACKGROUND_COLORS, OBJECT_COLORS, shape_mask
from voco.data.world import SHAPES

NEEDLE = ("circle", "red")


def draw_segment(rng: np.random.Generator, frames: int, size: int, obj: tuple[str, str] | None) -> np.ndarray:
    """One segment: `frames` identical frames of a random background with `obj` (shape, colour) or nothing."""
    out = np.empty((frames, size, size, 3), np.uint8)
    out[:] = list(BACKGROUND_COLORS.values())[rng.integers(len(BACKGROUND_COLORS))]
    if obj is not None:
        yy, xx = np.mgrid[0:size, 0:size]
        cx, cy = rng.uniform(0.27 * size, 0.73 * size, 2)
        out[:, shape_mask(obj[0], xx - cx, yy - cy, rng.uniform(0.08, 0.12) * size)] = OBJECT_COLORS[obj[1]]
    return out


def needle_segments(count: int, *, frames_per_segment: int, size: int = 96, seed: int = 0,
                    distractor_fraction: float = 0.5) -> tuple[list[np.ndarray], int]:
    """`count` segments, one of which (index returned) shows the red circle; half the others a distractor
    object (never red, never a circle), the rest a plain background."""
    rng = np.random.default_rng(seed)
    needle = int(rng.integers(count))
    shapes = [s for s in SHAPES if s != NEEDLE[0]]
    colors = [c for c in OBJECT_COLORS if c != NEEDLE[1]]
    segments = []
    for t in range(count):
        if t == needle:
            obj = NEEDLE
        elif rng.random() < distractor_fraction:
            obj = (shapes[rng.integers(len(shapes))], colors[rng.integers(len(colors))])
        else:
            obj = None
        segments.append(draw_segment(rng, frames_per_segment, size, obj))
    return segments, needle
