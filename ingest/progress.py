"""Progress of an ingest run: events for any listener (the app), and tqdm bars for the command line."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from tqdm import tqdm

from ingest.display import shown
from ingest.results import FileStatus


class ProgressKind(StrEnum):
    """What a `ProgressEvent` reports."""

    START = "start"
    """A video begins (`segments_done`/`frames_done` say how much an earlier run left stored)."""
    BATCH = "batch"
    """Segments were compressed."""
    DONE = "done"
    """A file is resolved: see `ProgressEvent.status`."""


@dataclass(frozen=True)
class ProgressEvent:
    kind: ProgressKind
    path: str
    file_index: int  # 0-based, among `files_total`
    files_total: int
    segments_done: int = 0
    segments_total: int = 0
    frames_done: int = 0  # source frames covered so far in this file
    frames_total: int = 0
    status: FileStatus | None = None  # for `ProgressKind.DONE`
    error: str | None = None


ProgressCallback = Callable[[ProgressEvent], None]


class TqdmProgress:
    """An overall bar over files and one bar per video over its source frames (frames/s as the rate)."""

    def __init__(self, files_total: int, *, file=None, disable: bool = False):
        self.out = file or sys.stderr
        self.disable = disable
        self.overall = tqdm(total=files_total, unit="file", desc="ingest", position=0, file=self.out,
                            disable=disable, dynamic_ncols=True)
        self.bar: tqdm | None = None
        self.frames = 0

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == ProgressKind.START:
            self._close_bar()
            path = shown(event.path)
            name = path if len(path) <= 40 else "…" + path[-39:]
            self.bar = tqdm(total=event.frames_total, initial=event.frames_done, unit="fr", unit_scale=True,
                            desc=name, position=1, leave=False, file=self.out, disable=self.disable,
                            dynamic_ncols=True)
        elif event.kind == ProgressKind.BATCH and self.bar is not None:
            step = event.frames_done - self.bar.n
            self.frames += step
            self.bar.update(step)
            self.bar.set_postfix_str(f"seg {event.segments_done}/{event.segments_total}")
        elif event.kind == ProgressKind.DONE:
            self._close_bar()
            self.overall.update(1)
            rate = self.overall.format_dict.get("elapsed") or 0
            if rate:
                self.overall.set_postfix_str(f"{self.frames / rate:.1f} frames/s")
            if event.status == FileStatus.FAILED and event.error and not self.disable:
                self.overall.write(f"failed: {shown(event.error)}", file=self.out)

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        self._close_bar()
        self.overall.close()
