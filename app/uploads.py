"""Uploads: copy a video into HOME/uploads, ingest it in the background, cancel it, clean up after it.

Each upload lives in its own folder, `uploads/<job id>/<original name>`, so the stored path keeps the
name the person chose (no renaming) and two uploads of the same name never collide. What is not
needed after the ingest is deleted: a failed or cancelled upload (file and its store row) and a
duplicate (its bytes are already stored as another video). `sweep` removes what earlier runs left.

At most `max_running` uploads ingest at once (each one runs the model); the rest wait in line, first come first
served, and their message says their place. A queued upload that is cancelled leaves the line at once.

Cancelling sets the job's event, which the ingest reads as its stop (`ingest_paths(cancel=...)`, the same path as
Ctrl-C in `python -m ingest`): it stops at its next batch, keeps nothing half-written, and returns a summary marked
`interrupted`; the upload's file and rows are then removed.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from app.validation import ServiceError, public_text
from ingest.config import VIDEO_EXTENSIONS
from ingest.progress import ProgressEvent
from ingest.results import FileStatus
from ingest.run import ingest_paths
from store import Store, StoreError, VideoInfo, VideoStatus
from voco.model import VoCoModel
from voco.timeline import clock
from voco.video.probe import VideoError, probe

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = tuple(sorted(VIDEO_EXTENSIONS))
"""What ingest takes, the app takes."""
LEGACY_PREFIX = re.compile(r"^[0-9a-f]{8}_")
"""Uploads used to be stored as `uploads/<8 hex>_<name>`."""


class UploadStatus(StrEnum):
    QUEUED = "queued"
    INGESTING = "ingesting"
    READY = "ready"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def running(self) -> bool:
        return self in (UploadStatus.QUEUED, UploadStatus.INGESTING)


@dataclass
class UploadJob:
    id: str
    path: Path
    """Absolute: uploads/<id>/<original name>."""
    status: UploadStatus = UploadStatus.QUEUED
    progress: float = 0.0
    message: str = ""
    video_id: int | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event, repr=False)
    finished: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def name(self) -> str:
        return self.path.name


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def display_name(path: str, upload_dir: Path | None) -> str:
    """The file name a person recognises: an upload's original name, without a legacy hash prefix."""
    name = Path(path).name
    if upload_dir is not None and Path(path).parent == upload_dir:
        return LEGACY_PREFIX.sub("", name)
    return name


