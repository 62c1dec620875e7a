import av
import numpy as np
import pytest

from ingest.thumbs import encode_jpeg, thumbnail_size
from tests.fixtures.videos import CONTAINERS, decode_all, make_bad_files, pattern_frames, write_video
from voco.segments import segment_frame_indices
from voco.video.decode import DecodeStats, FrameSizes, decode_pyav, decord_available, fetch_frames
from voco.video.plan import plan_segments, wanted_pts
from voco.video.probe import VideoError, probe
from voco.video.rotation import apply_ops, display_ops

NATIVE = FrameSizes(model=None, thumb=(32, 24))


def _selected(path, segment_seconds=0.7, frames=3, skip=0, sizes=NATIVE):
    info = probe(path)
    plans = plan_segments(info, segment_seconds, frames)
    model_pts, thumb_pts = wanted_pts(plans[skip:])
    got = {d.pts: d for d in decode_pyav(info, model_pts, thumb_pts, sizes, DecodeStats())}
    return info, plans, got


@pytest.mark.parametrize("name", [c[0] for c in CONTAINERS] + ["vfr.mkv", "sub/rotated.mp4", "sub/with_audio.mp4"])
def test_each_segment_gets_the_frames_voco_segments_picks(video_dir, name):
    """Decoding only the wanted frames gives exactly what decoding everything and applying
    voco.segments' rule gives, in every container, codec, for variable frame rate and rotation."""
    path = video_dir / name
    info, plans, got = _selected(path)
    frames, timestamps = decode_all(path)
    np.testing.assert_allclose(info.timestamps, timestamps)
    expected = segment_frame_indices(timestamps, info.duration, 0.7, 3)
    assert len(plans) == len(expected) >= 5  # the last, partial segment is kept
    for plan, indices in zip(plans, expected, strict=True):
        for pts, i in zip(plan.frames, indices, strict=True):
            np.testing.assert_array_equal(got[pts].model, apply_ops(frames[i], info.ops))


def test_variable_frame_rate_uses_timestamps_not_frame_counts(video_dir):
    info = probe(video_dir / "vfr.mkv")
    assert info.num_frames == 30 and info.duration == pytest.approx(3.551, abs=0.01)
    # 15 frames in the first 0.75 s, then one every 0.2 s: the 2nd second holds 5 frames, not 10
    plans = plan_segments(info, 1.0, 2)
    assert len(plans) == 4 and plans[-1].end_s == pytest.approx(info.duration)
    ts = dict(zip(info.pts.tolist(), info.timestamps.tolist(), strict=True))
    assert [round(ts[p], 2) for p in plans[1].frames] == [1.15, 1.75]


def test_resuming_mid_video_seeks_and_gets_the_same_frames(video_dir):
    _, _, full = _selected(video_dir / "h264.mkv")
    _, plans, tail = _selected(video_dir / "h264.mkv", skip=3)
    assert set(tail) and min(tail) >= min(plans[3].frames)
    for pts, item in tail.items():
        np.testing.assert_array_equal(item.model, full[pts].model)


def test_rotated_video_comes_out_upright(tmp_path):
    frame = np.zeros((32, 64, 3), np.uint8)
    frame[:, :32, 0] = 255  # left half red, as stored
    path = write_video(tmp_path / "r.mp4", np.repeat(frame[None], 5, 0), rotation=90)
    info = probe(path)
    assert info.ops == ("cclock",) and info.display_size == (32, 64)
    (item,) = [d for d in decode_pyav(info, info.pts[:1], info.pts[:0], NATIVE, DecodeStats())]
    assert item.model.shape == (64, 32, 3)
    assert item.model[40:, :, 0].mean() > 200 and item.model[:24, :, 0].mean() < 50  # red at the bottom


def test_display_matrix_ops_follow_ffmpeg():
    one = 1 << 16
    assert display_ops((0, -one, 0, one, 0, 0, 0, 0, 1 << 30)) == ("cclock",)  # rotation 90
    assert display_ops((0, one, 0, -one, 0, 0, 0, 0, 1 << 30)) == ("clock",)  # rotation -90
    assert display_ops((-one, 0, 0, 0, -one, 0, 0, 0, 1 << 30)) == ("hflip", "vflip")  # 180
    assert display_ops((one, 0, 0, 0, one, 0, 0, 0, 1 << 30)) == ()
    assert display_ops(None) == ()


