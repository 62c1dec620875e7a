"""A file's identity: the sha256 of its bytes, streamed (remembered per path, size and mtime); a stored video's key."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from store import ModelInfo, Store, VideoKey
from voco import identity
from voco.video.frames import decode_side_cap
from voco.video.probe import VideoError

CHUNK = 1 << 20
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileId:
    path: str  # absolute
    sha256: str
    size: int
    mtime_ns: int


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def identify(path: Path, store=None) -> FileId:
    """Hash `path` (or reuse the hash the store remembers for it); `VideoError` when it cannot be read."""
    absolute = os.path.abspath(path)
    if path.is_symlink() and not path.exists():
        raise VideoError(f"{path}: broken symbolic link (its target {os.readlink(path)!r} does not exist)")
    if path.is_dir():
        raise VideoError(f"{path}: is a directory, not a video file")
    try:
        st = path.stat()
        known = store.known_sha256(absolute, st.st_size, st.st_mtime_ns) if store is not None else None
        sha = known or sha256_file(path)
    except PermissionError as err:
        raise VideoError(f"{path}: permission denied (cannot read the file)") from err
    except FileNotFoundError as err:
        raise VideoError(f"{path}: no such file (removed while ingesting?)") from err
    except OSError as err:
        raise VideoError(f"{path}: cannot read it ({err.strerror or err})") from err
    file_id = FileId(absolute, sha, st.st_size, st.st_mtime_ns)
    if store is not None and known is None:
        store.remember_file(absolute, sha, st.st_size, st.st_mtime_ns)
    return file_id


def video_key(sha256: str, model_id: int, *, segment_seconds: float, frames_per_segment: int, image_size: int,
              decode_max_side: int | None, cache_dtype: str = "model") -> VideoKey:
    """A stored video's identity: its content, the model (weights + compression settings, voco/identity.py),
    the segment sampling that decides what frames the model sees (segment length, frames per segment, and
    the size cap frames are decoded at; `decode_max_side` None: ingest's default cap), and how its caches
    are stored (`cache_dtype`: int8 caches are another video than float ones, though the model is the same,
    so the app reads both with the model it has)."""
    return VideoKey(sha256, model_id, float(segment_seconds), int(frames_per_segment),
                    decode_side_cap(image_size, decode_max_side), cache_dtype)


def register_model(store: Store, model, info: ModelInfo) -> int:
    """The store's id for `model` (described by `info`), after re-keying the rows an older store holds for
    these same weights under the old identity (one per prompt or segment setting it was run with)."""
    old_rows = [row for row in store.legacy_models() if isinstance(row.config.get("voco"), dict)]
    if old_rows:
        vocos = [row.config["voco"] for row in old_rows]
        for row, voco, old in zip(old_rows, vocos, identity.legacy_fingerprints(model, vocos), strict=True):
            if old != row.fingerprint:
                continue  # other weights
            new = identity.fingerprint(model, voco)
            target = info if new == info.fingerprint else dataclasses.replace(
                info, fingerprint=new, compressor=str(voco.get("compressor")), k=int(voco.get("k", 0)),
                config={**info.config, "voco": voco})
            model_id, left = store.adopt_legacy_model(row.id, target)
            log.info("model row %d (old identity %s) is now model %d (%s)%s", row.id, old[:12], model_id, new[:12],
                     f"; {left} videos stored twice stay under the old row" if left else "")
    return store.register_model(info)
