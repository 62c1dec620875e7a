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
    seeks: int = 0  # jumps over unwanted stretches (`ForwardDecoder.seek_towards`)
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


SKIP_NONREF_CODECS = frozenset({"h264", "hevc"})
"""Codecs whose packets a decode may drop when no wanted frame needs them (FFmpeg's skip_frame=NONREF, decided
per packet): their decoders skip non-reference slices reliably and their packets carry the pts of the picture
they hold. Non-reference B-frames are about half of a camera's H.264 stream (measured: 945 of 1,800 frames
decoded on a 720p x264 "veryfast" clip, 1.9x less decoder CPU); streams without B-frames gain nothing."""

SEEK_RETRIES = 8
"""Seeks that may land after their keyframe before a file decodes on without seeking (see `overshot`)."""

SEEK_MIN_FRAMES = 8
"""Seek over an unwanted stretch (to the keyframe before the next wanted frame) only when it holds at least this
many frames: a seek flushes the decoder and restarts its threads, about the cost of decoding a few frames."""


class ForwardDecoder:
    """Decodes one stream forward, decoding only what the wanted frames need.

    Two savings, both exact (every wanted frame is the very frame a full decode shows at that time):
    - **seeking**: when a keyframe lies between what has been sent to the decoder and the next wanted frame
      (short GOPs: phones and cameras put one every 0.5-2 s), jump to it instead of decoding the stretch;
    - **dropping non-reference frames** (`SKIP_NONREF_CODECS`): a packet whose picture is on screen at no wanted
      time (`needed`) is sent with skip_frame=NONREF, so the decoder skips it if nothing refers to it.
    A demuxer whose seek lands after the wanted frame (`overshot`) loses seeking for the rest of the file.
    """

    def __init__(self, container, stream, probe: VideoProbe, targets: np.ndarray, stats: DecodeStats,
                 stop: threading.Event | None, skipping: bool = True):
        self.container, self.stream, self.probe, self.stats, self.stop = container, stream, probe, stats, stop
        self.targets = targets  # [W] int64, sorted, unique
        self.skip_nonref = skipping and stream.codec_context.name in SKIP_NONREF_CODECS
        step = int(np.median(np.diff(probe.pts))) if len(probe.pts) > 1 else 1
        self.min_gap = SEEK_MIN_FRAMES * step  # pts units
        self.seekable = skipping
        self.sent = int(probe.pts[0]) - 1  # the furthest pts sent to the decoder since the last seek
        self.key_at: int | None = None  # the keyframe (index) just sought: set until the next frame is checked
        self.retries = 0  # seeks that landed too late (`overshot`)
        self._epoch = 0  # bumped by each seek: frames decoded before it are dropped
        self._packets = container.demux(stream)

    def needed(self, pts: int) -> bool:
        """Whether the frame at `pts` is on screen at a wanted time (a target in [pts, next frame's pts))."""
        all_pts = self.probe.pts
        i = int(np.searchsorted(all_pts, pts))
        if i == len(all_pts) or all_pts[i] != pts:
            return True  # a picture the probe did not see: keep it
        following = all_pts[i + 1] if i + 1 < len(all_pts) else np.iinfo(np.int64).max
        j = int(np.searchsorted(self.targets, pts))
        return j < len(self.targets) and self.targets[j] < following

    def seek_towards(self, target: int) -> bool:
        """Jump to the keyframe before `target` when that skips at least `SEEK_MIN_FRAMES`; True when it did."""
        keys = self.probe.keyframes
        at = int(np.searchsorted(keys, target, side="right")) - 1
        if not self.seekable or at < 0 or keys[at] <= self.sent + self.min_gap:
            return False
        self.stats.seeks += 1
        return self._seek(at)

    def _seek(self, at: int) -> bool:
        # to the keyframe's own pts, not the target's: demuxers that seek by decode time (MP4 with B-frames)
        # would land on the next keyframe when its dts is at or before the target
        try:
            self.container.seek(int(self.probe.keyframes[at]), stream=self.stream, backward=True, any_frame=False)
        except av.error.FFmpegError as err:
            log.debug("%s: seek failed (%s); decoding on", self.probe.path, err)
            self.seekable = False
            return False
        self._packets = self.container.demux(self.stream)
        self.sent, self.key_at, self._epoch = int(self.probe.keyframes[at]) - 1, at, self._epoch + 1
        return True

    def overshot(self, pts: int, target: int) -> bool:
        """After a seek, the first frame came after `target` (demuxers that seek by an estimate: MPEG-TS): seek
        to an earlier keyframe, up to `SEEK_RETRIES` times, then decode from the start and stop seeking."""
        at, self.key_at = self.key_at, None
        if at is None or pts <= target:
            return False
        log.debug("%s: a seek landed at %d, after %d", self.probe.path, pts, target)
        self.retries += 1
        if self.retries <= SEEK_RETRIES and at > 0 and self._seek(at - 1):
            return True
        self.seekable = False
        self.container.seek(int(self.probe.pts[0]), stream=self.stream, backward=True, any_frame=False)
        self._packets = self.container.demux(self.stream)
        self.sent, self._epoch = int(self.probe.pts[0]) - 1, self._epoch + 1
        return True

    def frames(self) -> Iterator[av.VideoFrame]:
        """Decoded frames in presentation order; a seek between two of them continues from its keyframe."""
        context = self.stream.codec_context
        while (packet := next(self._packets, None)) is not None:
            if self.stop is not None and self.stop.is_set():
                return
            epoch = self._epoch
            if packet.pts is not None:
                self.sent = max(self.sent, packet.pts)
                if self.skip_nonref:
                    context.skip_frame = "DEFAULT" if self.needed(packet.pts) else "NONREF"
            try:
                decoded = self.stream.decode(packet)
            except av.error.FFmpegError:
                self.stats.bad_packets += 1  # damaged packet: the decoder conceals, we go on
                continue
            for frame in decoded:
                if self._epoch != epoch:
                    break  # a seek happened while this packet's frames were handed out
                yield frame
        context.skip_frame = "DEFAULT"
        try:
            yield from self.stream.decode(None)
        except av.error.FFmpegError:
            self.stats.bad_packets += 1


