"""Which frames each segment needs: `voco.segments`' timestamp rule applied to a probed video.

Segment i spans [i * S, min((i + 1) * S, D)) (`voco.segments.segment_spans`: the last, partial one is kept unless a
sliver, which joins the one before); its F model frames are
the frames on screen at the centres of F equal slices of that span, and its thumbnail the frame on
screen at its middle. Frames are named by their presentation timestamp (`pts`), so a decoder that
drops or reorders frames still hands each segment the frame a player would show at that time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voco.segments import frame_indices, sample_times, segment_spans
from voco.video.probe import VideoError, VideoProbe


@dataclass(frozen=True)
class SegmentPlan:
    index: int
    start_s: float
    end_s: float
    frames: tuple[int, ...]  # pts of the F model frames, in order
    thumbnail: int  # pts of the frame at the middle of the span


def plan_segments(probe: VideoProbe, segment_seconds: float, frames_per_segment: int,
                  max_duration_s: float | None = None) -> list[SegmentPlan]:
    """The segments of `probe`; `VideoError` when it lasts longer than `max_duration_s` (None: no limit)."""
    if max_duration_s is not None and probe.duration > max_duration_s:
        raise VideoError(f"{probe.path}: it lasts {probe.duration / 3600:,.1f} h, more than the limit of "
                         f"{max_duration_s / 3600:,.1f} h ({probe.duration / segment_seconds:,.0f} segments); "
                         "raise it with --max-duration SECONDS (IngestConfig.max_duration_s) to ingest it")
    timestamps = probe.timestamps
    plans = []
    for i, (start, end) in enumerate(segment_spans(probe.duration, segment_seconds)):
        idx = frame_indices(sample_times(start, end, frames_per_segment), timestamps)
        mid = frame_indices(np.array([(start + end) / 2]), timestamps)[0]
        plans.append(SegmentPlan(i, float(start), float(end), tuple(int(probe.pts[j]) for j in idx),
                                 int(probe.pts[mid])))
    return plans


def wanted_pts(plans: list[SegmentPlan]) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique pts of model frames, sorted unique pts of thumbnails) the plans need."""
    model = np.unique(np.array([p for plan in plans for p in plan.frames], dtype=np.int64))
    thumbs = np.unique(np.array([plan.thumbnail for plan in plans], dtype=np.int64))
    return model, thumbs