def test_early_downscale_and_thumbnails(video_dir):
    info, plans, got = _selected(video_dir / "h264.mp4", sizes=FrameSizes(model=(40, 30), thumb=(32, 24)))
    assert got[plans[0].frames[0]].model.shape == (30, 40, 3)
    thumb = got[plans[0].thumbnail].thumb
    assert thumb.shape == (24, 32, 3)
    jpeg = encode_jpeg(thumb)
    assert jpeg[:2] == b"\xff\xd8" and len(jpeg) < 5000
    assert thumbnail_size(1920, 1080, 160) == (160, 90) and thumbnail_size(20, 10, 160) == (20, 10)


def test_bad_files_raise_a_reason_naming_the_file(tmp_path, video_dir):
    zoo = make_bad_files(tmp_path / "bad", video_dir / "h264.mp4")
    reasons = {}
    for kind, path in zoo.items():
        with pytest.raises(VideoError) as err:
            probe(path)
        assert str(path) in str(err.value)
        reasons[kind] = str(err.value)
    assert "empty file" in reasons["zero"]
    assert "no video stream (audio only)" in reasons["audio"]
    assert "broken symbolic link" in reasons["symlink"]
    assert "directory" in reasons["directory"]
    assert "not a video file" in reasons["random"] and "not a video file" in reasons["text"]


def test_a_truncated_stream_keeps_what_decodes(tmp_path):
    path = write_video(tmp_path / "t.mkv", pattern_frames(40), fmt="matroska")
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    info = probe(cut)
    assert 0 < info.num_frames < 40
    plans = plan_segments(info, 1.0, 2)
    model_pts, thumb_pts = wanted_pts(plans)
    items = list(fetch_frames(info, model_pts, thumb_pts, NATIVE, backend="pyav", stats=DecodeStats()))
    assert [d.pts for d in items] == sorted(set(model_pts) | set(thumb_pts))


@pytest.mark.skipif(not decord_available(), reason="decord is optional (pip install decord)")
@pytest.mark.parametrize("model_size", [None, (40, 30), (96, 72)])
def test_decord_backend_gives_pyavs_frames_at_any_size(video_dir, model_size):
    """Stored caches must not depend on the decoder installed (the video key does not record it)."""
    info = probe(video_dir / "h264.mp4")
    plans = plan_segments(info, 0.7, 3)
    model_pts, thumb_pts = wanted_pts(plans)
    sizes = FrameSizes(model=model_size, thumb=(32, 24))
    stats = DecodeStats()
    a = {d.pts: d for d in fetch_frames(info, model_pts, thumb_pts, sizes, backend="decord", stats=stats)}
    b = {d.pts: d for d in decode_pyav(info, model_pts, thumb_pts, sizes, DecodeStats())}
    assert stats.fallbacks == []
    for pts in model_pts.tolist():
        np.testing.assert_array_equal(a[pts].model, b[pts].model)
    for pts in thumb_pts.tolist():
        np.testing.assert_array_equal(a[pts].thumb, b[pts].thumb)


@pytest.mark.parametrize("size", [None, (40, 30), (96, 72)])
def test_both_decoders_share_one_resize_path(video_dir, size):
    """A PyAV frame becomes RGB at its native size, then takes the resize decord's RGB arrays take, so both
    decoders give the same pixels (they agree exactly at the native size); the cached swscale contexts
    give the pixels of a fresh reformat, and one frame's array never aliases the next's."""
    from voco.video.decode import Converter

    with av.open(str(video_dir / "h264.mp4")) as container:
        frames = list(container.decode(video=0))[:6]
    convert, convert_arrays = Converter(size, ()), Converter(size, ())
    got = [convert.frame(f) for f in frames]
    for frame, arr in zip(frames, got, strict=True):
        native = frame.to_ndarray(format="rgb24")
        np.testing.assert_array_equal(arr, convert_arrays.array(native))  # decord's path: native RGB in
        if size is None:
            expected = native
        else:
            shrink = size[0] <= frame.width and size[1] <= frame.height
            expected = av.VideoFrame.from_ndarray(native, format="rgb24").reformat(
                width=size[0], height=size[1], format="rgb24", interpolation="AREA" if shrink else "BILINEAR",
            ).to_ndarray()
        np.testing.assert_array_equal(arr, expected)
    assert len({a.tobytes() for a in got}) == len(got)  # distinct frames stay distinct


def test_jpeg_thumbnails_decode_back_close_to_the_source(video_dir):
    """Thumbnails from several threads (each with its own cached converter) are valid JPEGs of their frame."""
    from concurrent.futures import ThreadPoolExecutor

    frames = decode_all(video_dir / "h264.mp4")[0][:8, :24, :32]
    with ThreadPoolExecutor(4) as pool:
        jpegs = list(pool.map(encode_jpeg, frames))
    for frame, jpeg in zip(frames, jpegs, strict=True):
        back = av.CodecContext.create("mjpeg", "r").decode(av.Packet(jpeg))[0].to_ndarray(format="rgb24")
        assert back.shape == frame.shape
        assert np.abs(back.astype(int) - frame.astype(int)).mean() < 8


