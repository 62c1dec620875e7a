"""Drawing the synthetic world (voco/data/world.py): its palette, its shapes' masks, a video's frames."""

from __future__ import annotations

import numpy as np

OBJECT_COLORS: dict[str, tuple[int, int, int]] = {  # RGB, far apart so they survive yuv420p
    "red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 90, 255),
    "yellow": (245, 225, 40), "white": (245, 245, 245), "purple": (170, 60, 230),
}
BACKGROUND_COLORS: dict[str, tuple[int, int, int]] = {  # dark, none close to an object colour
    "black": (10, 10, 10), "gray": (90, 90, 90), "navy": (20, 25, 75), "brown": (75, 45, 25),
}
# Radius of the circle enclosing any shape of radius r, over r (the triangle's base corners are furthest).
ENCLOSING_RADIUS_FACTOR = 1.26


def shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    """Boolean mask of a shape centred at (0, 0); dx, dy are pixel offsets from the centre."""
    if shape == "circle":
        return dx * dx + dy * dy <= radius * radius
    if shape == "square":
        half_side = 0.85 * radius
        return (np.abs(dx) <= half_side) & (np.abs(dy) <= half_side)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= radius
    if shape == "triangle":  # apex up, base at 0.75 r below the centre
        base_y = 0.75 * radius
        half_width = (dy + radius) / (base_y + radius) * radius
        return (dy >= -radius) & (dy <= base_y) & (np.abs(dx) <= half_width)
    if shape == "cross":  # plus sign with arms one third of the radius thick
        arm = radius / 3
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= radius)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= radius))
    raise ValueError(f"unknown shape {shape!r}")


def render_frames(video, noise_std: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Draw a `world.Video`'s ground truth. Returns uint8 [N, H, W, 3]."""
    size = video.size
    frames = np.empty((video.num_frames, size, size, 3), dtype=np.uint8)  # [N, H, W, 3]
    for span in video.backgrounds:
        frames[span.start_frame:span.end_frame] = BACKGROUND_COLORS[span.color]
    for frame_index, states in enumerate(video.frame_states):
        for state in states:
            reach = int(np.ceil(state.size / 2 * ENCLOSING_RADIUS_FACTOR)) + 1
            x0, x1 = max(int(state.x) - reach, 0), min(int(state.x) + reach + 1, size)
            y0, y1 = max(int(state.y) - reach, 0), min(int(state.y) + reach + 1, size)
            dy = np.arange(y0, y1)[:, None] - state.y  # [h, 1]
            dx = np.arange(x0, x1)[None, :] - state.x  # [1, w]
            dx, dy = np.broadcast_arrays(dx, dy)  # [h, w] each
            mask = shape_mask(state.shape, dx, dy, state.size / 2)  # [h, w]
            frames[frame_index, y0:y1, x0:x1][mask] = OBJECT_COLORS[state.color]
    if noise_std > 0:
        rng = rng if rng is not None else np.random.default_rng(0)
        for frame_index in range(video.num_frames):
            noise = rng.normal(0.0, noise_std, size=frames.shape[1:]).astype(np.float32)  # [H, W, 3]
            frames[frame_index] = np.clip(frames[frame_index] + noise, 0, 255).astype(np.uint8)
    return frames
