"""Decoding only the frames a plan needs, with PyAV (always there) or decord (optional, `pip install decord`).

`fetch_frames` yields, in presentation order, one `Decoded` per wanted timestamp: the model frame
(RGB at the native size, resized to `FrameSizes.model` by the one resize both decoders share, then
turned to display orientation; see `Converter`) and/or the thumbnail frame. PyAV decodes
sequentially from the first wanted frame (seeking there first), converts only the frames it keeps,
and skips damaged packets. decord fetches the wanted frame indices directly.
When one backend fails, the other carries on from the first frame not yet delivered.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from voco.video.probe import VideoError, VideoProbe, open_container
from voco.video.rotation import apply_ops

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameSizes:
    model: tuple[int, int] | None  # (w, h) in stored orientation; None: native size
    thumb: tuple[int, int]  # (w, h) in stored orientation


@dataclass
class Decoded:
    pts: int
    model: np.ndarray | None  # uint8 [H, W, 3], display orientation
    thumb: np.ndarray | None


@dataclass
class DecodeStats:
    frames: int = 0  # frames that came out of the decoder
    bad_packets: int = 0
    fallbacks: list[str] = field(default_factory=list)


THREADED_DECODE_MIN_PIXELS = 320 * 240
"""Frames at least this large decode with FFmpeg's threads; smaller ones on the calling thread alone.

Handing a frame to a decoder thread costs ~40-60 us of CPU per frame whatever its size. A 96x96 H.264
frame decodes in ~15 us, so threads made small videos 4x dearer in CPU (and slower in wall time);
from about QVGA up, the frame's own work dominates and threads shorten the wall time."""


def decode_threads(width: int, height: int) -> int:
    """FFmpeg decoder threads for frames of this size: 0 (FFmpeg's automatic count) or 1."""
    return 0 if width * height >= THREADED_DECODE_MIN_PIXELS else 1


def decord_available() -> bool:
    return importlib.util.find_spec("decord") is not None


