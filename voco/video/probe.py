"""Probing a video with PyAV: its frames' presentation times, duration and display orientation.

One demux pass over the video stream reads every packet's timestamp without decoding (exact for
variable frame rates and for files whose header lies about the duration); the decoder is fed only
until the first frame comes out, which proves the file decodes and gives its display matrix. A
file that is not a video, holds no video stream (audio only, or just cover art) or whose frames
cannot be decoded raises `VideoError` with a reason a person can act on.

The duration comes from the timestamps, which a few damaged or crafted bytes can set to anything
(546 hours in a 3.7 KB file; a time scale of 0). Every planned segment costs a model call and disk,
so a claimed duration the file's own evidence cannot back (its frames, its bytes) is refused here,
before anything is planned; see `check_claimed_duration`.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from voco.video.rotation import display_ops, parse_display_matrix, swaps_axes


class VideoError(Exception):
    """This file cannot be ingested; the message says why (and names no stack trace)."""


class NoFramesError(VideoError):
    """The file is a video container whose video stream holds no frames (or lasts 0 seconds)."""


MAX_SECONDS_PER_FRAME = 60.0
"""A video's frames, on average, stay on screen at most this long. Real footage shows several frames a
second, slideshows a frame every few seconds; a 60 s average means broken timestamps."""
MAX_SECONDS_PER_BYTE = 2.0
"""A video holds at least half a byte per second of what it claims (a frame costs bytes, index entries
included: honest files hold hundreds or thousands of bytes per second)."""


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds:,.1f} s"


def check_claimed_duration(path, duration: float, num_frames: int, size: int) -> None:
    """`VideoError` when the duration the timestamps claim is more than `num_frames` frames or `size` bytes
    can hold (see the two limits above): planning it would mean thousands of segments of nothing."""
    why = None
    if duration > num_frames * MAX_SECONDS_PER_FRAME:
        frames = f"{num_frames} frame time{'s' if num_frames != 1 else ''}"
        why = f"{frames} ({duration / num_frames:,.0f} s per frame)"
    elif duration > size * MAX_SECONDS_PER_BYTE:
        why = f"a file of {size:,} bytes"
    if why is not None:
        raise VideoError(f"{path}: its timestamps claim {_hours(duration)} for {why}: they are damaged or "
                         "crafted, so it is not ingested (if it is a real video, re-encode it, e.g. "
                         "ffmpeg -i IN -r 25 OUT.mp4)")


@dataclass(frozen=True)
class VideoProbe:
    path: str
    container: str
    codec: str
    width: int  # as stored (before display rotation)
    height: int
    pts: np.ndarray  # [N] int64, sorted, unique: presentation time of every frame in time_base units
    time_base: Fraction
    duration: float  # seconds, first frame's start to last frame's end
    ops: tuple[str, ...] = field(default=())  # display orientation ops (voco/video/rotation.py)
    stream_index: int = 0
    keyframes: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # [K] sorted pts of the packets
    # the demuxer marks as keyframes: where a decode may start (`voco.video.decode` seeks over unwanted stretches)

    @property
    def num_frames(self) -> int:
        return len(self.pts)

    @property
    def timestamps(self) -> np.ndarray:
        """[N] seconds from the first frame."""
        return ((self.pts - self.pts[0]) * float(self.time_base)).astype(np.float64)

    @property
    def fps(self) -> float:
        return self.num_frames / self.duration if self.duration > 0 else 0.0

    @property
    def display_size(self) -> tuple[int, int]:
        return (self.height, self.width) if swaps_axes(self.ops) else (self.width, self.height)


def open_container(path: str | os.PathLike):
    """av.open with the errors people meet turned into `VideoError` reasons."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise VideoError(f"{path}: broken symbolic link (its target {os.readlink(path)!r} does not exist)")
    if path.is_dir():
        raise VideoError(f"{path}: is a directory, not a video file")
    if not path.exists():
        raise VideoError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except PermissionError as err:
        raise VideoError(f"{path}: permission denied (cannot read the file)") from err
    except av.error.InvalidDataError as err:
        raise VideoError(f"{path}: not a video file FFmpeg can read (invalid data; corrupt or truncated?)") from err
    except av.error.FFmpegError as err:
        if getattr(err, "errno", None) == errno.EACCES:
            raise VideoError(f"{path}: permission denied (cannot read the file)") from err
        raise VideoError(f"{path}: FFmpeg cannot open it ({err.strerror or err})") from err
    except OSError as err:
        raise VideoError(f"{path}: cannot open it ({err.strerror or err})") from err


def video_stream(container, path) -> av.video.stream.VideoStream:
    streams = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
    if not streams:
        kinds = sorted({s.type for s in container.streams})
        what = "audio only" if kinds == ["audio"] else (f"streams: {', '.join(kinds)}" if kinds else "no streams")
        raise VideoError(f"{path}: no video stream ({what})")
    return streams[0]


def frame_ops(frame) -> tuple[str, ...]:
    # looked up by type: PyAV 18.1.1 iterates side data as its types, 18.1.0 as the entries; both have .get
    side = frame.side_data.get(av.sidedata.sidedata.Type.DISPLAYMATRIX) if frame.side_data else None
    return display_ops(parse_display_matrix(bytes(side))) if side is not None else ()


def probe(path: str | os.PathLike) -> VideoProbe:
    """Timestamps of every frame (demux pass) and the first decoded frame's orientation."""
    with open_container(path) as container:
        stream = video_stream(container, path)
        if stream.time_base is None:
            raise VideoError(f"{path}: the video stream has no time base")
        pts: list[int] = []
        keys: list[int] = []
        last_duration: dict[int, int] = {}
        first = None
        undecodable = 0
        try:
            for packet in container.demux(stream):
                t = packet.pts if packet.pts is not None else packet.dts
                if t is None or packet.size == 0:
                    continue
                pts.append(t)
                if packet.is_keyframe:
                    keys.append(t)
                if packet.duration:
                    last_duration[t] = packet.duration
                if first is None:
                    try:
                        frames = stream.decode(packet)
                    except av.error.FFmpegError:
                        undecodable += 1
                        frames = []
                    first = frames[0] if frames else None
        except av.error.FFmpegError:
            pass  # truncated or damaged tail: keep the frames found so far
        if first is None and pts:
            try:
                frames = stream.decode(None)
                first = frames[0] if frames else None
            except av.error.FFmpegError:
                pass
        if not pts:
            raise NoFramesError(f"{path}: the video stream holds no frames (empty or truncated file)")
        if first is None:
            codec = stream.codec_context.name if stream.codec_context else "?"
            raise VideoError(f"{path}: no frame of its {codec} video could be decoded "
                             f"({undecodable} damaged packets; corrupt file?)")
        arr = np.unique(np.asarray(pts, dtype=np.int64))
        if len(arr) > 1:
            step = int(np.median(np.diff(arr)))
        else:
            rate = stream.guessed_rate or stream.average_rate or 25
            step = max(1, round(1 / (float(rate) * float(stream.time_base))))
        tail = last_duration.get(int(arr[-1]), step)
        duration = float((int(arr[-1]) - int(arr[0]) + tail) * stream.time_base)
        check_claimed_duration(path, duration, len(arr), os.stat(path).st_size)
        return VideoProbe(
            path=str(path), container=container.format.name, codec=stream.codec_context.name,
            width=first.width, height=first.height, pts=arr, time_base=stream.time_base, duration=duration,
            ops=frame_ops(first), stream_index=stream.index, keyframes=np.unique(np.asarray(keys, dtype=np.int64)),
        )