@dataclass
class Uploads:
    store: Store
    model: VoCoModel
    model_name: str
    folder: Path
    max_bytes: int
    max_seconds: float | None = None
    """Longest upload accepted (its own timestamps, read before it is copied); None: no limit."""
    max_running: int = 1
    """Uploads ingesting at once; more wait in line."""
    _jobs: dict[str, UploadJob] = field(default_factory=dict, init=False)
    _line: deque[UploadJob] = field(default_factory=deque, init=False)
    _running: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.folder = Path(os.path.abspath(self.folder))  # the ingest stores absolute paths: compare like with like
        if self.max_running < 1:
            raise ValueError(f"max_running must be >= 1, got {self.max_running}")

    def start(self, source: str | Path, name: str | None = None) -> UploadJob:
        """Check `source`, copy it into its own upload folder and queue its ingest (run in a background thread)."""
        source = Path(source)
        name = Path(name or source.name).name
        self._check(source, name)
        job_id = uuid.uuid4().hex[:12]
        job = UploadJob(id=job_id, path=self.folder / job_id / name)
        job.path.parent.mkdir(parents=True)
        try:
            shutil.copyfile(source, job.path)
        except OSError:
            shutil.rmtree(job.path.parent, ignore_errors=True)
            raise
        with self._lock:
            self._jobs[job.id] = job
            self._line.append(job)
        self._dispatch()
        return job

    def _check(self, source: Path, name: str) -> None:
        """Refuse, before anything is copied, what is not a video name, too large, unreadable or too long."""
        if Path(name).suffix.lower() not in VIDEO_SUFFIXES:
            raise ServiceError(f"{name}: not a video file name (expected one of {', '.join(VIDEO_SUFFIXES)})")
        size = source.stat().st_size
        if size > self.max_bytes:
            raise ServiceError(f"{name}: {size / 2**20:.0f} MiB is over the upload limit of "
                               f"{self.max_bytes / 2**20:.0f} MiB")
        if self.max_seconds is None:
            return
        try:
            seconds = probe(source).duration
        except VideoError as err:  # its message names the server's temporary path: say it with the upload's name
            reason = str(err).split(": ", 1)[-1] if str(source) in str(err) else str(err)
            raise ServiceError(f"{name}: not a readable video: {reason}") from err
        if seconds > self.max_seconds:
            raise ServiceError(f"{name}: it lasts {clock(seconds)}, longer than the upload limit of "
                               f"{clock(self.max_seconds)} (python -m ingest takes longer videos)")

    def _dispatch(self) -> None:
        """Start queued uploads while fewer than `max_running` ingest; tell the others their place in line."""
        with self._lock:
            while self._line and self._running < self.max_running:
                job = self._line.popleft()
                self._running += 1
                job.status = UploadStatus.INGESTING  # now, not when its thread starts: it has left the line
                threading.Thread(target=self._run, args=(job,), daemon=True, name=f"upload-{job.id}").start()
            for place, job in enumerate(self._line, start=1):
                job.message = f"queued: {ordinal(place)} in line ({self._running} ingesting)"

    def job(self, job_id: str) -> UploadJob:
        if job_id not in self._jobs:
            raise ServiceError(f"no upload {job_id!r}")
        return self._jobs[job_id]

    def cancel(self, job_id: str) -> UploadJob:
        """Ask a running upload to stop; it stops at the ingest's next batch (see `UploadJob.finished`)."""
        job = self.job(job_id)
        with self._lock:
            queued = job in self._line
            if queued:
                self._line.remove(job)
        if queued:  # it never started: nothing to interrupt
            job.cancel_requested.set()
            self._cancelled(job)
            job.finished.set()
            self._dispatch()  # the others move up
        elif job.status.running:
            job.cancel_requested.set()
            job.message = "cancelling…"
        return job

    # ---- the background ingest -------------------------------------------------------------------

    def _run(self, job: UploadJob) -> None:
        try:
            if job.cancel_requested.is_set():
                self._cancelled(job)
                return
            # no model lock: compressing an upload and answering questions may interleave
            summary = ingest_paths([job.path], model=self.model, model_name=self.model_name, store=self.store,
                                   progress=lambda event: self._progress(job, event), cancel=job.cancel_requested)
            if summary.interrupted:
                self._cancelled(job)
                return
            (result,) = summary.files
            if result.status == FileStatus.FAILED:
                job.status, job.message = UploadStatus.FAILED, public_text(result.error or "ingest failed",
                                                                          self.store.home.root)
                self._discard(job)
                return
            job.status, job.progress, job.video_id = UploadStatus.READY, 1.0, result.video_id
            job.message = f"ready: video {result.video_id}, {result.segments} segments"
            if job.cancel_requested.is_set():
                job.message += " (it was done before the cancel took effect)"
            if result.status == FileStatus.PRESENT and self._owner_path(result.video_id) != str(job.path):
                job.message += " (already stored: the uploaded copy is not kept)"
                shutil.rmtree(job.path.parent, ignore_errors=True)
        except Exception as err:  # noqa: BLE001 - a failed upload must not take the app down
            log.warning("upload %s (%s) failed: %s: %s", job.id, job.name, type(err).__name__, err)
            job.status, job.message = UploadStatus.FAILED, public_text(f"{type(err).__name__}: {err}",
                                                                      self.store.home.root)
            self._discard(job)
        finally:
            job.finished.set()
            with self._lock:
                self._running -= 1
            self._dispatch()

    def _progress(self, job: UploadJob, event: ProgressEvent) -> None:
        if event.segments_total:
            job.progress = event.segments_done / event.segments_total
        if not job.cancel_requested.is_set():
            job.message = f"{event.segments_done}/{event.segments_total} segments"

    def _cancelled(self, job: UploadJob) -> None:
        job.status, job.message = UploadStatus.CANCELLED, "cancelled: nothing of it is kept"
        log.info("upload %s (%s) cancelled", job.id, job.name)
        self._discard(job)

    def _owner_path(self, video_id: int | None) -> str | None:
        try:
            return self.store.get_video(video_id).path if video_id is not None else None
        except StoreError:
            return None

    def _discard(self, job: UploadJob) -> None:
        """Delete the upload's folder and the store row this upload created (never another file's row)."""
        for video in self._rows_of(job.path):
            try:
                self.store.remove(video.id)
            except StoreError as err:
                log.warning("upload %s: could not remove video %s from the store: %s", job.id, video.id, err)
        shutil.rmtree(job.path.parent, ignore_errors=True)

    def _rows_of(self, path: Path) -> list[VideoInfo]:
        return [v for v in self.store.list_videos() if v.path == str(path) and v.status != VideoStatus.READY]

    # ---- leftovers of earlier runs ---------------------------------------------------------------

    def sweep(self, min_age_s: float = 600.0) -> list[Path]:
        """Remove uploads no stored video needs: failed, cancelled, duplicates, killed before claiming.

        An upload is kept while a ready or pending video has it as its path; entries younger than
        `min_age_s` are left alone (another app on the same home may be copying or hashing them).
        """
        if not self.folder.is_dir():
            return []
        videos = self.store.list_videos()
        failed = {v.path: v.id for v in videos if v.status == VideoStatus.FAILED}
        needed = {v.path for v in videos if v.status != VideoStatus.FAILED}
        removed, now = [], time.time()
        for entry in sorted(self.folder.iterdir()):
            files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
            if any(str(p) in needed for p in files) or now - entry.lstat().st_mtime < min_age_s:
                continue
            try:
                for p in files:
                    if str(p) in failed:
                        self.store.remove(failed[str(p)])
            except StoreError as err:  # e.g. retried by an ingest right now: leave it for the next sweep
                log.warning("upload %s kept: %s", entry, err)
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
        return removed