class Converter:
    """Decoded picture -> uint8 RGB array at one target size, in display orientation.

    Both decoders take one path: RGB at the native size first (PyAV: `frame`; decord hands RGB already:
    `array`), then one resize (`resize`), then the display rotation. Scaling inside PyAV's YUV->RGB
    conversion (one swscale call) would be a little cheaper, but it filters the chroma planes before
    colour conversion, so its frames differ from decord's RGB resized (mean 0.7-1.6, max 80-90 grey
    levels at the default size on test videos) and stored caches would depend on which decoder is
    installed (the video key does not record it). At the native size the two decoders agree exactly.

    `VideoFrame.to_ndarray` / `.reformat` build a fresh swscale context (and, by default, a pool of
    scaler threads) for each frame: ~0.5 ms per frame, far more than decoding a small frame. One
    `VideoReformatter` per step keeps its context cached (same pixels); one scaler thread, because the
    pipeline already runs decoding beside the model and extra threads only contend.
    Not thread-safe: one per decode call.
    """

    def __init__(self, size: tuple[int, int] | None, ops: tuple[str, ...]):
        self.size, self.ops = size, ops
        self.to_rgb = VideoReformatter()
        self.resizer = VideoReformatter()

    def frame(self, frame: av.VideoFrame) -> np.ndarray:
        """A PyAV frame (any pixel format)."""
        return apply_ops(self.resize(self.to_rgb.reformat(frame, format="rgb24", threads=1)), self.ops)

    def array(self, rgb: np.ndarray) -> np.ndarray:
        """An RGB array at the native size, stored orientation (what decord gives)."""
        if self.size is None or self.size == (rgb.shape[1], rgb.shape[0]):
            return apply_ops(rgb, self.ops)
        return apply_ops(self.resize(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")),
                         self.ops)

    def resize(self, rgb: av.VideoFrame) -> np.ndarray:
        """The one resize both decoders share (on rgb24 pixels): area averaging to shrink, bilinear to grow."""
        size = self.size
        if size is None or size == (rgb.width, rgb.height):
            return rgb.to_ndarray()
        shrink = size[0] <= rgb.width and size[1] <= rgb.height
        return self.resizer.reformat(rgb, width=size[0], height=size[1], format="rgb24",
                                     interpolation="AREA" if shrink else "BILINEAR", threads=1).to_ndarray()


def decode_pyav(probe: VideoProbe, model_pts: np.ndarray, thumb_pts: np.ndarray, sizes: FrameSizes,
                stats: DecodeStats, stop: threading.Event | None = None) -> Iterator[Decoded]:
    """Sequential decode from the first wanted frame; each wanted pts gets the frame on screen then."""
    targets: list[int] = np.union1d(model_pts, thumb_pts).tolist()  # plain ints: compared once per decoded frame
    if len(targets) == 0:
        return
    model_set, thumb_set = set(model_pts.tolist()), set(thumb_pts.tolist())
    with open_container(probe.path) as container:
        stream = container.streams[probe.stream_index]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = decode_threads(probe.width, probe.height)
        if targets[0] > probe.pts[0]:
            try:  # to the keyframe at or before the first wanted frame
                container.seek(targets[0], stream=stream, backward=True, any_frame=False)
            except av.error.FFmpegError as err:
                log.debug("%s: seek failed (%s); decoding from the start", probe.path, err)
                container.seek(0)
        j, prev, prev_pts = 0, None, None
        to_model, to_thumb = Converter(sizes.model, probe.ops), Converter(sizes.thumb, probe.ops)

        def emit(target: int, frame: av.VideoFrame) -> Decoded:
            return Decoded(target, to_model.frame(frame) if target in model_set else None,
                           to_thumb.frame(frame) if target in thumb_set else None)

        def frames() -> Iterator[av.VideoFrame]:
            for packet in container.demux(stream):
                if stop is not None and stop.is_set():
                    return
                try:
                    yield from stream.decode(packet)
                except av.error.FFmpegError:
                    stats.bad_packets += 1  # damaged packet: the decoder conceals, we go on
            try:
                yield from stream.decode(None)
            except av.error.FFmpegError:
                stats.bad_packets += 1

        for frame in frames():
            stats.frames += 1
            pts = frame.pts if frame.pts is not None else (prev_pts + 1 if prev_pts is not None else int(probe.pts[0]))
            while j < len(targets) and targets[j] <= pts:
                # the frame on screen at targets[j]: this one if it starts exactly then, else the one before
                yield emit(targets[j], frame if targets[j] == pts or prev is None else prev)
                j += 1
            if j == len(targets):
                return
            prev, prev_pts = frame, pts
        if prev is None:
            raise VideoError(f"{probe.path}: no frame could be decoded after {probe.pts[0]} "
                             f"({stats.bad_packets} damaged packets)")
        while j < len(targets):  # past the last decodable frame (truncated file): it stays on screen
            yield emit(targets[j], prev)
            j += 1


def decode_decord(probe: VideoProbe, model_pts: np.ndarray, thumb_pts: np.ndarray, sizes: FrameSizes,
                  stats: DecodeStats, stop: threading.Event | None = None, chunk: int = 16) -> Iterator[Decoded]:
    """Fetch wanted frames by index with decord (frame i = the i-th presentation timestamp)."""
    if probe.ops:
        raise VideoError("decord applies its own rotation; PyAV handles files with a display matrix")
    import decord

    reader = decord.VideoReader(probe.path, ctx=decord.cpu(0))
    if len(reader) != probe.num_frames:
        raise VideoError(f"decord sees {len(reader)} frames, the demuxer {probe.num_frames}")
    targets = np.union1d(model_pts, thumb_pts)
    model_set, thumb_set = set(model_pts.tolist()), set(thumb_pts.tolist())
    indices = np.searchsorted(probe.pts, targets)
    to_model, to_thumb = Converter(sizes.model, ()), Converter(sizes.thumb, ())
    for start in range(0, len(targets), chunk):
        if stop is not None and stop.is_set():
            return
        batch = reader.get_batch(indices[start:start + chunk].tolist()).asnumpy()
        stats.frames += len(batch)
        for target, rgb in zip(targets[start:start + chunk].tolist(), batch, strict=True):
            yield Decoded(target, to_model.array(rgb) if target in model_set else None,
                          to_thumb.array(rgb) if target in thumb_set else None)


BACKENDS = {"pyav": decode_pyav, "decord": decode_decord}


def backend_order(backend: str) -> list[str]:
    """The backends to try, first choice first: the other one (when installed) takes over on failure."""
    if backend == "decord" or (backend == "auto" and decord_available()):
        return ["decord", "pyav"]
    return ["pyav", "decord"] if decord_available() else ["pyav"]


def fetch_frames(probe: VideoProbe, model_pts: np.ndarray, thumb_pts: np.ndarray, sizes: FrameSizes, *,
                 backend: str, stats: DecodeStats, stop: threading.Event | None = None) -> Iterator[Decoded]:
    """Yield the wanted frames, trying the backends in order; a failing one hands over where it stopped."""
    last: int | None = None
    reasons = []
    for name in backend_order(backend):
        if last is not None:
            model_pts, thumb_pts = model_pts[model_pts > last], thumb_pts[thumb_pts > last]
        try:
            for item in BACKENDS[name](probe, model_pts, thumb_pts, sizes, stats, stop):
                last = item.pts
                yield item
            return
        except Exception as err:  # noqa: BLE001 - any failure of one backend (decord raises its own types)
            reasons.append(f"{name}: {err}")
            stats.fallbacks.append(f"{name}: {err}")
            log.info("%s: %s failed (%s)", probe.path, name, err)
    raise VideoError(f"{probe.path}: cannot decode ({'; '.join(reasons)})")
