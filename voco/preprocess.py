"""Frames -> the vision tower's pixels: how a (usually non-square) video frame becomes a square image.

Three modes, a `VoCoConfig.image_resize` value each, resolved to a class here (`frame_preprocessor`):

- `stretch`: resize to the square directly (bilinear, antialiased), ignoring the aspect ratio. The
  bundled models were trained this way; their caches depend on it, so it stays their mode.
- `pad`: LLaVA-1.5's preprocessing (`expand2square` in the original code, `do_pad=True` in transformers'
  `LlavaImageProcessor`): pad the frame to a square with the mean colour (`int(mean * 255)` per channel),
  the frame centred (the odd pixel goes after it), then resize (bicubic, antialiased, rounded to 8 bits as
  PIL does), rescale and normalise with the CLIP mean/std. What a LLaVA-1.5 checkpoint was trained on.
- `crop`: CLIP's own processor (`do_pad=False`): resize the shortest edge to the square's side (bicubic),
  then crop the centre.

A plain LLaVA checkpoint's `preprocessor_config.json` decides its mode and mean/std
(`llava_preprocessing`); without one it gets `pad`, LLaVA-1.5's training preprocessing.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

import torch
from torch.nn import functional as F

PREPROCESSOR_CONFIG = "preprocessor_config.json"


class ResizeMode(StrEnum):
    STRETCH = "stretch"
    PAD = "pad"
    CROP = "crop"


class FramePreprocessor:
    """uint8 frames [N, H, W, 3] -> normalised float pixels [N, 3, size, size]."""

    def __init__(self, size: int, mean: tuple[float, float, float], std: tuple[float, float, float]):
        self.size, self.mean, self.std = size, mean, std

    def square(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [N, H, W, 3] -> float [N, 3, size, size] in [0, 1]."""
        raise NotImplementedError

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.square(frames)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std


class Stretch(FramePreprocessor):
    def square(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2).float() / 255.0  # [N, 3, H, W]
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return x


def pad_to_square(frames: torch.Tensor, fill: tuple[int, int, int]) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> [N, S, S, 3], S = max(H, W): the frames centred on a `fill`-coloured canvas
    (offset (S - side) // 2, as LLaVA's expand2square pastes them)."""
    n, h, w, _ = frames.shape
    side = max(h, w)
    canvas = torch.tensor(fill, dtype=frames.dtype, device=frames.device).expand(n, side, side, 3).clone()
    top, left = (side - h) // 2, (side - w) // 2
    canvas[:, top : top + h, left : left + w] = frames
    return canvas


def _resize_8bit(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic, antialiased resize of 0..255 pixels [N, 3, H, W] as PIL resizes an 8-bit image (what the
    LLaVA / CLIP processors do): torch's antialiased bicubic uses PIL's filter; PIL runs the horizontal pass,
    rounds and clips to 8 bits, then the vertical pass, rounds and clips again."""
    def resample(t: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        if t.shape[-2:] == hw:
            return t
        t = F.interpolate(t, size=hw, mode="bicubic", antialias=True, align_corners=False)
        return t.round().clamp(0, 255)

    return resample(resample(x, (x.shape[-2], size[1])), size)


class PadToSquare(FramePreprocessor):
    def square(self, frames: torch.Tensor) -> torch.Tensor:
        fill = tuple(int(m * 255) for m in self.mean)  # LLaVA's background colour: int(), not round()
        x = pad_to_square(frames, fill).permute(0, 3, 1, 2).float()
        return _resize_8bit(x, (self.size, self.size)) / 255.0


class ResizeCrop(FramePreprocessor):
    def square(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2).float()
        h, w = x.shape[-2:]
        short, long = (h, w) if h <= w else (w, h)
        scaled = (self.size, int(self.size * long / short))  # transformers' shortest_edge rule
        x = _resize_8bit(x, scaled if h <= w else scaled[::-1])
        top, left = (x.shape[-2] - self.size) // 2, (x.shape[-1] - self.size) // 2
        return x[..., top : top + self.size, left : left + self.size] / 255.0


PREPROCESSORS: dict[ResizeMode, type[FramePreprocessor]] = {
    ResizeMode.STRETCH: Stretch, ResizeMode.PAD: PadToSquare, ResizeMode.CROP: ResizeCrop,
}


def frame_preprocessor(mode: ResizeMode, size: int, mean, std) -> FramePreprocessor:
    return PREPROCESSORS[ResizeMode(mode)](size, tuple(mean), tuple(std))


def llava_preprocessing(folder: str | Path, image_size: int) -> dict:
    """`VoCoConfig` fields (image_resize, image_mean, image_std) for a plain LLaVA checkpoint in `folder`,
    from its preprocessor_config.json: `do_pad: true` -> pad; `do_pad: false` -> crop (shortest edge +
    centre crop) or stretch (a {height, width} resize without a crop, as SigLIP's processor does); no
    `do_pad` on a CLIP-style processor -> pad, LLaVA-1.5's training preprocessing (transformers leaves
    `do_pad` off by default for backward compatibility only). `image_mean`/`image_std` are taken as
    written; the output side must be the vision tower's `image_size`. No file: pad, CLIP mean/std."""
    path = Path(folder, PREPROCESSOR_CONFIG)
    if not path.is_file():
        return {"image_resize": ResizeMode.PAD}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read it as JSON ({err}); fix or delete it (without it, LLaVA-1.5's "
                         "pad-to-square preprocessing is used)") from err
    size, cropped = data.get("size"), bool(data.get("do_center_crop", False))
    side = _square_side(data.get("crop_size") if cropped else size)
    if side is not None and side != image_size:
        raise ValueError(f"{path}: the processor makes {side} px images but the vision tower reads "
                         f"{image_size} px (config.json vision_config.image_size); they must agree")
    shortest_edge = isinstance(size, dict) and "shortest_edge" in size
    if data.get("do_pad") is True or ("do_pad" not in data and shortest_edge):
        mode = ResizeMode.PAD
    else:
        mode = ResizeMode.CROP if shortest_edge and cropped else ResizeMode.STRETCH
    fields: dict = {"image_resize": mode}
    for key in ("image_mean", "image_std"):
        if key in data:
            fields[key] = tuple(float(x) for x in data[key])
    return fields


def _square_side(size) -> int | None:
    """crop_size / size as transformers writes it ({height, width}, {shortest_edge} or an int) -> a side."""
    if isinstance(size, int):
        return size
    if isinstance(size, dict):
        if "height" in size and size.get("height") == size.get("width"):
            return int(size["height"])
        if "shortest_edge" in size:
            return int(size["shortest_edge"])
    return None
