"""`ingest_paths`: the Python entry of the ingest worker (the CLI and the app both call it).

    from ingest.run import ingest_paths
    summary = ingest_paths(["videos/"], home="~/.cache/voco", model="default", progress=callback)
    summary.files  # [FileResult(path, status=ingested|present|failed, video_id, segments, duration_s, error)]

    from ingest.executors import executor_for
    from ingest.config import RayConfig
    ingest_paths(["videos/"], home="/shared/voco", db_url="postgresql+psycopg://voco@db/voco",
                 executor=executor_for("ray", ray=RayConfig(workers=4)))

The unit of work is one video (`VideoIngestor.ingest_one`, ingest/worker.py); an executor
(ingest/executors) decides where it runs: this process (the default, decoding overlapped with
compression across files) or Ray worker actors. Each batch is stored as it is compressed
(store/writer.py), so a kill loses at most the chunk in flight, and the next run resumes the rest.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

from ingest.config import IngestConfig, UsageError
from ingest.discover import discover, missing_paths
from ingest.executors import Executor, IngestRequest, LocalExecutor
from ingest.progress import ProgressCallback
from ingest.results import FileResult, FileStatus, Summary
from ingest.worker import model_info  # noqa: F401 - public here since the first version
from store import Store
from voco import VoCoModel
from voco.video.decode import decord_available

log = logging.getLogger(__name__)


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
    executor: Executor | None = None,
    cancel: threading.Event | None = None,
) -> Summary:
    """Ingest every video under `paths` into the store; see the module docstring.

    model: a name/path for `VoCoModel.from_pretrained`, or a loaded model (then `model_name` labels it).
    progress: called from the calling thread with `ProgressEvent`s (start, batch, done per file; the Ray
    executor reports done events only).
    store: an open `Store` to use (else one is opened at `home` / `db_url` and closed at the end).
    executor: where the videos are ingested (default: `LocalExecutor()`, this process).
    cancel: once set, the local executor stops at its next batch, as at Ctrl-C: what was compressed is kept and the
    summary is marked `interrupted` (the Ray executor does not read it).
    Raises UsageError, FileNotFoundError (no such model), store.StoreError (database or home unusable).
    """
    config = config or IngestConfig()
    executor = executor or LocalExecutor()
    missing = missing_paths(list(paths))
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    if config.decoder == "decord" and not decord_available():
        raise UsageError("the decord decoder is not installed: pip install decord (or use the PyAV decoder)")
    if isinstance(model, str):
        model_name = model_name or (model if model == "default" or not Path(model).exists()
                                    else str(Path(model).resolve()))
        if not isinstance(executor, LocalExecutor) and Path(model).exists():
            model = str(Path(model).resolve())  # workers may start elsewhere
    if store is not None:  # workers of other executors open the same store themselves
        home, db_url = store.home.root, store.url
    found = discover(list(paths))
    request = IngestRequest(files=found.videos, home=None if home is None else str(home), db_url=db_url,
                            model=model, model_name=model_name or "unnamed", config=config,
                            listeners=[progress] if progress is not None else [], show_progress=show_progress,
                            store=store, cancel=cancel)
    summary = executor.run(request)
    summary.files += [FileResult(s.path, FileStatus.FAILED, None, None, None, s.reason) for s in found.skipped]
    return summary
