"""`voco.video.frames.decode_video_segments`: a whole video's segments in memory, by the project's sampling rule."""

import numpy as np
import pytest

from tests.fixtures.videos import decode_all, make_bad_files, pattern_frames, write_resolution_changes, write_video
from voco.segments import segment_frame_indices, split_frames
from voco.video.frames import decode_video_segments
from voco.video.probe import VideoError, probe
from voco.video.rotation import apply_ops


def test_a_constant_rate_clip_gives_what_split_frames_gives(tmp_path):
    """A clip written by `voco.data.synthetic.write_mp4`: the segments `split_frames` cuts from its decoded frames."""
    from voco.data.synthetic import make_example, write_mp4

    video, _ = make_example("test", 3)
    path = tmp_path / "clip.mp4"
    write_mp4(path, video.frames[:34], fps=10)
    frames, _ = decode_all(path)
    want = split_frames(frames, fps=10, segment_seconds=1.0, frames_per_segment=3)
    got = decode_video_segments(path, segment_seconds=1.0, frames_per_segment=3)
    assert len(got) == len(want) == 4  # 3.4 s: the last, partial segment is kept
    for a, b in zip(got, want, strict=True):
        assert a.dtype == np.uint8 and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["vfr.mkv", "sub/rotated.mp4", "vp9.webm"])
def test_timestamps_and_display_orientation_are_followed(video_dir, name):
    path = video_dir / name
    frames, timestamps = decode_all(path)
    info = probe(path)
    assert (info.ops != ()) == (name == "sub/rotated.mp4")
    got = decode_video_segments(path, segment_seconds=0.7, frames_per_segment=3)
    want = segment_frame_indices(timestamps, info.duration, 0.7, 3)
    assert len(got) == len(want) >= 5
    for segment, indices in zip(got, want, strict=True):
        np.testing.assert_array_equal(segment, np.stack([apply_ops(frames[i], info.ops) for i in indices]))


def test_max_side_caps_the_longer_side_keeping_the_aspect_as_the_pipeline_does(video_dir):
    (stored,) = decode_video_segments(video_dir / "h264.mp4", segment_seconds=5.0, frames_per_segment=2)
    assert stored.shape == (2, 48, 64, 3)
    (small,) = decode_video_segments(video_dir / "h264.mp4", segment_seconds=5.0, frames_per_segment=2,
                                     max_side=32)
    assert small.shape == (2, 24, 32, 3)  # 64x48 -> 32x24: faces keep their shape
    (upright,) = decode_video_segments(video_dir / "sub" / "rotated.mp4", segment_seconds=5.0,
                                       frames_per_segment=2, max_side=32)
    assert upright.shape == (2, 32, 24, 3)  # stored 64x48, capped 32x24, then turned upright
    (same,) = decode_video_segments(video_dir / "h264.mp4", segment_seconds=5.0, frames_per_segment=2,
                                    max_side=64)
    np.testing.assert_array_equal(same, stored)


def test_undecodable_files_raise_video_error_naming_the_file(tmp_path, video_dir):
    zoo = make_bad_files(tmp_path / "bad", video_dir / "h264.mp4")
    zoo["missing"] = tmp_path / "bad" / "missing.mp4"
    for path in zoo.values():
        with pytest.raises(VideoError) as err:
            decode_video_segments(path, segment_seconds=1.0, frames_per_segment=2)
        assert str(path) in str(err.value)


def test_a_truncated_file_keeps_what_decodes(tmp_path):
    path = write_video(tmp_path / "t.mkv", pattern_frames(40), fmt="matroska")
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    segments = decode_video_segments(cut, segment_seconds=1.0, frames_per_segment=2)
    assert 1 <= len(segments) < 4 and all(s.shape == (2, 48, 64, 3) for s in segments)


def test_a_stream_that_changes_resolution_twice_gives_frames_of_its_first_size(tmp_path):
    """Each part's frames are brought to the first frame's size (no cap, and under a cap), so segments stack."""
    sizes = [(48, 64), (64, 96), (36, 48)]
    path = write_resolution_changes(tmp_path / "changes.ts", sizes)
    assert (probe(path).width, probe(path).height) == (64, 48)
    segments = decode_video_segments(path, segment_seconds=1.0, frames_per_segment=2)
    assert len(segments) == 9 and {s.shape for s in segments} == {(2, 48, 64, 3)}
    part = pattern_frames(30, 48, 64, seed=0).astype(int)
    # segment 0 samples 0.2 s and 0.7 s: frames 2 and 7 of the first part itself, not a stretched later one
    # (before the decoder knew keyframes it sought to 0.2 s in this MPEG-TS and got frame 0 for both)
    assert np.abs(segments[0][0] - part[2]).mean() < 5 and np.abs(segments[0][1] - part[7]).mean() < 5
    assert np.abs(segments[4][0] - part[0]).mean() > 25  # the second part, shrunk to the first size
    capped = decode_video_segments(path, segment_seconds=1.0, frames_per_segment=2, max_side=32)
    assert {s.shape for s in capped} == {(2, 24, 32, 3)}
