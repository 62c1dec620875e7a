"""Items of real training data, their media as segments, and the bad-item ledger every reader shares.

An `Item` is one training sample as a reader parsed it: an id, one image or video file, and its conversations
(question, answer turns). `MediaLoader` turns its media into segments exactly as inference sees them:

- a video is decoded by `voco.video.frames.decode_video_segments`, the routine `python -m ingest` uses
  (segment rule of `voco.segments`, frames chosen by timestamp, rotation, the same decode size cap);
- an image is one segment: the picture repeated `frames_per_segment` times (a still clip of one segment);
- every frame is then brought to the vision tower's square by the model's own preprocessing
  (`voco.preprocess`: pad / crop / stretch) and kept as uint8 [F, S, S, 3], so frames of any size batch
  together and the model's own preprocessing of an S x S frame is the identity (pixel-identical for pad/crop).

`Problems` counts what is skipped (missing file, undecodable, no frames, bad item) with a few example ids, and
logs one line per kind: at parse time for what the file itself shows, and while training at the 1st, 10th,
100th, ... occurrence, so a long run is never stopped and never floods the log.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from voco.preprocess import frame_preprocessor
from voco.video.frames import decode_side_cap, decode_video_segments
from voco.video.probe import NoFramesError, VideoError

log = logging.getLogger("voco.train.readers")

MISSING = "missing file"
UNDECODABLE = "undecodable"
NO_FRAMES = "no frames"
BAD_ITEM = "bad item"
NO_MEDIA = "no image or video"


@dataclass(frozen=True)
class Media:
    kind: str
    """`image` or `video`."""
    path: Path
    max_segments: int = 0
    """Segments of a video kept at most (a uniform subset, in time order); 0: all."""


@dataclass
class Item:
    id: str
    media: Media
    chats: list[list[tuple[str, str]]]
    """Conversations about the media, each [(question, answer), ...] in order (one for a LLaVA item; several
    single-turn ones for Video-ChatGPT's questions on one video, sharing its caches). Loss on every answer."""
    type: str = "conversation"
    """Question type, for the per-type validation accuracy (e.g. `conversation`, `caption`, `video_qa`)."""


class MediaError(Exception):
    """This item's media cannot be used; `kind` is one of the ledger kinds above."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind


@dataclass
class Problems:
    """Skipped items by kind: counts, a few example ids (with reasons), one log line per kind."""

    source: str
    examples_per_kind: int = 3
    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=lambda: defaultdict(list))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, kind: str, item_id: str, reason: str = "", *, live: bool = False) -> None:
        """Count one skipped item; `live` (found while training) logs at the 1st, 10th, 100th... of a kind."""
        with self._lock:
            self.counts[kind] += 1
            if len(self.examples[kind]) < self.examples_per_kind:
                self.examples[kind].append(f"{item_id} ({reason})" if reason else item_id)
            count = self.counts[kind]
        if live and math.log10(count).is_integer():
            log.warning(self.line(kind))

    def line(self, kind: str) -> str:
        return (f"{self.source}: skipped {self.counts[kind]} item(s), {kind}; e.g. "
                f"{', '.join(self.examples[kind])}")

    def lines(self) -> list[str]:
        return [self.line(kind) for kind in sorted(self.counts)]

    def log(self) -> None:
        for line in self.lines():
            log.warning(line)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def read_image(path: Path) -> np.ndarray:
    """uint8 [H, W, 3] RGB; `MediaError` for a missing or undecodable file."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise MediaError(MISSING, f"no file {path}")
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))  # a writable copy
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise MediaError(UNDECODABLE, str(err)) from err


class MediaLoader:
    """Media -> segments, uint8 [F, S, S, 3] each, sampled and preprocessed as the model reads them."""

    def __init__(self, model):
        voco = model.voco
        size = model.config.vision_config.image_size
        self.frames_per_segment = voco.frames_per_segment
        self.segment_seconds = voco.segment_seconds
        self.max_side = decode_side_cap(size, None)
        self.preprocess = frame_preprocessor(voco.image_resize, size, voco.image_mean, voco.image_std)

    def segments(self, media: Media) -> list[np.ndarray]:
        if media.kind == "image":  # squared once, then repeated: a still segment
            return [np.repeat(self.square(read_image(media.path)[None]), self.frames_per_segment, axis=0)]
        raw = self._video(media.path)
        if media.max_segments and len(raw) > media.max_segments:  # a uniform subset, in time order
            keep = np.linspace(0, len(raw) - 1, media.max_segments).round().astype(int)
            raw = [raw[i] for i in keep]
        return [self.square(seg) for seg in raw]

    def square(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [F, H, W, 3] -> uint8 [F, S, S, 3] through the model's own pad / crop / stretch."""
        with torch.no_grad():
            x = self.preprocess.square(torch.from_numpy(np.ascontiguousarray(frames)))  # [F, 3, S, S] in [0, 1]
        return (x * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()

    def _video(self, path: Path) -> list[np.ndarray]:
        if not path.is_file():
            raise MediaError(MISSING, f"no file {path}")
        try:
            segments = decode_video_segments(path, segment_seconds=self.segment_seconds,
                                             frames_per_segment=self.frames_per_segment, max_side=self.max_side)
        except NoFramesError as err:
            raise MediaError(NO_FRAMES, str(err)) from err
        except VideoError as err:
            raise MediaError(UNDECODABLE, str(err)) from err
        if not segments:
            raise MediaError(NO_FRAMES, f"{path}: no segment")
        return segments
