"""Search vectors beside the caches: one file per ready video and search embedder, beside its pack.

    caches/ab/<uid>/search-<fingerprint[:16]>-<embedder>.vectors    (safetensors inside)
        vectors [T, dim] float32; metadata: format, fingerprint, embedder, checksum of the vector bytes

Written atomically and checked on every read, like packs; the faiss index (store/index.py) is derived from them.
numpy, not torch: `python -m ingest --remove` drops index rows without importing torch (a test checks it).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from store.db import StoreError
from store.files import checksum, fsync_dir, temp_path
from store.store import Store

VECTORS_FORMAT = "voco-search-vectors/1"


def vectors_path(store: Store, uid: str, fingerprint: str, embedder: str) -> Path:
    # not *.safetensors: the video folder's sweep (store/writer.py) deletes those the database does not list
    return store.home.video_dir(uid) / f"search-{fingerprint[:16]}-{embedder}.vectors"


def atomic_save(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
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
    atomic_save(path, {"vectors": data}, meta)
    return path


def vector_count(store: Store, uid: str, fingerprint: str, embedder: str) -> int | None:
    """Segments a video's vector file holds, from its header (the vectors are not read); None when it is missing or
    unreadable. A file of the wrong length (a live video's, cut short) is not the video's: --rebuild-index."""
    path = vectors_path(store, uid, fingerprint, embedder)
    try:
        with safe_open(str(path), "np") as f:
            return int(f.get_slice("vectors").get_shape()[0])
    except Exception:  # noqa: BLE001 - missing, or unreadable: read_vectors says which when it is read
        return None


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