def test_small_frames_decode_on_one_thread_large_ones_on_ffmpegs_threads(video_dir, monkeypatch):
    """FFmpeg's per-frame thread hand-off costs more than decoding a small frame (see THREADED_DECODE_MIN_PIXELS)."""
    import voco.video.decode as decode

    assert decode.decode_threads(96, 96) == 1 and decode.decode_threads(64, 48) == 1
    assert decode.decode_threads(320, 240) == 0 and decode.decode_threads(1920, 1080) == 0
    real_open, opened = decode.open_container, []
    monkeypatch.setattr(decode, "open_container", lambda path: opened.append(real_open(path)) or opened[-1])
    info = probe(video_dir / "h264.mp4")  # 64x48
    frames = decode_pyav(info, info.pts[:3], info.pts[:0], NATIVE, DecodeStats())
    next(frames)  # the container is open while frames come out
    assert opened[0].streams.video[0].codec_context.thread_count == 1
    frames.close()


def _camera_like(path, codec: str, fmt: str, frames: np.ndarray, gop: int, bframes: int, fps: int = 10):
    """Frames encoded as cameras do: a keyframe every `gop` frames and B-frames between references."""
    options = {"libx264": {"preset": "veryfast", "crf": "20", "g": str(gop), "bf": str(bframes)},
               "libx265": {"preset": "ultrafast", "crf": "24",
                           "x265-params": f"log-level=error:keyint={gop}:min-keyint={gop}:bframes={bframes}"}}[codec]
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = options
        for rgb in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")))
        out.mux(stream.encode(None))
    return path


@pytest.mark.parametrize(("name", "codec", "fmt", "indexed"), [
    ("g.mp4", "libx264", "mp4", True), ("g.mkv", "libx264", "matroska", True), ("g.mov", "libx265", "mov", True),
    ("g.ts", "libx264", "mpegts", False)])
def test_short_gops_are_seeked_over_and_b_frames_dropped_yet_every_frame_is_exact(tmp_path, name, codec, fmt,
                                                                                   indexed):
    """One frame every 2 s from a 10 fps stream with a keyframe every 0.6 s and B-frames: the decoder jumps
    over the stretches between wanted frames and skips non-reference frames, and each wanted frame is still
    exactly the frame a full decode shows then. MPEG-TS has no index (its seeks land late and are retried
    from the keyframe before): only exactness is asked of it."""
    path = _camera_like(tmp_path / name, codec, fmt, pattern_frames(200), gop=6, bframes=2)
    info = probe(path)
    assert len(info.keyframes) >= 200 // 6
    plans = plan_segments(info, 2.0, 1)
    model_pts, thumb_pts = wanted_pts(plans)
    stats = DecodeStats()
    got = {d.pts: d for d in decode_pyav(info, model_pts, thumb_pts, NATIVE, stats)}
    frames, timestamps = decode_all(path)
    expected = segment_frame_indices(timestamps, info.duration, 2.0, 1)
    for plan, indices in zip(plans, expected, strict=True):
        np.testing.assert_array_equal(got[plan.frames[0]].model, frames[indices[0]])
    if indexed:
        assert stats.seeks >= len(plans) // 2
        assert stats.frames < 200 / 3, f"decoded {stats.frames} of 200 frames for {len(plans)} segments"


def test_b_frames_no_wanted_frame_shows_are_not_decoded(tmp_path):
    """A long GOP leaves little to seek over (x264 puts keyframes only at scene cuts); the non-reference
    B-frames still go undecoded."""
    path = _camera_like(tmp_path / "long.mp4", "libx264", "mp4", pattern_frames(120), gop=250, bframes=3)
    info = probe(path)
    model_pts, thumb_pts = wanted_pts(plan_segments(info, 2.0, 1))
    stats = DecodeStats()
    got = {d.pts: d.model for d in decode_pyav(info, model_pts, np.empty(0, np.int64), NATIVE, stats)}
    frames, _ = decode_all(path)
    index = {int(p): i for i, p in enumerate(info.pts)}
    for pts in model_pts.tolist():
        np.testing.assert_array_equal(got[pts], frames[index[pts]])
    assert stats.frames < 100, f"decoded {stats.frames} of 120 frames"
