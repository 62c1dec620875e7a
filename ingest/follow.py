"""`python -m ingest --follow SOURCE`: a video that is still being recorded, stored segment by segment.

    result = follow(LiveSource.parse("cam.ts"), store=store, model=model, model_name="default")

SOURCE is a file still being written (MPEG-TS, Matroska, fragmented MP4: read as it grows, `GrowingFile`), `-`
(standard input: a pipe), a named pipe, or a URL FFmpeg opens (rtsp://, udp://, http://, ...). Frames are decoded
in order and cut by the segment rule of every other ingest (`voco.segments`: segment i spans [i S, (i + 1) S), its
model frames are the ones on screen at the centres of F equal slices, its thumbnail the one at its middle), so a
segment is complete as soon as a frame at or past its end arrives. Completed segments are compressed and stored
in small batches (at most `IngestConfig.batch_size`, or whatever has waited `flush_s`), each batch one chunk and
one transaction; the video's status is `live` and the app answers from what is stored so far. The input ends at
end of stream, or when nothing new arrives for `idle_timeout_s`; then the video is finished (one pack, ready,
indexed for search) as a file's would be.

A restart after a kill resumes: the video's identity is the source (its absolute path or URL; `--name` for a
pipe), not its bytes. A file is read again from its start and the segments already stored are skipped; a pipe or
stream goes on after them (its times continue from the stored end).
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from ingest.config import IngestConfig
from ingest.heartbeat import Heartbeat
from ingest.results import FileResult, FileStatus
from ingest.thumbs import JPEG_MIME, encode_jpeg, thumbnail_size
from ingest.vectors import LiveVectors
from ingest.worker import VideoIngestor, index_video
from store import ClaimStatus, ProbeRecord, SegmentRecord, Store
from store.quant import as_stored
from voco import VoCoModel
from voco.segments import frame_indices, sample_times
from voco.video.decode import Converter
from voco.video.frames import decode_side_cap, model_frame_size
from voco.video.probe import VideoError

log = logging.getLogger(__name__)
URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "udp://", "rtp://", "srt://", "tcp://", "http://", "https://")


@dataclass(frozen=True)
class LiveSource:
    """What `--follow` reads: a growing file, a pipe (standard input or a named pipe), or a URL."""

    kind: str  # "file" | "pipe" | "stdin" | "url"
    location: str
    """Absolute path, URL, or "-"."""
    name: str
    """How the store names it (its path; a pipe's --name)."""

    @classmethod
    def parse(cls, text: str, name: str | None = None) -> LiveSource:
        if text == "-":
            return cls("stdin", "-", name or "stdin")
        if text.startswith(URL_SCHEMES):
            return cls("url", text, name or text)
        path = Path(text)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise VideoError(f"{text}: no such file (start the recording first, or give a URL)") from None
        if stat.S_ISDIR(mode):
            raise VideoError(f"{text}: is a directory; --follow takes one growing file, pipe or URL")
        absolute = os.path.abspath(path)
        return cls("pipe" if stat.S_ISFIFO(mode) else "file", absolute, name or absolute)

    @property
    def identity(self) -> str:
        """The sha256 standing in for the content hash of a finished file: the source, not its bytes."""
        what = self.name if self.kind in ("stdin", "pipe") else self.location
        return hashlib.sha256(f"live:{self.kind}:{what}".encode()).hexdigest()

    @property
    def continues(self) -> bool:
        """Whether a restart reads a new stretch (pipe, URL) rather than the same file again."""
        return self.kind != "file"


class GrowingFile:
    """A file still being written, read like a pipe: `read` waits for more bytes, and reports the end (b"") only
    after `idle_timeout_s` without growth, or once `stop` is set."""

    def __init__(self, path: str, idle_timeout_s: float, stop: threading.Event, poll_s: float = 0.1):
        self.handle = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.idle_timeout_s, self.stop, self.poll_s = idle_timeout_s, stop, poll_s

    def read(self, n: int = -1) -> bytes:
        waited = 0.0
        while True:
            data = self.handle.read(n)
            if data or self.stop.is_set() or waited >= self.idle_timeout_s:
                return data
            time.sleep(self.poll_s)
            waited += self.poll_s

    def close(self) -> None:
        self.handle.close()


@dataclass
class LiveSegment:
    index: int
    start_s: float
    end_s: float
    frames: np.ndarray  # uint8 [F, H, W, 3]
    thumbnail: np.ndarray | None


@dataclass
class Segmenter:
    """Frames in time order -> completed segments, by the segment rule (see the module doc): the frames on screen
    during the current segment are held (the one on screen at its start first), and cut as soon as a frame at or
    past its end arrives."""

    segment_seconds: float
    frames_per_segment: int
    first_index: int = 0
    offset_s: float = 0.0
    """Added to the source's own times (a resumed pipe continues after what is stored)."""
    index: int = field(init=False)
    held: list[tuple[float, np.ndarray, np.ndarray | None]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.index = self.first_index

    @property
    def start(self) -> float:
        return self.offset_s + self.index * self.segment_seconds

    @property
    def end(self) -> float:
        return self.start + self.segment_seconds

    def push(self, t: float, model: np.ndarray, thumb: np.ndarray | None) -> list[LiveSegment]:
        """Take the frame shown from `t` (seconds, offset included); returns the segments it completes."""
        out = []
        while self.held and t >= self.end:
            out.append(self._cut(self.start, self.end))
            self.held = [self.held[-1]]  # on screen when the next segment starts
            self.index += 1
        self.held.append((t, model, thumb))
        return out

    def _cut(self, start: float, end: float) -> LiveSegment:
        times = np.array([h[0] for h in self.held])
        picks = frame_indices(sample_times(start, end, self.frames_per_segment), times)
        middle = frame_indices(np.array([(start + end) / 2]), times)[0]
        return LiveSegment(self.index, start, end, np.stack([self.held[i][1] for i in picks]), self.held[middle][2])

    def close(self, end_s: float) -> LiveSegment | None:
        """The last, partial segment [start, end_s) at the input's end; None when it is under a third of a segment
        (a file's sliver joins the segment before it, but that one is stored already)."""
        if not self.held or end_s - self.start < self.segment_seconds / 3:
            return None
        return self._cut(self.start, end_s)


def open_container(source: LiveSource, idle_timeout_s: float, stop: threading.Event):
    """(PyAV container, the file object to close or None)."""
    try:
        if source.kind == "url":
            timeout = str(int(idle_timeout_s * 1_000_000))  # microseconds
            return av.open(source.location, options={"rw_timeout": timeout, "timeout": timeout}), None
        if source.kind == "stdin":
            return av.open(sys.stdin.buffer, mode="r"), None
        if source.kind == "pipe":
            handle = open(source.location, "rb")  # noqa: SIM115 - closed by the caller
            return av.open(handle, mode="r"), handle
        handle = GrowingFile(source.location, idle_timeout_s, stop)
        return av.open(handle, mode="r"), handle
    except av.error.FFmpegError as err:
        raise VideoError(f"{source.name}: cannot open it as a video stream ({err})") from err


@dataclass
class FollowState:
    """What a follow has stored, for its progress line and result."""

    segments: int = 0
    end_s: float = 0.0


class Follower:
    """Follows one live source into the store (see the module doc); `run` returns its `FileResult`."""

    def __init__(self, store: Store, model: VoCoModel, model_name: str, config: IngestConfig, source: LiveSource,
                 *, idle_timeout_s: float = 10.0, flush_s: float = 1.0, on_stored=None):
        if idle_timeout_s <= 0 or flush_s < 0:
            raise ValueError(f"--idle-timeout must be > 0 and flush_s >= 0, got {idle_timeout_s} and {flush_s}")
        self.ingestor = VideoIngestor(store, model, model_name, config)
        self.store, self.model, self.config, self.source = store, model, config, source
        self.settings = self.ingestor.settings
        self.idle_timeout_s, self.flush_s = idle_timeout_s, flush_s
        self.on_stored = on_stored or (lambda state: None)
        """Called with the `FollowState` after each stored batch (progress lines, tests)."""
        self.stop = threading.Event()
        self.state = FollowState()
        self.live_vectors: LiveVectors | None = None
        """Search vectors of the stored segments, written as they come (search sees the video while it grows)."""
        self.frame_size = (0, 0)
        self.frames_seen = 0
        self.first_frame_s: float | None = None
        """Time of the first frame this run read (a resumed pipe starts after what is stored)."""

    def run(self) -> FileResult:
        s = self.settings
        claim = self.store.claim(s.key(self.source.identity), fingerprint=s.fingerprint, path=self.source.name,
                                 size=0, owner=s.owner)
        if claim.status == ClaimStatus.PRESENT:
            return FileResult(self.source.name, FileStatus.PRESENT, claim.video_id, claim.num_segments,
                              claim.duration, None)
        if claim.status == ClaimStatus.BUSY:
            raise VideoError(f"{self.source.name}: already followed by another process ({claim.holder}); stop "
                             "that one first")
        self.store.prepare(claim)
        done = set(claim.done)
        if self.ingestor.embedder is not None:
            self.live_vectors = LiveVectors(self.store, self.ingestor.embedder, s.fingerprint, claim.video_id)
            self.live_vectors.load(done)  # a pipe cannot be read again for the segments stored before a restart
        self.state.segments = len(done)
        segmenter = self._segmenter(claim, done)
        try:
            with Heartbeat(self.store, self.settings.owner, every_s=max(0.5, self.config.lease_s / 4)):
                try:
                    end_s = self._read(claim, done, segmenter)
                except VideoError as err:  # unreadable before anything was stored: a failed video, as ingest says
                    if not self.state.segments:
                        self.store.fail(claim, self.settings.owner, str(err))
                    raise
                last = segmenter.close(end_s)
                if last is not None and last.index not in done:
                    self._store(claim, [last])
                return self._finish(claim)
        finally:
            self.ingestor.release()

    def _segmenter(self, claim, done: set[int]) -> Segmenter:
        s = self.settings
        if not self.source.continues or not done:  # a file is read again from its start: stored segments skipped
            return Segmenter(s.segment_seconds, s.frames_per_segment)
        stored = self.store.segments(claim.video_id)
        first, end = max(done) + 1, max(g.end_s for g in stored)
        self.state.end_s = end
        return Segmenter(s.segment_seconds, s.frames_per_segment, first_index=first,
                         offset_s=end - first * s.segment_seconds)

    def _read(self, claim, done: set[int], segmenter: Segmenter) -> float:
        """Decode the source to its end, storing segments as they complete; returns the end time (seconds)."""
        container, handle = open_container(self.source, self.idle_timeout_s, self.stop)
        pending: list[LiveSegment] = []
        waiting_since = 0.0
        t0, t, step = None, segmenter.offset_s, 0.0
        try:
            if not container.streams.video:
                raise VideoError(f"{self.source.name}: has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            model_conv = thumb_conv = None
            for frame in container.decode(stream):
                if self.stop.is_set():
                    break
                if frame.time is None:
                    continue
                if model_conv is None:
                    model_conv, thumb_conv = self._converters(frame.width, frame.height)
                t0 = frame.time if t0 is None else t0
                now = frame.time - t0 + segmenter.offset_s
                step, t = (now - t if now > t else step), now
                self.first_frame_s = t if self.first_frame_s is None else self.first_frame_s
                self.frames_seen += 1
                for segment in segmenter.push(t, model_conv.frame(frame), thumb_conv.frame(frame)):
                    if segment.index not in done:
                        waiting_since = waiting_since if pending else time.monotonic()
                        pending.append(segment)
                if pending and (len(pending) >= self.config.batch_size
                                or time.monotonic() - waiting_since >= self.flush_s):
                    batch, pending = pending, []  # cleared first: a failed store is not retried below
                    self._store(claim, batch)
        except av.error.FFmpegError as err:  # a stream cut mid-packet ends like its end: what is stored stays
            log.warning("%s: the stream ended with an error (%s); finishing what was stored", self.source.name, err)
        finally:
            if pending and not self.stop.is_set():
                try:
                    self._store(claim, pending)
                except Exception as err:  # noqa: BLE001 - the error that ended the loop matters more
                    log.warning("%s: could not store the last %d segments: %s", self.source.name, len(pending), err)
            container.close()
            if handle is not None:
                handle.close()
        return t + (step or 1.0 / 25)

    def _converters(self, width: int, height: int) -> tuple[Converter, Converter]:
        cfg = self.config
        self.frame_size = (width, height)
        model_size = model_frame_size(width, height, decode_side_cap(self.settings.image_size, cfg.decode_max_side))
        return Converter(model_size, ()), Converter(thumbnail_size(width, height, cfg.thumbnail_side), ())

    def _store(self, claim, segments: list[LiveSegment]) -> None:
        """Compress and store one batch (one chunk, one transaction), then say how far the video has come."""
        frames = [s.frames for s in segments]
        caches = self.model.compress(frames, batch_size=self.config.batch_size)
        records = [SegmentRecord(s.index, s.start_s, s.end_s, encode_jpeg(s.thumbnail) if s.thumbnail is not None
                                 else None, JPEG_MIME if s.thumbnail is not None else None) for s in segments]
        self.store.add_chunk(claim, self.settings.owner, records, caches)
        self.state.segments = max(self.state.segments, segments[-1].index + 1)
        self.state.end_s = max(self.state.end_s, segments[-1].end_s)
        self.store.set_live(claim, self.settings.owner, self._probe())
        if self.live_vectors is not None:
            self.live_vectors.add([s.index for s in segments], as_stored(caches, self.config.cache_dtype), frames)
        self.on_stored(self.state)

    def _probe(self) -> ProbeRecord:
        w, h = self.frame_size
        span = self.state.end_s - (self.first_frame_s or 0.0)
        fps = self.frames_seen / span if span > 0 else 0.0
        return ProbeRecord(duration=round(self.state.end_s, 3), fps=round(fps, 3), num_frames=self.frames_seen,
                           width=w, height=h, rotation=0, num_segments=self.state.segments)

    def _finish(self, claim) -> FileResult:
        if not self.state.segments:
            self.store.fail(claim, self.settings.owner, f"{self.source.name}: the input ended before a whole "
                            "segment was recorded")
            return FileResult(self.source.name, FileStatus.FAILED, claim.video_id, None, None,
                              "the input ended before a whole segment was recorded")
        self.store.set_live(claim, self.settings.owner, self._probe())
        segments = self.store.finish(claim, self.settings.owner)
        if self.live_vectors is not None:  # computed here or taken back; a file is decoded again for any missing
            vectors = (self.live_vectors.filled(segments) if self.source.continues else self.live_vectors.vectors)
            index_video(self.store, self.ingestor.embedder, self.settings.fingerprint, claim.video_id, vectors,
                        self.source.name)
            self.ingestor.update_index()
        return FileResult(self.source.name, FileStatus.INGESTED, claim.video_id, segments,
                          round(self.state.end_s, 3), None)


def follow(source: LiveSource, *, store: Store, model: VoCoModel, model_name: str, config: IngestConfig | None = None,
           idle_timeout_s: float = 10.0, flush_s: float = 1.0, on_stored=None) -> FileResult:
    """Follow `source` until its input ends (see the module doc)."""
    return Follower(store, model, model_name, config or IngestConfig(), source, idle_timeout_s=idle_timeout_s,
                    flush_s=flush_s, on_stored=on_stored).run()
