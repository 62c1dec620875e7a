"""`VideoIngestor`: one process's ingest work, and `ingest_one(path)`, the unit both executors run.

    ingestor = VideoIngestor(store, model, "default", IngestConfig())
    summary = ingestor.ingest_one(Path("clip.mp4"))   # claim, probe, decode + compress (overlapped), store
    summary = ingestor.run(paths, listeners)          # the same pipeline streaming many files (local executor)

An ingestor holds the store, the loaded model, the model's row id and this process's claim owner
token. `run` overlaps decoding with compression: a decoder thread (ingest/pipeline.py) feeds the
calling thread batches of segments through a bounded queue; each batch is compressed and stored as
it comes (store/writer.py), so a kill loses at most the chunk in flight. `ingest_one(path)` is `run`
over one path: its argument and its result (a `Summary`) are plain data, so a Ray worker actor runs
it just as well (ingest/executors/ray_executor.py). Everything a video needs from claim to finish
happens inside one call; nothing of a video's state is shared with another call.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from pathlib import Path

import torch

from ingest.budget import SegmentPricer
from ingest.config import IngestConfig
from ingest.heartbeat import Heartbeat
from ingest.identify import register_model
from ingest.pipeline import DONE, Batch, Failed, Finished, Job, Producer, Resolved, Settings, Started
from ingest.progress import ProgressCallback, ProgressEvent, ProgressKind, TqdmProgress
from ingest.results import FileResult, FileStatus, Summary, failure_message
from ingest.thumbs import JPEG_MIME
from ingest.vectors import index_for, store_video_vectors
from store import ClaimLost, ModelInfo, SegmentRecord, Store, VideoStatus
from store.claims import new_owner
from store.quant import as_stored
from voco import VoCoModel
from voco.search import make_embedder

log = logging.getLogger(__name__)


def model_info(model: VoCoModel, name: str) -> ModelInfo:
    config = {"voco": model.voco.to_dict(), "llava": json.loads(model.config.to_json_string(use_diff=False))}
    return ModelInfo(fingerprint=model.fingerprint, name=name, compressor=model.voco.compressor, k=model.k,
                     config=config)


class VideoIngestor:
    """Ingest work of one process: a store, a model, settings, and one claim owner token."""

    def __init__(self, store: Store, model: VoCoModel, model_name: str, config: IngestConfig):
        if config.torch_threads is not None:
            torch.set_num_threads(config.torch_threads)
        self.store, self.model, self.config = store, model, config
        model_id = register_model(store, model, model_info(model, model_name))  # re-keys an old store's rows
        image_size = int(model.config.vision_config.image_size)
        self.settings = Settings(
            model_id=model_id, fingerprint=model.fingerprint,
            segment_seconds=float(config.segment_seconds or model.voco.segment_seconds),
            frames_per_segment=model.voco.frames_per_segment,
            image_size=image_size, owner=new_owner(), config=config,
            pricer=SegmentPricer(model, image_size))
        self.embedder = make_embedder(config.search_embedder, model) if config.search_vectors else None

    def ingest_one(self, path: str | Path) -> Summary:
        """Ingest one file (the unit of work of every executor); its `Summary` holds one `FileResult`."""
        return self.run([Path(path)], [])

    def run(self, files: list[Path], listeners: list[ProgressCallback], *, show_progress: bool = False,
            cancel: threading.Event | None = None) -> Summary:
        """Ingest `files` through the overlapped pipeline; the summary lists them in the order given. Ctrl-C, or
        `cancel` set (checked before each batch), stops it: what was compressed is written, the rest dropped, and
        the summary is marked `interrupted`."""
        owner = self.settings.owner
        bars = TqdmProgress(len(files)) if show_progress else None
        consumer = Consumer(self.store, self.model, self.settings, len(files),
                            [cb for cb in (bars, *listeners) if cb is not None], self.embedder)
        items: queue.Queue = queue.Queue(maxsize=self.config.queue_batches)
        stop = threading.Event()
        producer = Producer(files, self.store, self.settings, items, stop)
        start = time.perf_counter()
        try:
            with Heartbeat(self.store, owner, every_s=max(0.5, self.config.lease_s / 4)):
                producer.start()
                try:
                    while (item := items.get()) is not DONE:
                        if cancel is not None and cancel.is_set():
                            self._interrupt(consumer, stop, items, producer)
                            break
                        consumer.handle(item)
                except KeyboardInterrupt:
                    self._interrupt(consumer, stop, items, producer)
        finally:
            stop.set()
            if producer.ident is not None:
                producer.join(timeout=30)
            self.release()
            if bars is not None:
                bars.close()
        summary = consumer.summary
        if summary.count(FileStatus.INGESTED):
            self.update_index()
        summary.elapsed_s = time.perf_counter() - start
        summary.files.sort(key=lambda r: consumer.order.get(r.path, 0))
        return summary

    @staticmethod
    def _interrupt(consumer, stop: threading.Event, items: queue.Queue, producer) -> None:
        consumer.summary.interrupted = True
        stop.set()
        consumer.flush_all()  # compressed work is kept; a kill -9 loses at most one chunk per video
        _drain(items, producer)

    def update_index(self) -> None:
        """Bring the search index up to date once per run (the sync that may restructure or retrain it)."""
        if self.embedder is None:
            return
        try:
            index_for(self.store, self.model, self.embedder).sync()
        except Exception as err:  # noqa: BLE001 - the caches are stored; a search or --rebuild-index syncs it
            log.warning("could not update the search index (run python -m ingest --rebuild-index): %s", err)

    def release(self) -> None:
        """Let go of this process's claims: anything unfinished is resumable by the next run at once.

        A failure here (the database unreachable, or its disk full) must not hide the summary: the
        claims then lapse by themselves (a dead pid on this host at once, elsewhere after the lease).
        """
        try:
            self.store.release(self.settings.owner)
        except Exception as err:  # noqa: BLE001
            log.warning("could not release the claims of %s (they lapse by themselves): %s",
                        self.settings.owner, err)


def index_video(store: Store, embedder, fingerprint: str, video_id: int, computed: dict, name) -> None:
    """Write a finished video's search vectors (`computed`: those made while compressing); a failure is logged, not
    raised: the caches are stored, and --rebuild-index recomputes what is missing."""
    try:
        store_video_vectors(store, embedder, fingerprint, video_id, computed=computed)
    except Exception as err:  # noqa: BLE001
        log.warning("could not index %s for search (run python -m ingest --rebuild-index): %s", name, err)


def _drain(items: queue.Queue, producer: threading.Thread) -> None:
    while producer.is_alive():
        with contextlib.suppress(queue.Empty):
            items.get(timeout=0.2)


class Consumer:
    """The compressing side: compress batches, store them, finish or fail videos, report progress."""

    def __init__(self, store: Store, model: VoCoModel, settings: Settings, files_total: int,
                 listeners: list[ProgressCallback], embedder=None):
        self.store, self.model, self.settings = store, model, settings
        self.embedder = embedder  # search vectors (voco/search.py) written when a video is finished
        self.files_total = files_total
        self.listeners = listeners
        self.summary = Summary()
        self.order: dict[str, int] = {}
        self.done: dict[int, tuple[int, int]] = {}  # job order -> (segments done, frames done)
        # job order -> compressed segments not yet written (records, caches); see IngestConfig.chunk_segments
        self.pending: dict[int, tuple[list[SegmentRecord], list]] = {}
        self.jobs: dict[int, Job] = {}  # job order -> job, for the pending segments
        # job order -> {segment index: search vector}, computed as segments are compressed (not kept on disk
        # until the video is finished: a resumed video's earlier segments are decoded again then)
        self.vectors: dict[int, dict[int, object]] = {}

    def emit(self, event: ProgressEvent) -> None:
        for listener in self.listeners:
            try:
                listener(event)
            except Exception as err:  # noqa: BLE001 - a broken listener must not stop the ingest
                log.warning("progress listener failed: %s", err)

    def resolve(self, order: int, result: FileResult) -> None:
        self.order[result.path] = order
        self.summary.files.append(result)
        self.emit(ProgressEvent(ProgressKind.DONE, result.path, order, self.files_total, status=result.status,
                                error=result.error))

    def handle(self, item) -> None:
        if isinstance(item, Resolved):
            self.resolve(item.order, item.result)
        elif isinstance(item, Started):
            job = item.job
            done = [p for p in job.plans if p.index in job.claim.done]
            frames_done = sum(job.frames_in([p]) for p in done)
            self.done[job.order] = (len(done), frames_done)
            self.emit(ProgressEvent(ProgressKind.START, str(job.path), job.order, self.files_total, len(done),
                                    len(job.plans), frames_done, job.probe.num_frames))
        elif isinstance(item, Batch):
            if not item.job.cancelled.is_set():
                self.guard(item.job, self.compress, item)
        elif isinstance(item, Finished):
            if not item.job.cancelled.is_set():
                self.guard(item.job, self.finish, item.job)
        elif isinstance(item, Failed) and (item.job is None or not item.job.cancelled.is_set()):
            self.fail(item.order, item.path, item.claim, item.error, item.job, lost=item.lost)

    def guard(self, job: Job, step, arg) -> None:
        try:
            step(arg)
        except ClaimLost as err:
            self.fail(job.order, job.path, job.claim, failure_message(job.path, err), job, lost=True)
        except Exception as err:  # noqa: BLE001 - one video's failure must not stop the others
            log.debug("%s failed", job.path, exc_info=True)
            self.fail(job.order, job.path, job.claim, failure_message(job.path, err), job)

    def compress(self, batch: Batch) -> None:
        job = batch.job
        caches = self.model.compress(batch.frames, batch_size=self.settings.config.batch_size)
        if self.embedder is not None:  # now, from what is in memory: the finished video's pack is not read back
            stored = as_stored(caches, self.settings.config.cache_dtype)  # the caches as the pack will give them
            vectors = self.embedder.segment_vectors(stored, frames=batch.frames)
            self.vectors.setdefault(job.order, {}).update(zip((p.index for p in batch.plans), vectors, strict=True))
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
        self.emit(ProgressEvent(ProgressKind.BATCH, str(job.path), job.order, self.files_total, segments,
                                len(job.plans), frames, job.probe.num_frames))

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
        if self.embedder is not None:
            index_video(self.store, self.embedder, self.settings.fingerprint, job.claim.video_id,
                        self.vectors.pop(job.order, {}), job.path)
        self.resolve(job.order, FileResult(str(job.path), FileStatus.INGESTED, job.claim.video_id, segments,
                                           round(job.probe.duration, 3), None))

    def fail(self, order: int, path: Path, claim, error: str, job: Job | None, *, lost: bool = False) -> None:
        self.pending.pop(order, None)
        self.vectors.pop(order, None)
        self.jobs.pop(order, None)
        if job is not None:
            job.cancelled.set()
        duration = round(job.probe.duration, 3) if job is not None else None
        if lost and self._done_by_another(claim):
            # we were paused past our lease and another worker took the video over and finished it
            segments = len(job.plans) if job is not None else claim.num_segments
            self.resolve(order, FileResult(str(path), FileStatus.PRESENT, claim.video_id, segments, duration, None))
            return
        if not lost:  # a lost claim is the new holder's to record
            try:
                self.store.fail(claim, self.settings.owner, error)
            except Exception as err:  # noqa: BLE001
                log.warning("could not record the failure of %s: %s", path, err)
        self.resolve(order, FileResult(str(path), FileStatus.FAILED, claim.video_id, None, duration, error))

    def _done_by_another(self, claim) -> bool:
        try:
            status = self.store.status(claim.video_id)
        except Exception as err:  # noqa: BLE001 - then report the loss as it is
            log.warning("could not look up video %s: %s", claim.video_id, err)
            return False
        return status is not None and status[0] == VideoStatus.READY
