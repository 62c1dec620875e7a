"""What every executor takes (`IngestRequest`) and the protocol it keeps (`Executor`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ingest.config import IngestConfig
from ingest.progress import ProgressCallback
from ingest.results import Summary


@dataclass
class IngestRequest:
    files: list[Path]
    home: str | None
    """The cache root (and, without db_url, the SQLite database's folder); every worker must see it."""
    db_url: str | None
    model: object
    """A model name or folder (every executor), or a loaded VoCoModel (the local executor only)."""
    model_name: str
    config: IngestConfig
    listeners: list[ProgressCallback] = field(default_factory=list)
    show_progress: bool = False
    store: object | None = None
    """An open Store the local executor uses instead of opening one."""
    cancel: threading.Event | None = None
    """Set: the local executor stops at its next batch, as at Ctrl-C (`VideoIngestor.run`)."""


class Executor(Protocol):
    name: str

    def run(self, request: IngestRequest) -> Summary: ...
