"""Decoding a video file into model segments with PyAV, by the project's one sampling rule.

A demux pass reads every frame's presentation time without decoding; `voco.segments` then picks each
segment's frames by timestamp (the frame on screen at the centre of each of F equal slices); one
sequential decode converts only those frames, downscaled early (aspect kept) so a long HD video costs
little memory. This mirrors what `ingest` stores, so in-memory and stored caches see the same frames.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class VideoDecodeError(RuntimeError):
    """The file cannot be decoded; the message names it and says why."""


def probe_timestamps(container, stream, path) -> tuple[np.ndarray, float, np.ndarray]:
    """(sorted unique pts [N], duration in seconds, timestamps [N] in seconds from the first frame)."""
    import av

    pts: list[int] = []
    tail: dict[int, int] = {}
    try:
        for packet in container.demux(stream):
            t = packet.pts if packet.pts is not None else packet.dts
            if t is None or packet.size == 0:
                continue
            pts.append(t)
            if packet.duration:
                tail[t] = packet.duration
    except av.error.FFmpegError:
        pass  # damaged tail: keep what was found
    if not pts:
        raise VideoDecodeError(f"{path}: the video stream holds no frames (empty or truncated file)")
    arr = np.unique(np.asarray(pts, dtype=np.int64))
    base = stream.time_base
    if len(arr) > 1:
        step = int(np.median(np.diff(arr)))
    else:
        rate = stream.guessed_rate or stream.average_rate or 25
        step = max(1, round(1 / (float(rate) * float(base))))
    last = tail.get(int(arr[-1]), step)
    duration = float((int(arr[-1]) - int(arr[0]) + last) * base)
    timestamps = ((arr - arr[0]) * float(base)).astype(np.float64)
    return arr, duration, timestamps


def _target_size(width: int, height: int, max_side: int | None) -> tuple[int, int] | None:
    if not max_side or max(width, height) <= max_side:
        return None
    scale = max_side / max(width, height)
    return max(2, round(width * scale)), max(2, round(height * scale))


def decode_segments(
    path: str | os.PathLike,
    segment_seconds: float,
    frames_per_segment: int,
    max_side: int | None = None,
) -> list[np.ndarray]:
    """A video file -> its segments, each uint8 [frames_per_segment, H, W, 3] (RGB)."""
    import av

    from voco.segments import segment_frame_indices

    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"{path}: no such file")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError) as err:
        raise VideoDecodeError(f"{path}: FFmpeg cannot open it ({err})") from err
    with container:
        streams = [s for s in container.streams.video]
        if not streams:
            raise VideoDecodeError(f"{path}: no video stream")
        stream = streams[0]
        pts, duration, timestamps = probe_timestamps(container, stream, path)
        per_segment = segment_frame_indices(timestamps, duration, segment_seconds, frames_per_segment)
        if not per_segment:
            raise VideoDecodeError(f"{path}: zero duration, no segments")
        wanted = np.unique(np.concatenate([pts[idx] for idx in per_segment]))
        container.seek(0)
        stream.thread_type = "AUTO"
        got: dict[int, np.ndarray] = {}
        prev = None
        j = 0

        def convert(frame) -> np.ndarray:
            size = _target_size(frame.width, frame.height, max_side)
            if size is None:
                return frame.to_ndarray(format="rgb24")
            return frame.reformat(width=size[0], height=size[1], format="rgb24", interpolation="AREA").to_ndarray()

        def frames():
            for packet in container.demux(stream):
                try:
                    yield from packet.decode()
                except av.error.FFmpegError:
                    continue  # damaged packet: the decoder conceals, go on
            try:
                yield from stream.decode(None)
            except av.error.FFmpegError:
                return

        for frame in frames():
            t = frame.pts if frame.pts is not None else int(wanted[j])
            while j < len(wanted) and wanted[j] <= t:
                # the frame on screen at wanted[j]: this one if it starts exactly then, else the one before
                chosen = frame if wanted[j] == t or prev is None else prev
                got[int(wanted[j])] = convert(chosen)
                j += 1
            if j == len(wanted):
                break
            prev = frame
        if prev is None and not got:
            raise VideoDecodeError(f"{path}: no frame could be decoded (corrupt file?)")
        while j < len(wanted):  # past the last decodable frame: it stays on screen
            got[int(wanted[j])] = convert(prev)
            j += 1
    segments = [np.stack([got[int(pts[i])] for i in idx]) for idx in per_segment]
    return segments
