"""`ingest_paths`: the Python entry of the ingest worker (the CLI and the app both call it).

    from ingest.run import ingest_paths
    summary = ingest_paths(["videos/"], home="~/.cache/voco", model="default", progress=callback)
    summary.files  # [FileResult(path, status=ingested|present|failed, video_id, segments, duration_s, error)]

The calling thread compresses; a decoder thread (ingest/pipeline.py) feeds it batches of segments
through a bounded queue. Each batch is stored as it is compressed (store/writer.py), so a kill loses
at most the batch in flight, and the next run resumes the rest.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import torch

from ingest.config import IngestConfig
from ingest.decode import decord_available
from ingest.discover import discover, missing_paths
from ingest.heartbeat import Heartbeat
from ingest.identify import register_model
from ingest.pipeline import DONE, Batch, Failed, Finished, Job, Producer, Resolved, Settings, Started
from ingest.progress import BATCH, START, ProgressCallback, ProgressEvent, TqdmProgress
from ingest.progress import DONE as EV_DONE
from ingest.results import FAILED, INGESTED, FileResult, Summary
from ingest.thumbs import JPEG_MIME
from store import ModelInfo, SegmentRecord, Store
from store.claims import new_owner
from voco import VoCoModel

log = logging.getLogger(__name__)


class UsageError(ValueError):
    """Bad arguments (e.g. a path that does not exist); nothing was done."""


def load_model(name_or_path: str) -> VoCoModel:
    """`VoCoModel.from_pretrained`; FileNotFoundError (with its message) when there is no such model."""
    model = VoCoModel.from_pretrained(name_or_path)
    model.eval()
    return model


def model_info(model: VoCoModel, name: str) -> ModelInfo:
    config = {"voco": model.voco.to_dict(), "llava": json.loads(model.config.to_json_string(use_diff=False))}
    return ModelInfo(fingerprint=model.fingerprint, name=name, compressor=model.voco.compressor, k=model.k,
                     config=config)


def ingest_paths(
    paths: Sequence[str | PathLike],
    *,
    home: str | PathLike | None = None,
    db_url: str | None = None,
    model: str | VoCoModel = "default",
    model_name: str | None = None,
    config: IngestConfig | None = None,
    progress: ProgressCallback | None = None,
    show_progress: bool = False,
    store: Store | None = None,
) -> Summary:
    """Ingest every video under `paths` into the store; see the module docstring.

    model: a name/path for `VoCoModel.from_pretrained`, or a loaded model (then `model_name` labels it).
    progress: called from the calling thread with `ProgressEvent`s (start, batch, done per file).
    store: an open `Store` to use (else one is opened at `home` / `db_url` and closed at the end).
    Raises UsageError, FileNotFoundError (no such model), store.StoreError (database or home unusable).
    """
    config = config or IngestConfig()
    missing = missing_paths(list(paths))
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    if config.backend == "decord" and not decord_available():
        raise UsageError("the decord backend is not installed: pip install decord (or use the PyAV backend)")
    if isinstance(model, str):
        model_name = model_name or (model if model == "default" or not Path(model).exists()
                                    else str(Path(model).resolve()))
        model = load_model(model)
    owns_store = store is None
    store = store or Store.open(home, db_url, lease_s=config.lease_s)
    try:
        found = discover(list(paths))
        summary = _run(store, model, model_name or "unnamed", found.videos, config, progress, show_progress)
        summary.files += [FileResult(s.path, FAILED, None, None, None, s.reason) for s in found.skipped]
        return summary
    finally:
        if owns_store:
            store.close()


def _run(store: Store, model: VoCoModel, name: str, files: list[Path], config: IngestConfig,
         progress: ProgressCallback | None, show_progress: bool) -> Summary:
    if config.torch_threads is not None:
        torch.set_num_threads(config.torch_threads)
    model_id = register_model(store, model, model_info(model, name))  # re-keys an old store's rows
    segment_seconds = float(config.segment_seconds or model.voco.segment_seconds)
    owner = new_owner()
    settings = Settings(model_id=model_id, fingerprint=model.fingerprint, segment_seconds=segment_seconds,
                        frames_per_segment=model.voco.frames_per_segment,
                        image_size=int(model.config.vision_config.image_size), owner=owner, config=config)
    bars = TqdmProgress(len(files), disable=not show_progress) if show_progress else None
    consumer = Consumer(store, model, settings, len(files), [cb for cb in (bars, progress) if cb is not None])
    items: queue.Queue = queue.Queue(maxsize=config.queue_batches)
    stop = threading.Event()
    producer = Producer(files, store, settings, items, stop)
    start = time.perf_counter()
    try:
        with Heartbeat(store, owner, every_s=max(0.5, config.lease_s / 4)):
            producer.start()
            try:
                while (item := items.get()) is not DONE:
                    consumer.handle(item)
            except KeyboardInterrupt:
                consumer.summary.interrupted = True
                stop.set()
                consumer.flush_all()  # compressed work is kept; a kill -9 loses at most one chunk per video
                _drain(items, producer)
    finally:
        stop.set()
        if producer.ident is not None:
            producer.join(timeout=30)
        store.release(owner)  # anything unfinished is resumable by the next run at once
        if bars is not None:
            bars.close()
    summary = consumer.summary
    summary.elapsed_s = time.perf_counter() - start
    summary.files.sort(key=lambda r: consumer.order.get(r.path, 0))
    return summary


def _drain(items: queue.Queue, producer: threading.Thread) -> None:
    while producer.is_alive():
        with contextlib.suppress(queue.Empty):
            items.get(timeout=0.2)


class Consumer:
    """The main-thread side: compress batches, store them, finish or fail videos, report progress."""

    def __init__(self, store: Store, model: VoCoModel, settings: Settings, files_total: int,
                 listeners: list[ProgressCallback]):
        self.store, self.model, self.settings = store, model, settings
        self.files_total = files_total
        self.listeners = listeners
        self.summary = Summary()
        self.order: dict[str, int] = {}
        self.done: dict[int, tuple[int, int]] = {}  # job order -> (segments done, frames done)
        # job order -> compressed segments not yet written (records, caches); see IngestConfig.chunk_segments
        self.pending: dict[int, tuple[list[SegmentRecord], list]] = {}
        self.jobs: dict[int, Job] = {}  # job order -> job, for the pending segments

    def emit(self, event: ProgressEvent) -> None:
        for listener in self.listeners:
            try:
                listener(event)
            except Exception as err:  # noqa: BLE001 - a broken listener must not stop the ingest
                log.warning("progress listener failed: %s", err)

    def resolve(self, order: int, result: FileResult) -> None:
        self.order[result.path] = order
        self.summary.files.append(result)
        self.emit(ProgressEvent(EV_DONE, result.path, order, self.files_total, status=result.status,
                                error=result.error))

    def handle(self, item) -> None:
        if isinstance(item, Resolved):
            self.resolve(item.order, item.result)
        elif isinstance(item, Started):
            job = item.job
            done = [p for p in job.plans if p.index in job.claim.done]
            frames_done = sum(job.frames_in([p]) for p in done)
            self.done[job.order] = (len(done), frames_done)
            self.emit(ProgressEvent(START, str(job.path), job.order, self.files_total, len(done), len(job.plans),
                                    frames_done, job.probe.num_frames))
        elif isinstance(item, Batch):
            if not item.job.cancelled.is_set():
                self.guard(item.job, self.compress, item)
        elif isinstance(item, Finished):
            if not item.job.cancelled.is_set():
                self.guard(item.job, self.finish, item.job)
        elif isinstance(item, Failed) and (item.job is None or not item.job.cancelled.is_set()):
            self.fail(item.order, item.path, item.claim, item.error, item.job)

    def guard(self, job: Job, step, arg) -> None:
        try:
            step(arg)
        except Exception as err:  # noqa: BLE001 - one video's failure must not stop the others
            log.debug("%s failed", job.path, exc_info=True)
            self.fail(job.order, job.path, job.claim, f"{job.path}: {type(err).__name__}: {err}", job)

    def compress(self, batch: Batch) -> None:
        job = batch.job
        caches = self.model.compress(batch.frames, batch_size=self.settings.config.batch_size)
        records = [SegmentRecord(p.index, p.start_s, p.end_s, thumb, JPEG_MIME if thumb else None)
                   for p, thumb in zip(batch.plans, batch.thumbs, strict=True)]
        self.jobs[job.order] = job
        held_records, held_caches = self.pending.setdefault(job.order, ([], []))
        held_records.extend(records)
        held_caches.extend(caches)
        if len(held_records) >= self.settings.config.chunk_segments:
            self.flush(job)
        segments, frames = self.done[job.order]
        segments, frames = segments + len(batch.plans), frames + batch.source_frames
        self.done[job.order] = (segments, frames)
        self.summary.segments += len(batch.plans)
        self.summary.frames += batch.source_frames
        self.emit(ProgressEvent(BATCH, str(job.path), job.order, self.files_total, segments, len(job.plans),
                                frames, job.probe.num_frames))

    def flush(self, job: Job) -> None:
        """Write the job's compressed segments as one chunk file."""
        records, caches = self.pending.pop(job.order, ([], []))
        self.jobs.pop(job.order, None)
        if records:
            self.store.add_chunk(job.claim, self.settings.owner, records, caches)

    def flush_all(self) -> None:
        for order in list(self.pending):
            job = self.jobs[order]
            try:
                self.flush(job)
            except Exception as err:  # noqa: BLE001 - the next run recomputes what could not be written
                log.warning("could not store the compressed segments of %s: %s", job.path, err)

    def finish(self, job: Job) -> None:
        self.flush(job)
        segments = self.store.finish(job.claim, self.settings.owner)
        self.resolve(job.order, FileResult(str(job.path), INGESTED, job.claim.video_id, segments,
                                           round(job.probe.duration, 3), None))

    def fail(self, order: int, path: Path, claim, error: str, job: Job | None) -> None:
        self.pending.pop(order, None)
        self.jobs.pop(order, None)
        if job is not None:
            job.cancelled.set()
        try:
            self.store.fail(claim, self.settings.owner, error)
        except Exception as err:  # noqa: BLE001
            log.warning("could not record the failure of %s: %s", path, err)
        duration = round(job.probe.duration, 3) if job is not None else None
        self.resolve(order, FileResult(str(path), FAILED, claim.video_id, None, duration, error))
