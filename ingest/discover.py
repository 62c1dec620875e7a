"""Finding the video files under the paths a user gives.

The walk follows symbolic links to folders but enters each real folder (device, inode) once, so a
link loop (`ln -s . a`) cannot make it endless. Only regular files are videos: a FIFO would block
the reader forever and a device (`/dev/zero`) never ends, so such entries named like videos are
`Skipped` with the reason, as are folders that cannot be read; the caller reports them as failed.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ingest.config import VIDEO_EXTENSIONS


@dataclass(frozen=True)
class Skipped:
    """A path that is not searched or not ingested, and why (the reason names the path)."""

    path: str
    reason: str


@dataclass
class Found:
    videos: list[Path] = field(default_factory=list)
    """Files to ingest, in walk order: regular files, plus broken links and folders named like videos
    (ingest reports those as failed with the reason)."""
    skipped: list[Skipped] = field(default_factory=list)


def missing_paths(paths: list[str | os.PathLike]) -> list[str]:
    """Paths given that do not exist at all (a usage error, reported before any work)."""
    return [str(p) for p in paths if not os.path.lexists(p)]


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def not_a_regular_file(path: Path) -> str | None:
    """Why `path` (followed through links) is no video file, or None for a regular file and for what the
    pipeline reports itself (a broken link, a folder, a file it cannot stat)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    for test, kind in _KINDS:
        if test(mode):
            via = f" (through the symbolic link to {os.readlink(path)!r})" if path.is_symlink() else ""
            return f"{path}: {kind}{via}, not a regular file: only regular files are read as videos"
    return None


def _is_video_name(name: str) -> bool:
    return Path(name).suffix.lower() in VIDEO_EXTENSIONS


def _add_file(path: Path, found: Found) -> None:
    reason = not_a_regular_file(path)
    if reason is None:
        found.videos.append(path)
    else:
        found.skipped.append(Skipped(str(path), reason))


def _walk(top: Path, found: Found, seen: set[tuple[int, int]]) -> None:
    """Depth-first, in name order; hidden files and folders skipped (often partial downloads or temp files)."""
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen:  # a link back to a folder already walked (or a loop)
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as err:
            found.skipped.append(Skipped(str(folder), f"{folder}: cannot read this folder "
                                         f"({err.strerror or err}): the videos in it were not searched"))
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = folder / entry.name
            try:
                is_dir = entry.is_dir()  # follows links; False for a broken one
            except OSError:
                is_dir = False
            if is_dir:
                subfolders.append(path)
                if _is_video_name(entry.name):  # a folder named like a video is not one: report it too
                    found.videos.append(path)
            elif _is_video_name(entry.name):
                _add_file(path, found)
        stack.extend(reversed(subfolders))


def discover(paths: list[str | os.PathLike]) -> Found:
    """Files given directly (whatever their extension) and, under folders, recursively, every file with a
    video extension. Each video appears once (by real path), each real folder is walked once."""
    found = Found()
    seen: set[tuple[int, int]] = set()
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            _walk(path, found, seen)
        else:
            _add_file(path, found)
    unique: dict[str, Path] = {}
    for path in found.videos:
        key = os.path.realpath(path) if path.exists() else os.path.abspath(path)
        unique.setdefault(key, path)
    found.videos = list(unique.values())
    return found
