"""Executors: who runs `VideoIngestor.ingest_one` on which file.

    LocalExecutor()                    this process: one model, the overlapped decode/compress pipeline
    RayExecutor(RayConfig(workers=4))  Ray worker actors, each with its own model and pipeline, writing to
                                       the shared database (--db postgresql://...) and cache root

Both take an `IngestRequest` and return a `Summary` with the files in the order found, and share the
claims (store/claims.py): any mix of local processes and Ray workers on one store never duplicates work.
`executor_for(name, ray=...)` resolves the CLI's `--executor` name to a class.
"""

from __future__ import annotations

from collections.abc import Callable

from ingest.config import RayConfig
from ingest.executors.request import Executor, IngestRequest
from ingest.results import Summary


class LocalExecutor:
    """This process: the overlapped pipeline over every file (decoding the next video while compressing)."""

    name = "local"

    def run(self, request: IngestRequest) -> Summary:
        from ingest.worker import VideoIngestor
        from store import Store
        from voco import load_model

        config = request.config
        store = request.store or Store.open(request.home, request.db_url, lease_s=request.config.lease_s)
        try:
            store.check_writable()  # before the model loads (seconds to minutes): a read-only store fails at once
            model = (load_model(request.model, config.device, config.dtype, config.compressor, config.k)
                     if isinstance(request.model, str) else request.model)
            ingestor = VideoIngestor(store, model, request.model_name, request.config)
            return ingestor.run(request.files, request.listeners, show_progress=request.show_progress,
                                cancel=request.cancel)
        finally:
            if request.store is None:
                store.close()


def _ray_executor(ray: RayConfig | None) -> Executor:
    from ingest.executors.ray_executor import RayExecutor

    return RayExecutor(ray or RayConfig())


EXECUTORS: dict[str, Callable[[RayConfig | None], Executor]] = {
    "local": lambda _ray: LocalExecutor(),
    "ray": _ray_executor,
}


def executor_for(name: str, *, ray: RayConfig | None = None) -> Executor:
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}: choose one of {', '.join(EXECUTORS)}")
    return EXECUTORS[name](ray)
