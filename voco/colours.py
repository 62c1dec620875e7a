"""Basic colour words for pixels: the eleven basic colour terms of English (Berlin & Kay), measured, not learned.

    colour_index(rgb)             uint8 [..., 3] -> int [...] index into COLOURS
    dominant_colour(rgb, weights) the colour word covering most of a (weighted) region

Pixels are named from hue, saturation and value with fixed thresholds; brown is a dark orange/yellow/red, pink a
light, desaturated red or magenta. Used by the evidence tower (the colour of what the classifier found) and by the
held-out evaluation's lookup rule.
"""

from __future__ import annotations

import numpy as np

COLOURS = ("black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")
INDEX = {name: i for i, name in enumerate(COLOURS)}


def _hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 [..., 3] -> hue in degrees [0, 360), saturation and value in [0, 1]."""
    x = rgb.astype(np.float32) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = x.max(-1)
    c = v - x.min(-1)
    s = np.where(v > 0, c / np.maximum(v, 1e-6), 0.0)
    safe = np.maximum(c, 1e-6)
    h = np.where(v == r, ((g - b) / safe) % 6, np.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4)) * 60.0
    return np.where(c > 0, h, 0.0) % 360.0, s, v


def colour_index(rgb: np.ndarray) -> np.ndarray:
    """The basic colour of each pixel: int [...] indices into `COLOURS`."""
    h, s, v = _hsv(rgb)
    out = np.full(h.shape, INDEX["grey"], dtype=np.int64)
    chromatic = (s >= 0.25) & (v >= 0.2)
    hue_names = np.select(
        [(h < 15) | (h >= 340), h < 40, h < 70, h < 165, h < 255, h < 290, h < 340],
        [INDEX["red"], INDEX["orange"], INDEX["yellow"], INDEX["green"], INDEX["blue"], INDEX["purple"],
         INDEX["pink"]], INDEX["red"])
    warm = (h < 70) | (h >= 340)
    brown = warm & (v < 0.6) & (s >= 0.25)
    pink = ((h < 15) | (h >= 300)) & (s < 0.55) & (v >= 0.75)
    hue_names = np.where(brown, INDEX["brown"], np.where(pink, INDEX["pink"], hue_names))
    out = np.where(chromatic, hue_names, out)
    out = np.where(~chromatic & (v >= 0.82), INDEX["white"], out)
    out = np.where(v < 0.2, INDEX["black"], out)
    return out


def colour_histogram(rgb: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """float [len(COLOURS)]: the share of each colour in a region (weights: same shape as rgb[..., 0])."""
    index = colour_index(rgb).reshape(-1)
    w = np.ones(index.shape, np.float64) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    hist = np.bincount(index, weights=w, minlength=len(COLOURS))
    total = hist.sum()
    return hist / total if total > 0 else hist


def dominant_colour(rgb: np.ndarray, weights: np.ndarray | None = None) -> str:
    return COLOURS[int(colour_histogram(rgb, weights).argmax())]
