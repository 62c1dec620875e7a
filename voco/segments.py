"""Cutting a video into segments and sampling each segment's frames by timestamp.

One rule for training, ingest and evaluation: segment i spans [i * S, min((i + 1) * S, D)) of a
video of duration D; the last, partial segment is kept, unless it is a sliver (under a tenth of S), which joins
the segment before it. Its F frames are taken at the centres of
F equal slices of that span, and each time maps to the frame on screen then (the last frame whose
timestamp is <= t), which is right for variable frame rates too.
"""

from __future__ import annotations

import math

import numpy as np

MIN_TAIL_SHARE = 0.1
"""A last segment shorter than this share of `segment_seconds` joins the one before it: it holds a frame or two
(carphone's 4 ms after 4 s) and would otherwise count as a segment of its own in answers and search."""


def segment_spans(duration: float, segment_seconds: float) -> list[tuple[float, float]]:
    """[(start, end)] of every segment; the last one may be shorter (or up to MIN_TAIL_SHARE longer)."""
    if segment_seconds <= 0:
        raise ValueError(f"segment_seconds must be > 0, got {segment_seconds}")
    if duration <= 0:
        return []
    count = max(1, math.ceil(duration / segment_seconds - 1e-9))
    if count > 1 and duration - (count - 1) * segment_seconds < MIN_TAIL_SHARE * segment_seconds:
        count -= 1  # the sliver joins the segment before it
    return [(i * segment_seconds, (i + 1) * segment_seconds if i < count - 1 else duration) for i in range(count)]


def sample_times(start: float, end: float, frames_per_segment: int) -> np.ndarray:
    """Timestamps [F] at the centres of F equal slices of [start, end)."""
    step = (end - start) / frames_per_segment
    return start + (np.arange(frames_per_segment) + 0.5) * step


def frame_indices(times: np.ndarray, frame_timestamps: np.ndarray) -> np.ndarray:
    """Index of the frame on screen at each time: the last frame with timestamp <= t (or the first).

    frame_timestamps: [N] presentation times in seconds, sorted ascending.
    """
    idx = np.searchsorted(frame_timestamps, times, side="right") - 1
    return np.clip(idx, 0, len(frame_timestamps) - 1)


def segment_frame_indices(
    frame_timestamps: np.ndarray, duration: float, segment_seconds: float, frames_per_segment: int
) -> list[np.ndarray]:
    """Frame indices [F] for every segment of a video whose frames show at `frame_timestamps`."""
    return [
        frame_indices(sample_times(start, end, frames_per_segment), frame_timestamps)
        for start, end in segment_spans(duration, segment_seconds)
    ]


def split_indices(num_frames: int, fps: float, segment_seconds: float, frames_per_segment: int) -> list[np.ndarray]:
    """Frame indices [F] of every segment of a constant-frame-rate clip of `num_frames` frames."""
    timestamps = np.arange(num_frames) / fps
    return segment_frame_indices(timestamps, num_frames / fps, segment_seconds, frames_per_segment)


def split_frames(frames: np.ndarray, fps: float, segment_seconds: float, frames_per_segment: int) -> list[np.ndarray]:
    """A constant-frame-rate clip in memory, uint8 [N, H, W, 3] -> segments, each [F, H, W, 3]."""
    return [frames[idx] for idx in split_indices(len(frames), fps, segment_seconds, frames_per_segment)]
