import numpy as np
import pytest

from voco.segments import frame_indices, segment_frame_indices, segment_spans, split_frames


def test_spans_cover_the_video_and_keep_the_last_partial_segment():
    assert segment_spans(5.0, 2.0) == [(0.0, 2.0), (2.0, 4.0), (4.0, 5.0)]
    assert segment_spans(4.0, 2.0) == [(0.0, 2.0), (2.0, 4.0)]
    assert segment_spans(0.5, 2.0) == [(0.0, 0.5)]
    # a sliver of a last segment (carphone: 4.004 s in 2 s segments) joins the one before it
    assert segment_spans(4.004, 2.0) == [(0.0, 2.0), (2.0, 4.004)]
    assert segment_spans(4.2, 2.0) == [(0.0, 2.0), (2.0, 4.0), (4.0, 4.2)]  # a tenth of a segment: kept
    assert segment_spans(0.01, 2.0) == [(0.0, 0.01)]  # the only segment stays
    assert segment_spans(0.0, 2.0) == []
    with pytest.raises(ValueError):
        segment_spans(1.0, 0)


def test_variable_frame_rate_picks_the_frame_on_screen():
    # frames shown at 0, 0.1, 1.5 (a long still), 1.6 s
    ts = np.array([0.0, 0.1, 1.5, 1.6])
    assert frame_indices(np.array([0.05, 0.2, 1.49, 1.55, 9.0]), ts).tolist() == [0, 1, 1, 2, 3]
    (idx,) = segment_frame_indices(ts, 2.0, 2.0, 4)  # times 0.25, 0.75, 1.25, 1.75
    assert idx.tolist() == [1, 1, 1, 3]


def test_split_frames_samples_uniformly_within_each_segment():
    frames = np.arange(20, dtype=np.uint8)[:, None, None, None].repeat(3, -1)  # frame i has value i
    segments = split_frames(frames, fps=4.0, segment_seconds=2.0, frames_per_segment=2)  # 5 s -> 3 segments
    assert [s[:, 0, 0, 0].tolist() for s in segments] == [[2, 6], [10, 14], [17, 19]]
    assert all(s.shape == (2, 1, 1, 3) for s in segments)