def decode_pyav(probe: VideoProbe, model_pts: np.ndarray, thumb_pts: np.ndarray, sizes: FrameSizes,
                stats: DecodeStats, stop: threading.Event | None = None, skipping: bool = True) -> Iterator[Decoded]:
    """Forward decode of what the wanted frames need (`ForwardDecoder`); each wanted pts gets the frame on
    screen then. `skipping=False` decodes every frame from the first wanted one (as ingest did before it
    knew keyframes: bench/bench_decode.py's baseline)."""
    targets = np.union1d(model_pts, thumb_pts).astype(np.int64)
    if len(targets) == 0:
        return
    wanted: list[int] = targets.tolist()  # plain ints: compared once per decoded frame
    model_set, thumb_set = set(model_pts.tolist()), set(thumb_pts.tolist())
    with open_container(probe.path) as container:
        stream = container.streams[probe.stream_index]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = decode_threads(probe.width, probe.height)
        reader = ForwardDecoder(container, stream, probe, targets, stats, stop, skipping)
        if wanted[0] > probe.pts[0] and not reader.seek_towards(wanted[0]) and not (skipping and len(probe.keyframes)):
            container.seek(wanted[0], stream=stream, backward=True, any_frame=False)  # no keyframe list: let
            # the demuxer find the keyframe before the first wanted frame
        j, prev, prev_pts, last = 0, None, None, None  # last: the latest frame decoded, seeks or not
        to_model, to_thumb = Converter(sizes.model, probe.ops), Converter(sizes.thumb, probe.ops)

        def emit(target: int, frame: av.VideoFrame) -> Decoded:
            return Decoded(target, to_model.frame(frame) if target in model_set else None,
                           to_thumb.frame(frame) if target in thumb_set else None)

        for frame in reader.frames():
            stats.frames += 1
            pts = frame.pts if frame.pts is not None else (prev_pts + 1 if prev_pts is not None else int(probe.pts[0]))
            if reader.overshot(pts, wanted[j]):
                prev = prev_pts = None
                continue
            while j < len(wanted) and wanted[j] <= pts:
                # the frame on screen at wanted[j]: this one if it starts exactly then, else the one before
                yield emit(wanted[j], frame if wanted[j] == pts or prev is None else prev)
                j += 1
            if j == len(wanted):
                return
            prev, prev_pts, last = frame, pts, frame
            if reader.seek_towards(wanted[j]):
                prev = None  # the next frame is a keyframe at or before wanted[j]
        if last is None:
            raise VideoError(f"{probe.path}: no frame could be decoded after {probe.pts[0]} "
                             f"({stats.bad_packets} damaged packets)")
        while j < len(wanted):  # past the last decodable frame (truncated file): it stays on screen
            yield emit(wanted[j], last)
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
