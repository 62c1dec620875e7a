"""Atomic, checksummed files of the store (packs, search vectors): the pieces both need, without torch.

Writers put data under a temp name (`temp_path`), fsync it, `os.replace` it over the final name and
fsync the folder, so a crash leaves the old file or the new one, never half of one; `sweep_temp_files`
(store/packs.py) removes what a killed writer left behind.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

TEMP_MARK = ".tmp-"


def checksum(data: bytes | memoryview) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def temp_path(path: Path) -> Path:
    """A sibling temp name unique to this process and call; swept by `sweep_temp_files` when stale."""
    return path.with_name(f"{path.name}{TEMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort: some file systems refuse a folder fsync)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
