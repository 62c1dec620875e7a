"""Search vectors beside the caches, and one faiss index per (model identity, embedder, store).

Vector files (one per ready video, beside its pack; safetensors, no pickle, checksummed like packs):

    caches/ab/<uid>/search-<fingerprint[:16]>-<embedder>.vectors    (safetensors inside)
        vectors [T, dim] float32; metadata: format, fingerprint, embedder, checksum of the vector bytes

The index file (`index/<fingerprint[:16]>-<embedder>.safetensors`: the serialized faiss index and the
row set it holds, written in one atomic replace) is a derived cache of the database + vector files:
`SegmentIndex.sync()` compares its row set with the database's ready videos of this model and adds
or drops the difference, under a lock file, so two ingest processes (or an ingest and a search)
never lose each other's rows. Deleting it is always safe: the next sync rebuilds it. Faiss ids are
`video_id << 20 | segment index`, so a removed video's rows go with one id range.

A row set names each video by its id *and* uid (the uid is random per stored video): a database may give a
removed video's id to a new one (SQLite does), and an index file copied from another home holds other videos
under the same ids; rows whose uid or segment count differ from the database's are dropped and re-added. A
searcher re-reads the file when another process has replaced it (its size or modification time changed).
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from store.db import StoreError
from store.files import checksum, fsync_dir, temp_path
from store.models import VideoStatus
from store.store import Store

# numpy, not torch: `python -m ingest --remove` drops index rows without importing torch (a test checks it)

VECTORS_FORMAT = "voco-search-vectors/1"
INDEX_FORMAT = "voco-search-index/2"  # /2: rows name uid and segments (/1 files are rebuilt)
_SEGMENT_BITS = 20  # up to ~1M segments per video


@dataclass(frozen=True)
class Hit:
    video_id: int
    segment: int
    score: float


def vectors_path(store: Store, uid: str, fingerprint: str, embedder: str) -> Path:
    # not *.safetensors: the video folder's sweep (store/writer.py) deletes those the database does not list
    return store.home.video_dir(uid) / f"search-{fingerprint[:16]}-{embedder}.vectors"


def _atomic_save(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    fsync_dir(path.parent)  # make the rename durable


def write_vectors(store: Store, uid: str, fingerprint: str, embedder: str, vectors: np.ndarray) -> Path:
    """Store a video's search vectors [T, dim] beside its pack (atomically); returns the file."""
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    if data.ndim != 2:
        raise ValueError(f"search vectors must be [segments, dim], got {tuple(data.shape)}")
    meta = {"format": VECTORS_FORMAT, "fingerprint": fingerprint, "embedder": embedder,
            "checksum": checksum(data.tobytes())}
    path = vectors_path(store, uid, fingerprint, embedder)
    _atomic_save(path, {"vectors": data}, meta)
    return path


def read_vectors(store: Store, uid: str, fingerprint: str, embedder: str) -> np.ndarray | None:
    """A video's vectors, checked; None when the file is missing (ingest --rebuild-index recomputes it)."""
    path = vectors_path(store, uid, fingerprint, embedder)
    if not path.exists():
        return None
    with safe_open(str(path), "np") as f:
        meta = f.metadata() or {}
        vectors = f.get_tensor("vectors")
    if meta.get("format") != VECTORS_FORMAT or meta.get("fingerprint") != fingerprint:
        raise StoreError(f"{path}: not this model's search vectors (format {meta.get('format')!r}); delete it "
                         "and run python -m ingest --rebuild-index")
    if checksum(vectors.tobytes()) != meta.get("checksum"):
        raise StoreError(f"{path} is corrupt (checksum differs): delete it and run python -m ingest --rebuild-index")
    return vectors


