"""The Ray executor: `ingest_one(path)` on Ray worker actors, one model per actor.

    python -m ingest ./videos --executor ray --workers 4 --db postgresql+psycopg://voco@db/voco \
        --cache-root /shared/voco
    python -m ingest ./videos --executor ray --ray-address auto ...     # join a running cluster (ray start --head)

Each actor is one worker process: it opens the store (the shared database and cache root), loads the
model once, registers it and keeps its own claim owner token and heartbeat; for each path it is
given it runs `VideoIngestor.ingest_one` (claim, probe, decode overlapped with batched compression,
chunks, pack, finish) and returns that file's `Summary`. The driver only finds the files, hands them
out (one in flight per actor), gathers the results in the order found and reports progress. So the
claims, resume, bad-input handling and summary are the local executor's, by construction: the same
code runs. A worker that dies (killed, out of memory) is replaced, and its file is reported as the store holds
it: `ingested` when the worker had finished it before dying, else failed with the reason; an unfinished claim
lapses (a dead pid on its host at once, else after the lease) and the next run resumes the video. The store is
checked writable before any worker starts (a read-only database is one usage error, not one failure per file).

The database and the cache root must be reachable from every node: on more than one machine use
PostgreSQL (`--db`) and a shared file system for the cache root; SQLite serves a single-machine Ray.
The video paths must also be readable by the workers at the same path.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from datetime import UTC
from pathlib import Path

from ingest.config import IngestConfig, RayConfig, UsageError
from ingest.executors.request import IngestRequest
from ingest.progress import ProgressEvent, ProgressKind, TqdmProgress
from ingest.results import FileResult, FileStatus, Summary
from store import VideoStatus

log = logging.getLogger(__name__)


class IngestWorker:
    """The body of a Ray worker actor (plain class: `ray.remote` wraps it at run time)."""

    def __init__(self, home: str, db_url: str | None, model: str, model_name: str, config: IngestConfig):
        from ingest.worker import VideoIngestor
        from store import Store
        from voco import load_model

        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        self.store = Store.open(home, db_url, lease_s=config.lease_s)
        loaded = load_model(model, config.device, config.dtype, config.compressor, config.k)
        self.ingestor = VideoIngestor(self.store, loaded, model_name, config)

    def ingest_one(self, path: str) -> Summary:
        return self.ingestor.ingest_one(path)

    def update_index(self) -> None:
        self.ingestor.update_index()

    def pid(self) -> int:
        return os.getpid()

    def fingerprint(self) -> str:
        return self.ingestor.model.fingerprint

    def close(self) -> None:
        self.store.close()


class RayExecutor:
    name = "ray"

    def __init__(self, config: RayConfig):
        self.config = config
        self.timings: dict[str, float] = {}
        """Of the last run: startup_s (workers started, models loaded), ingest_s (from then to the end)."""

    def run(self, request: IngestRequest) -> Summary:
        import ray

        from store import Store, default_home

        if not isinstance(request.model, str):
            raise UsageError("the Ray executor loads the model on every worker: give it a model name or folder "
                             "(--model), not a loaded model")
        if request.db_url is None and self.config.address is not None:
            log.warning("Ray workers share a SQLite database: fine on one machine; across machines use "
                        "--db postgresql+psycopg://... and a cache root every node sees")
        home = str(Path(request.home).expanduser().resolve() if request.home else default_home())
        store = Store.open(home, request.db_url, lease_s=request.config.lease_s)
        try:
            store.check_writable()  # before any worker loads the model: a read-only store fails at once
            return self._with_ray(ray, request, home, store)
        finally:
            store.close()

    def _with_ray(self, ray, request: IngestRequest, home: str, store) -> Summary:
        started = not ray.is_initialized()
        if started:
            ray.init(address=self.config.address, include_dashboard=False, logging_level=logging.WARNING,
                     configure_logging=False)
        try:
            return self._run(ray, request, home, store)
        finally:
            if started:
                ray.shutdown()

    def _run(self, ray, request: IngestRequest, home: str, store) -> Summary:
        cfg = self.config
        actor_class = ray.remote(num_cpus=cfg.cpus_per_worker, num_gpus=cfg.gpus_per_worker,
                                 max_concurrency=1)(IngestWorker)

        # a worker's torch threads stay within the CPUs Ray reserved for it (the CLI's --threads default is
        # this machine's cores less one: right for one local process, oversubscribed for N workers)
        threads = min(request.config.torch_threads or 1 << 16, max(1, int(cfg.cpus_per_worker)))
        config = dataclasses.replace(request.config, torch_threads=threads)

        def new_actor():
            return actor_class.remote(home, request.db_url, request.model, request.model_name, config)

        files = list(request.files)
        bars = TqdmProgress(len(files)) if request.show_progress else None
        listeners = [cb for cb in (bars, *request.listeners) if cb is not None]
        summary, results = Summary(), {}
        start, started_at = time.perf_counter(), time.time()
        idle = [new_actor() for _ in range(min(cfg.workers, max(1, len(files))))]
        fingerprint = self._wait_ready(ray, idle)
        self.timings["startup_s"] = time.perf_counter() - start
        todo = list(enumerate(files))[::-1]  # popped from the end: in the order found
        running: dict = {}  # object ref -> (order, path, actor)
        try:
            while todo or running:
                while todo and idle:
                    order, path = todo.pop()
                    actor = idle.pop()
                    running[actor.ingest_one.remote(str(path))] = (order, path, actor)
                (ref,), _ = ray.wait(list(running), num_returns=1)
                order, path, actor = running.pop(ref)
                try:
                    one: Summary = ray.get(ref)
                    result = one.files[0]
                    summary.segments += one.segments
                    summary.frames += one.frames
                    idle.append(actor)
                except ray.exceptions.RayError as err:  # the worker died (or could not start): that file only
                    result = settled(store, path, fingerprint, started_at) or FileResult(
                        str(path), FileStatus.FAILED, None, None, None,
                        f"{path}: the Ray worker failed: {_first_line(err)}")
                    ray.kill(actor)
                    idle.append(new_actor())
                results[order] = result
                for listener in listeners:
                    _emit(listener, ProgressEvent(ProgressKind.DONE, result.path, order, len(files),
                                                  status=result.status, error=result.error))
            _update_index(ray, idle, results.values())
        except KeyboardInterrupt:
            summary.interrupted = True  # stored chunks are kept; the next run resumes them
        finally:
            for actor in idle + [a for _, _, a in running.values()]:
                ray.kill(actor)  # its process exits; claims it held lapse (dead pid) and are resumable
            if bars is not None:
                bars.close()
        summary.files = [results[i] for i in sorted(results)]
        summary.elapsed_s = time.perf_counter() - start
        self.timings["ingest_s"] = summary.elapsed_s - self.timings["startup_s"]
        return summary

    @staticmethod
    def _wait_ready(ray, actors: list) -> str:
        """Every worker up, its store open and its model loaded (-> the model's fingerprint); else one clear error
        (not one per file)."""

        try:
            return ray.get([actor.fingerprint.remote() for actor in actors])[0]
        except ray.exceptions.RayError as err:
            for actor in actors:
                ray.kill(actor)
            raise UsageError(f"the Ray workers could not start: {_cause(err)}") from err


def _update_index(ray, idle: list, results) -> None:
    """Bring the search index up to date once per run, by one worker (each worker syncing after its videos would
    rewrite the index file per video)."""
    if idle and any(r.status == FileStatus.INGESTED for r in results):
        ray.get(idle[0].update_index.remote())


def settled(store, path: str | Path, fingerprint: str, since: float) -> FileResult | None:
    """The file as the store holds it when its worker died: ready (finished before the worker died: `ingested`
    when it was finished in this run, else `present`), or None (not finished: the failure stands)."""
    wanted = os.path.abspath(path)
    try:
        videos = store.list_videos(status=VideoStatus.READY)
    except Exception as err:  # noqa: BLE001 - then the failure stands as reported
        log.warning("could not look up %s after its worker died: %s", path, err)
        return None
    for video in videos:
        if video.fingerprint == fingerprint and wanted in (video.path, *video.paths):
            fresh = video.updated_at.replace(tzinfo=UTC).timestamp() >= since  # stored naive UTC
            status = FileStatus.INGESTED if fresh else FileStatus.PRESENT
            return FileResult(str(path), status, video.id, video.num_segments, video.duration, None)
    return None


def _emit(listener, event: ProgressEvent) -> None:
    try:
        listener(event)
    except Exception as err:  # noqa: BLE001 - a broken listener must not stop the ingest
        log.warning("progress listener failed: %s", err)


def _cause(err: BaseException) -> str:
    """The worker's own exception message where Ray carries one (e.g. the model folder that does not exist)."""
    cause = getattr(err, "cause", None) or getattr(err, "error_msg", None) or err
    lines = [line for line in str(cause).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
