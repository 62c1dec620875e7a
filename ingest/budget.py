"""What one segment costs, measured once per run, so that a video planned past the segment cap is refused with
its price: "18,000 segments, about 830 MB of caches and 2 h 10 min of model time here".

A few hundred KB of black frames can last ten hours; the cap (`IngestConfig.max_segments`) stops that before
any frame is decoded, and the figures let the user judge whether to raise it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from voco import VoCoModel


@dataclass(frozen=True)
class SegmentCost:
    bytes: int
    """Cache bytes of one segment as stored (KV only; thumbnails and search vectors add a few KB)."""
    seconds: float
    """Model time of one segment on this machine (one blank segment after a warm-up: an upper bound, batches
    share their overheads)."""

    def describe(self, segments: int) -> str:
        return (f"about {megabytes(segments * self.bytes)} of caches and {duration(segments * self.seconds)} of "
                "model time here")


def measure_segment_cost(model: VoCoModel, image_size: int) -> SegmentCost:
    """Compress one blank segment twice (the first call pays one-off costs) and time the second."""
    import torch  # the CLI's light paths (--help, --list) import this module's figures only

    blank = np.zeros((model.voco.frames_per_segment, image_size, image_size, 3), np.uint8)
    model.compress([blank], batch_size=1)
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    start = time.perf_counter()
    (cache,) = model.compress([blank], batch_size=1)
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    return SegmentCost(bytes=cache.nbytes, seconds=time.perf_counter() - start)


class SegmentPricer:
    """A model's `SegmentCost`, measured the first time a refusal needs it (most runs refuse nothing). The
    decoder thread asks while the main thread may be compressing: the model's inference passes share no
    state (the app already answers and ingests at once)."""

    def __init__(self, model: VoCoModel, image_size: int):
        self.model, self.image_size = model, image_size

    @cached_property
    def cost(self) -> SegmentCost:
        return measure_segment_cost(self.model, self.image_size)


def megabytes(size: float) -> str:
    if size >= 1e9:
        return f"{size / 1e9:.1f} GB"
    return f"{size / 1e6:.0f} MB" if size >= 1e7 else f"{size / 1e6:.1f} MB"


def duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return f"{seconds:.0f} s"
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"
