"""A whole video's model frames in memory, decoded the way the ingest pipeline decodes them.

For callers that want a video's segments without the store (evaluation's in-memory answerer, training data
readers, scripts): the same probe (`voco.video.probe`), timestamp plan (`voco.video.plan`) and decode of only
the sampled frames, rotation included (`voco.video.decode.fetch_frames`), as the decoder thread in
`ingest.pipeline`.
"""

from __future__ import annotations

import os

import numpy as np

from voco.video.decode import DecodeStats, FrameSizes, fetch_frames
from voco.video.plan import plan_segments, wanted_pts
from voco.video.probe import NoFramesError, VideoError, probe


def decode_side_cap(image_size: int, decode_max_side: int | None) -> int:
    """The `decode_max_side` in force: None means twice the model's image size (0: native size)."""
    return 2 * image_size if decode_max_side is None else decode_max_side


def model_frame_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(w, h) every model frame of a video of first-frame size `width` x `height` is brought to: scaled so that
    neither side exceeds `max_side` (None or 0: no cap), keeping the aspect ratio.

    Always a concrete size, never "native": a stream whose resolution changes part-way (live recordings, adaptive
    streams) still gives frames of one size, so a segment's frames stack. The aspect ratio is kept because what
    reads the frame may care (the default model's face detector finds no face squashed to 56% of its width, as a
    16:9 frame capped side by side would be); square-input towers still resize the frame themselves. The ingest
    pipeline and `decode_video_segments` share this rule, so stored and in-memory caches agree.
    """
    if not max_side or (width <= max_side and height <= max_side):
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def decode_video_segments(path: str | os.PathLike, *, segment_seconds: float, frames_per_segment: int,
                          max_side: int | None = None, backend: str = "auto") -> list[np.ndarray]:
    """A video file -> its segments by `voco.segments`' rule, each uint8 [F, H, W, 3] RGB, display orientation.

    Frames are downscaled while decoding so that no side exceeds `max_side` (see `model_frame_size`;
    None or 0: native size). Raises `VideoError`, naming the file, when it cannot be decoded.
    """
    info = probe(path)
    plans = plan_segments(info, segment_seconds, frames_per_segment)
    if not plans:
        raise NoFramesError(f"{path}: the video lasts 0 seconds")
    model_pts, _ = wanted_pts(plans)
    sizes = FrameSizes(model=model_frame_size(info.width, info.height, max_side), thumb=(0, 0))  # no thumbnails asked
    got = {d.pts: d.model for d in fetch_frames(info, model_pts, np.empty(0, np.int64), sizes, backend=backend,
                                                stats=DecodeStats())}
    missing = [plan.index for plan in plans if any(p not in got for p in plan.frames)]
    if missing:
        raise VideoError(f"{path}: decoding stopped before segment {missing[0]}")
    return [np.stack([got[p] for p in plan.frames]) for plan in plans]
