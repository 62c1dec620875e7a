"""The decoder side of the pipeline: a thread that turns paths into batches of segment frames.

    paths -> [hash, claim, probe, plan, decode, cut, thumbnail] -> bounded queue -> main thread compresses

The producer runs ahead of the model by at most `queue_batches` batches, so decoding overlaps with
compression while memory stays bounded. Everything it learns is an item on the queue: `Started`,
`Batch`, `Finished`, `Failed` for videos it claimed, `Resolved` for the rest (already present, or
failed before any claim). A video held by another live process is looked at again after the others
(`IngestConfig.wait_for_others`), so the final summary is true. The producer never raises: a broken
file, or a bug, becomes a `Failed` item naming the file, and the batch goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ingest.budget import SegmentPricer
from ingest.config import IngestConfig
from ingest.identify import identify, video_key
from ingest.results import FileResult, FileStatus, failure_message
from ingest.thumbs import encode_jpeg, thumbnail_size
from store import Claim, ClaimLost, ClaimStatus, ProbeRecord, Store, StoreError, VideoKey
from voco.video.decode import Decoded, DecodeStats, FrameSizes, fetch_frames
from voco.video.frames import decode_side_cap, model_frame_size
from voco.video.plan import SegmentPlan, plan_segments, wanted_pts
from voco.video.probe import VideoError, VideoProbe, probe
from voco.video.rotation import ops_rotation, swaps_axes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """What the producer needs to know about the model and the run."""

    model_id: int
    fingerprint: str
    segment_seconds: float
    frames_per_segment: int
    image_size: int
    owner: str
    config: IngestConfig
    pricer: SegmentPricer | None = None
    """What a segment costs, for the price a refusal past `IngestConfig.max_segments` states."""

    def key(self, sha256: str) -> VideoKey:
        """The stored video's identity for content `sha256` under these settings (`video_key`)."""
        return video_key(sha256, self.model_id, segment_seconds=self.segment_seconds,
                         frames_per_segment=self.frames_per_segment, image_size=self.image_size,
                         decode_max_side=self.config.decode_max_side, cache_dtype=self.config.cache_dtype)


@dataclass
class Job:
    order: int
    path: Path
    claim: Claim
    probe: VideoProbe
    plans: list[SegmentPlan]
    todo: list[SegmentPlan]
    cancelled: threading.Event = field(default_factory=threading.Event)
    stats: DecodeStats = field(default_factory=DecodeStats)

    def frames_in(self, plans: list[SegmentPlan]) -> int:
        """Source frames the span of these (consecutive) segments covers."""
        ts = self.probe.timestamps
        return int(np.searchsorted(ts, plans[-1].end_s, "left") - np.searchsorted(ts, plans[0].start_s, "left"))


@dataclass
class Started:
    job: Job


@dataclass
class Batch:
    job: Job
    plans: list[SegmentPlan]
    frames: list[np.ndarray]  # each uint8 [F, H, W, 3]
    thumbs: list[bytes | None]
    source_frames: int


@dataclass
class Finished:
    job: Job


@dataclass
class Failed:
    order: int
    path: Path
    claim: Claim
    error: str
    job: Job | None = None
    lost: bool = False
    """The claim was taken over by another worker (our lease lapsed): the video may be done by now."""


@dataclass
class Resolved:
    order: int
    result: FileResult


class Stopped(Exception):
    pass


DONE = object()