class SegmentIndex:
    """The faiss index of one model identity and embedder over one store; see the module docstring."""

    def __init__(self, store: Store, fingerprint: str, embedder: str, dim: int):
        self.store, self.fingerprint, self.embedder, self.dim = store, fingerprint, embedder, dim
        folder = store.home.root / "index"
        self.path = folder / f"{fingerprint[:16]}-{embedder}.safetensors"
        self.lock_path = folder / f"{fingerprint[:16]}-{embedder}.lock"
        self.rows: dict[int, tuple[str, int]] = {}  # video id -> (uid, segments) in the index
        self.missing: list[int] = []  # ready videos without a vector file at the last sync
        self._faiss = None
        self._stamp: tuple[int, int] | None = None  # (size, mtime_ns) of the file as last read or written
        self._synced_with: dict[int, tuple[str, int]] | None = None  # the ready videos the last sync saw

    # ---- the derived file ---------------------------------------------------------------------

    def _empty(self):
        import faiss

        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def _load(self) -> None:
        import faiss

        self._faiss, self.rows = self._empty(), {}
        if not self.path.exists():
            return
        try:
            with safe_open(str(self.path), "np") as f:
                meta = f.metadata() or {}
                blob = f.get_tensor("index")
            if meta.get("format") != INDEX_FORMAT or int(meta.get("dim", -1)) != self.dim:
                return  # another layout: rebuilt by the sync that follows
            self._faiss = faiss.deserialize_index(blob)
            self.rows = {int(k): (str(uid), int(n)) for k, (uid, n) in json.loads(meta["rows"]).items()}
            self._stamp = self._file_stamp()
        except Exception:  # noqa: BLE001 - a derived cache: unreadable means rebuild, never fail the search
            self._faiss, self.rows = self._empty(), {}

    def _save(self) -> None:
        import faiss

        blob = faiss.serialize_index(self._faiss)
        meta = {"format": INDEX_FORMAT, "dim": str(self.dim), "fingerprint": self.fingerprint,
                "embedder": self.embedder, "rows": json.dumps(self.rows)}
        _atomic_save(self.path, {"index": blob}, meta)
        self._stamp = self._file_stamp()

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_size, st.st_mtime_ns

    @contextmanager
    def _locked(self):
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # held until the with-block ends (or the process dies)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ---- keeping it in step with the database -------------------------------------------------

    def ready_videos(self) -> dict[int, tuple[str, int]]:
        """The database's ready videos of this model: id -> (uid, segments)."""
        return {v.id: (v.uid, v.num_segments or 0) for v in self.store.list_videos(status=VideoStatus.READY)
                if v.fingerprint == self.fingerprint}

    def sync(self, *, rebuild: bool = False) -> dict[str, int]:
        """Add the ready videos the index lacks, drop those gone from the database; write if changed."""
        with self._locked():
            if rebuild:
                self._faiss, self.rows = self._empty(), {}
            else:
                self._load()
            want = self.ready_videos()
            gone = [vid for vid, row in self.rows.items() if want.get(vid) != row]  # removed, or another video now
            self._remove(gone)
            added, self.missing = 0, []
            for vid, (uid, _) in sorted(want.items()):
                if vid in self.rows:
                    continue
                vectors = read_vectors(self.store, uid, self.fingerprint, self.embedder)
                if vectors is None or len(vectors) != want[vid][1]:  # none yet, or stale: --rebuild-index
                    self.missing.append(vid)
                    continue
                ids = (vid << _SEGMENT_BITS) + np.arange(len(vectors), dtype=np.int64)
                self._faiss.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
                self.rows[vid] = (uid, len(vectors))
                added += 1
            if rebuild or gone or added or not self.path.exists():
                self._save()
            self._synced_with = want
        return {"videos": len(self.rows), "segments": int(self._faiss.ntotal), "added": added,
                "removed": len(gone), "missing_vectors": len(self.missing)}

    def _remove(self, video_ids) -> None:
        import faiss

        for vid in video_ids:
            self._faiss.remove_ids(faiss.IDSelectorRange(vid << _SEGMENT_BITS, (vid + 1) << _SEGMENT_BITS))
            del self.rows[vid]

    def drop(self, video_ids: list[int]) -> bool:
        """Remove these videos' rows now (ingest --remove); True when the file changed."""
        with self._locked():
            self._load()
            gone = [vid for vid in video_ids if vid in self.rows]
            self._remove(gone)
            if gone:
                self._save()
        return bool(gone)

    def search(self, query: np.ndarray, top: int = 10) -> list[Hit]:
        """The `top` segments of the library with the highest inner product with `query` [dim]."""
        if self._stamp != self._file_stamp() or self._synced_with != self.ready_videos():
            self.sync()  # first use, another process rewrote the file, or the library changed (not merely: a
            # video still lacks vectors, which would re-read every file on every search)
        if self._faiss.ntotal == 0:
            return []
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        scores, ids = self._faiss.search(q, min(top, self._faiss.ntotal))
        mask = (1 << _SEGMENT_BITS) - 1
        return [Hit(int(i) >> _SEGMENT_BITS, int(i) & mask, float(s))
                for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]


def drop_videos(store: Store, video_ids: list[int]) -> int:
    """Remove these videos from every search index of the store (any model); returns the indexes changed."""
    changed = 0
    for path in sorted((store.home.root / "index").glob("*.safetensors")):
        try:
            with safe_open(str(path), "np") as f:
                meta = f.metadata() or {}
            index = SegmentIndex(store, meta["fingerprint"], meta["embedder"], int(meta["dim"]))
        except Exception:  # noqa: BLE001 - unreadable: the next sync of its model rebuilds it anyway
            path.unlink(missing_ok=True)
            continue
        changed += index.drop(video_ids)
    return changed
