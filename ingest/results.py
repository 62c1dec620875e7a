"""What an ingest run reports: one `FileResult` per file and a `Summary` (printed, or JSON with --json)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum

from ingest.display import shown
from store.text import storable_text


class FileStatus(StrEnum):
    """One file's result in an ingest run (`FileResult.status`; the summary counts each, JSON gives the string)."""

    INGESTED = "ingested"
    """Compressed and stored by this run."""
    PRESENT = "present"
    """Already stored (same content, model and sampling): nothing to do."""
    FAILED = "failed"
    """See `FileResult.error`; the others are stored all the same."""


EXIT_OK = 0
EXIT_USAGE = 1  # usage or environment error: nothing was ingested
EXIT_SOME_FAILED = 2
EXIT_INTERRUPTED = 130


def failure_message(path, err: BaseException) -> str:
    """One file's failure as the summary states it, with one label per kind whichever step failed: the file's
    own errors (unreadable, too long, claim lost: their messages), `database error` (the database refused or was
    unreachable), `file system error`, else `internal error` (a bug: the log has the traceback)."""
    from sqlalchemy.exc import DBAPIError  # the CLI's light paths import this module

    from store import ClaimLost, StoreError
    from voco.video.probe import VideoError

    text = str(err)
    if isinstance(err, (VideoError, StoreError, ClaimLost)):
        return text if text.startswith(str(path)) else f"{path}: {text}"
    if isinstance(err, DBAPIError):
        cause = str(err.orig).strip().splitlines() if err.orig is not None else []
        return f"{path}: database error: {cause[0] if cause else type(err).__name__}"
    if isinstance(err, OSError):
        return f"{path}: file system error: {err}"
    return f"{path}: internal error: {type(err).__name__}: {text}"


@dataclass(frozen=True)
class FileResult:
    path: str
    status: FileStatus
    video_id: int | None
    segments: int | None
    duration_s: float | None
    error: str | None = None

    def to_dict(self) -> dict:
        """JSON-ready: a name's undecodable bytes as `\\xNN`, as the store records it (JSON escapes the rest)."""
        out = asdict(self)
        out["status"] = str(self.status)  # the plain string, for any serializer
        out["path"] = storable_text(self.path)
        out["error"] = storable_text(self.error) if self.error is not None else None
        return out


@dataclass
class Summary:
    files: list[FileResult] = field(default_factory=list)
    elapsed_s: float = 0.0
    frames: int = 0
    """Source video frames covered by the segments compressed in this run."""
    segments: int = 0
    """Segments compressed in this run."""
    interrupted: bool = False

    def count(self, status: FileStatus) -> int:
        return sum(f.status == status for f in self.files)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_SOME_FAILED if self.count(FileStatus.FAILED) else EXIT_OK

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "files": [f.to_dict() for f in self.files],
            "ingested": self.count(FileStatus.INGESTED), "present": self.count(FileStatus.PRESENT),
            "failed": self.count(FileStatus.FAILED),
            "segments_compressed": self.segments, "frames": self.frames, "elapsed_s": round(self.elapsed_s, 3),
            "frames_per_s": round(self.frames_per_s, 2), "interrupted": self.interrupted,
            "exit_code": self.exit_code,
        }

    def text(self) -> str:
        lines = [f"ingested {self.count(FileStatus.INGESTED)}, already present {self.count(FileStatus.PRESENT)}, "
                 f"failed {self.count(FileStatus.FAILED)} ({self.segments} segments, {self.frames} video frames in "
                 f"{self.elapsed_s:.1f} s, {self.frames_per_s:.1f} frames/s)"]
        failed = [f for f in self.files if f.status == FileStatus.FAILED]
        if failed:
            lines.append("failed:")
            lines += [f"  {shown(f.error or f.path)}" for f in failed]
        if self.interrupted:
            lines.append("interrupted: the work done so far is kept; run the same command again to resume")
        return "\n".join(lines)