class Producer(threading.Thread):
    def __init__(self, paths: list[Path], store: Store, settings: Settings, out: queue.Queue, stop: threading.Event):
        super().__init__(name="ingest-decoder", daemon=True)
        self.paths, self.store, self.settings, self.out, self.stop = paths, store, settings, out, stop

    def put(self, item) -> None:
        while not self.stop.is_set():
            try:
                self.out.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        raise Stopped

    def run(self) -> None:
        try:
            waiting = [(i, p) for i, p in enumerate(self.paths) if not self.safe_one(i, p)]
            while waiting:
                time.sleep(self.settings.config.poll_s)
                waiting = [(i, p) for i, p in waiting if not self.safe_one(i, p)]
        except Stopped:
            pass
        except BaseException:  # a bug: report it, never hang the consumer
            log.error("ingest decoder thread crashed:\n%s", traceback.format_exc())
        finally:
            self.put_done()

    def put_done(self) -> None:
        """Hand the consumer its end marker, however long its current batch takes (a 135M-parameter model can
        take a minute per batch on a busy CPU: a marker dropped after a timeout left it waiting for ever).
        Once `stop` is set the consumer no longer reads the queue for items, so the marker is not needed."""
        with contextlib.suppress(Stopped):
            self.put(DONE)

    def safe_one(self, order: int, path: Path) -> bool:
        """`one`, with any unexpected error (a bug, a database hiccup) reported as this file's failure."""
        try:
            return self.one(order, path)
        except Stopped:
            raise
        except Exception as err:  # noqa: BLE001 - the other files go on
            log.error("%s: unexpected error:\n%s", path, traceback.format_exc())
            error = failure_message(path, err)
            self.put(Resolved(order, FileResult(str(path), FileStatus.FAILED, None, None, None, error)))
            return True

    def one(self, order: int, path: Path) -> bool:
        """Ingest or resolve one path; False when another process holds it (look again later)."""
        if self.stop.is_set():
            raise Stopped
        s = self.settings
        try:
            file_id = identify(path, self.store)
        except VideoError as err:
            vid = self.store.record_unreadable(model_id=s.model_id, segment_seconds=s.segment_seconds,
                                               frames_per_segment=s.frames_per_segment,
                                               path=os.path.abspath(path),
                                               error=str(err))
            self.put(Resolved(order, FileResult(str(path), FileStatus.FAILED, vid, None, None, str(err))))
            return True
        key = s.key(file_id.sha256)
        claim = self.store.claim(key, fingerprint=s.fingerprint, path=file_id.path, size=file_id.size, owner=s.owner)
        if claim.status == ClaimStatus.PRESENT and self.store.reset_if_files_missing(claim.video_id):
            # its cache file was deleted behind the store's back: ingest it again
            claim = self.store.claim(key, fingerprint=s.fingerprint, path=file_id.path, size=file_id.size,
                                     owner=s.owner)
        if claim.status == ClaimStatus.PRESENT:
            self.store.prepare(claim)  # leftovers of a run killed right after finishing
            self.put(Resolved(order, FileResult(str(path), FileStatus.PRESENT, claim.video_id, claim.num_segments,
                                                claim.duration, None)))
            return True
        if claim.status == ClaimStatus.BUSY:
            if s.config.wait_for_others:
                return False
            error = f"{path}: being ingested by another process ({claim.holder}); run again later"
            self.put(Resolved(order, FileResult(str(path), FileStatus.FAILED, claim.video_id, None, None, error)))
            return True
        job = None
        try:
            self.store.prepare(claim)
            job = self.begin_job(order, path, claim)
            self.put(Started(job))
            self.decode(job)
            if not job.cancelled.is_set():
                self.put(Finished(job))
        except Stopped:
            raise
        except (VideoError, ClaimLost, StoreError) as err:
            self.put(Failed(order, path, claim, failure_message(path, err), job, lost=isinstance(err, ClaimLost)))
        except Exception as err:  # noqa: BLE001 - a bug must not stop the other files
            log.error("%s: unexpected error while decoding:\n%s", path, traceback.format_exc())
            self.put(Failed(order, path, claim, failure_message(path, err), job))
        return True

    def begin_job(self, order: int, path: Path, claim: Claim) -> Job:
        s = self.settings
        info = probe(path)
        limit, pixels = s.config.max_frame_pixels, info.width * info.height
        if limit is not None and pixels > limit:
            raise VideoError(f"{path}: its frames are {info.width}x{info.height} = {pixels:,} pixels, more than the "
                             f"limit of {limit:,}; raise it with --max-frame-pixels N "
                             "(IngestConfig.max_frame_pixels) to ingest it")
        plans = plan_segments(info, s.segment_seconds, s.frames_per_segment, s.config.max_duration_s)
        if not plans:
            raise VideoError(f"{path}: the video lasts 0 seconds")
        cap = s.config.max_segments
        if cap is not None and len(plans) > cap:
            price = f" ({s.pricer.cost.describe(len(plans))})" if s.pricer is not None else ""
            raise VideoError(f"{path}: it lasts {info.duration / 3600:.1f} h, {len(plans):,} segments{price}, more "
                             f"than the limit of {cap:,} segments; raise it with --max-segments N "
                             "(IngestConfig.max_segments) to ingest it")
        self.store.set_probe(claim, s.owner, ProbeRecord(
            duration=info.duration, fps=info.fps, num_frames=info.num_frames, width=info.display_size[0],
            height=info.display_size[1], rotation=ops_rotation(info.ops), num_segments=len(plans)))
        todo = [p for p in plans if p.index not in claim.done]
        return Job(order, path, claim, info, plans, todo)

    def sizes(self, info: VideoProbe) -> FrameSizes:
        cfg = self.settings.config
        cap = decode_side_cap(self.settings.image_size, cfg.decode_max_side)
        model = model_frame_size(info.width, info.height, cap)
        tw, th = thumbnail_size(*info.display_size, cfg.thumbnail_side)
        return FrameSizes(model=model, thumb=(th, tw) if swaps_axes(info.ops) else (tw, th))

    def decode(self, job: Job) -> None:
        """Decode the job's missing segments and put them on the queue in batches."""
        if not job.todo:
            return
        batch_size = self.settings.config.batch_size
        model_pts, thumb_pts = wanted_pts(job.todo)
        frames = fetch_frames(job.probe, model_pts, thumb_pts, self.sizes(job.probe),
                              backend=self.settings.config.decoder, stats=job.stats, stop=self.stop)
        held: dict[int, Decoded] = {}
        batch: list[tuple[SegmentPlan, np.ndarray, bytes | None]] = []
        k = 0  # next plan to complete
        for item in frames:
            held[item.pts] = item
            while k < len(job.todo) and all(p in held for p in (*job.todo[k].frames, job.todo[k].thumbnail)):
                plan = job.todo[k]
                stack = np.stack([held[p].model for p in plan.frames])
                thumb = held[plan.thumbnail].thumb
                batch.append((plan, stack, encode_jpeg(thumb) if thumb is not None else None))
                k += 1
                if k < len(job.todo):
                    keep_from = min(min(job.todo[k].frames), job.todo[k].thumbnail)
                    held = {p: v for p, v in held.items() if p >= keep_from}
                if len(batch) == batch_size:
                    self.put_batch(job, batch)
                    batch = []
            if job.cancelled.is_set():
                return
        if batch:
            self.put_batch(job, batch)
        if k < len(job.todo):
            raise VideoError(f"{job.path}: decoding stopped before segment {job.todo[k].index} "
                             f"({job.stats.bad_packets} damaged packets)")

    def put_batch(self, job: Job, batch: list[tuple[SegmentPlan, np.ndarray, bytes | None]]) -> None:
        plans = [plan for plan, _, _ in batch]
        self.put(Batch(job, plans, [f for _, f, _ in batch], [t for _, _, t in batch], job.frames_in(plans)))
