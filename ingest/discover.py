"""Finding the video files under the paths a user gives."""

from __future__ import annotations

import os
from pathlib import Path

from ingest.config import VIDEO_EXTENSIONS


def missing_paths(paths: list[str | os.PathLike]) -> list[str]:
    """Paths given that do not exist at all (a usage error, reported before any work)."""
    return [str(p) for p in paths if not os.path.lexists(p)]


def find_videos(paths: list[str | os.PathLike]) -> list[Path]:
    """Files given directly (whatever their extension) and, under folders, recursively, every file with a
    video extension (hidden files and folders skipped: they are often partial downloads or temp files).
    Broken symlinks and unreadable entries are kept: ingest reports them as failed with the reason."""
    found: list[Path] = []
    for given in paths:
        path = Path(given).expanduser()
        if not path.is_dir():
            found.append(path)
            continue
        for root, dirs, files in os.walk(path, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith(".") and Path(name).suffix.lower() in VIDEO_EXTENSIONS:
                    found.append(Path(root) / name)
            for name in dirs:  # a folder named like a video is not one: report it, and walk it too
                if Path(name).suffix.lower() in VIDEO_EXTENSIONS:
                    found.append(Path(root) / name)
    unique: dict[str, Path] = {}
    for path in found:
        key = os.path.realpath(path) if path.exists() else os.path.abspath(path)
        unique.setdefault(key, path)
    return list(unique.values())
