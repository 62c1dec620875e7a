"""A whole video's model frames in memory, decoded the way the ingest pipeline decodes them.

For callers that want a video's segments without the store (evaluation's in-memory answerer, scripts):
the same probe (`ingest.probe`), timestamp plan (`ingest.plan`) and decode of only the sampled frames,
rotation included (`ingest.decode.fetch_frames`), as the decoder thread in `ingest.pipeline`.
"""

from __future__ import annotations

import os

import numpy as np

from ingest.decode import DecodeStats, FrameSizes, fetch_frames
from ingest.plan import plan_segments, wanted_pts
from ingest.probe import VideoError, probe


def _model_size(width: int, height: int, max_side: int | None) -> tuple[int, int] | None:
    """(w, h) with the longer side at most `max_side`, aspect kept; None: native size."""
    if not max_side or max(width, height) <= max_side:
        return None
    scale = max_side / max(width, height)
    return max(2, round(width * scale)), max(2, round(height * scale))


def decode_video_segments(path: str | os.PathLike, *, segment_seconds: float, frames_per_segment: int,
                          max_side: int | None = None, backend: str = "auto") -> list[np.ndarray]:
    """A video file -> its segments by `voco.segments`' rule, each uint8 [F, H, W, 3] RGB, display orientation.

    Frames are downscaled while decoding so that their longer side is at most `max_side` (aspect kept;
    None or 0: native size). Raises `VideoError`, naming the file, when it cannot be decoded.
    """
    info = probe(path)
    plans = plan_segments(info, segment_seconds, frames_per_segment)
    if not plans:
        raise VideoError(f"{path}: the video lasts 0 seconds")
    model_pts, _ = wanted_pts(plans)
    sizes = FrameSizes(model=_model_size(info.width, info.height, max_side), thumb=(0, 0))  # no thumbnails asked
    got = {d.pts: d.model for d in fetch_frames(info, model_pts, np.empty(0, np.int64), sizes, backend=backend,
                                                stats=DecodeStats())}
    missing = [plan.index for plan in plans if any(p not in got for p in plan.frames)]
    if missing:
        raise VideoError(f"{path}: decoding stopped before segment {missing[0]}")
    return [np.stack([got[p] for p in plan.frames]) for plan in plans]
