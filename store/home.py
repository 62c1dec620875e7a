"""The home folder: where the database and the cache files live, and how cache files are named.

    HOME/voco.db                                          SQLite database (unless a --db URL is given)
    HOME/caches/<uid[:2]>/<uid>/pack-<fp[:16]>.safetensors  a ready video's caches, one pack
    HOME/caches/<uid[:2]>/<uid>/chunks/<first>-<last>-<owner>.safetensors
                                                          per-batch packs while the video is ingested
    *.tmp-<pid>-<rand>                                    a write in progress (or killed); swept

`uid` is a random id per video row, so homes shared by several databases never collide. Cache rows
store paths relative to the home, so a home folder can be moved as a whole.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "VOCO_HOME"
DB_NAME = "voco.db"


def default_home() -> Path:
    """$VOCO_HOME, else ~/.cache/voco."""
    env = os.environ.get(HOME_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "voco"


@dataclass(frozen=True)
class Home:
    root: Path

    @property
    def db_path(self) -> Path:
        return self.root / DB_NAME

    @property
    def caches(self) -> Path:
        return self.root / "caches"

    def video_dir(self, uid: str) -> Path:
        return self.caches / uid[:2] / uid

    def chunk_dir(self, uid: str) -> Path:
        return self.video_dir(uid) / "chunks"

    def chunk_path(self, uid: str, first: int, last: int, owner: str) -> Path:
        tag = "".join(c for c in owner.rsplit(":", 1)[-1] if c.isalnum())[:8] or "x"
        return self.chunk_dir(uid) / f"{first:06d}-{last:06d}-{tag}.safetensors"

    def pack_path(self, uid: str, fingerprint: str) -> Path:
        return self.video_dir(uid) / f"pack-{fingerprint[:16]}.safetensors"

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def absolute(self, relative: str) -> Path:
        return self.root / relative

    def remove_video_dir(self, uid: str) -> None:
        folder = self.video_dir(uid)
        if folder.exists():
            shutil.rmtree(folder)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()  # the uid[:2] fan-out folder, when now empty
