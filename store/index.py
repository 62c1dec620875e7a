"""One faiss index per (model identity, embedder, store), derived from the search vectors beside the caches
(store/search_vectors.py).

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

Exact below `APPROXIMATE_FROM` segments (`IndexIDMap2(IndexFlatIP)`: every search reads every vector), approximate
from there on: an inverted file with float16 vectors (`IndexIVFScalarQuantizer`, QT_fp16, inner product), trained
on the vectors present when the library crosses the threshold and trained again, from the vector files, whenever
it has grown `RETRAIN_GROWTH` times past the size it was trained at (the file's metadata records that size as
`trained`); a library that shrinks below half the threshold becomes exact again. Both structures take
`add_with_ids` and `remove_ids(IDSelectorRange)`, so the incremental sync is the same for both. Figures:
bench/bench_index_scale.py.
"""

from __future__ import annotations

import fcntl
import json
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from safetensors import safe_open

from store.models import VideoStatus
from store.search_vectors import atomic_save, read_vectors
from store.store import Store

# numpy, not torch: `python -m ingest --remove` drops index rows without importing torch (a test checks it)

INDEX_FORMAT = "voco-search-index/2"  # /2: rows name uid and segments (/1 files are rebuilt); an approximate
# index is still a faiss blob of the same file (faiss records its own type), so /2 stays: `trained` is new metadata
_SEGMENT_BITS = 20  # up to ~1M segments per video

APPROXIMATE_FROM = 100_000
"""Segments from which the index is approximate. Exact search reads every vector for every query (1,536 bytes
per segment at the default model's 384 dimensions): at 100k segments it reaches the 10 ms a search may take (p50
7-11 ms over runs here, 80 ms at 1M), while the inverted file at 100k answers in ~1.3 ms with recall@10 >= 0.998
and trains in ~3 s (bench/bench_index_scale.py). Below it results are exact, as they always were (~55 hours)."""
RETRAIN_GROWTH = 2.0
"""Train again when the library holds this many times the segments the index was trained on: the lists then hold
twice their planned length (each search scans twice as many vectors), and videos added since training may sit
where the old centroids do not; 2x bounds both while a library growing steadily trains only log2(growth) times."""
NPROBE = 96
"""Lists one search scans. At 1M clustered segments (2048 lists, `ivf_lists`) recall@10 against exact was 0.978 /
0.980 (near / fresh queries) at 64, 0.996 / 0.994 at 96 and 0.999 / 0.998 at 128, p50 2.3 / 3.1 / 4.2 ms: 96 keeps
a margin over the 0.95 target for vectors less kind than the synthetic ones at a third of the budget's 10 ms.
At 5M (4096 lists of ~1,200) the same 96 gave 0.947 / 0.967 at p50 13 ms: libraries of several million segments
will want more lists with a faster coarse quantizer, or smaller codes with a re-ranking step."""
TRAIN_PER_LIST = 64
"""Training points per list (k-means; faiss asks for >= 39): a strided sample of the library, not all of it,
because k-means costs points x lists. (32 per list gave unevener lists: at 1M recall@10 0.998 at 64 probes, but
each probe scanned more, p50 3.2 ms; the same recall for the same work as 64 per list at 96 probes.)"""


def ivf_lists(segments: int) -> int:
    """Lists of an inverted file trained on `segments` vectors: the power of two nearest 2 sqrt(n) (faiss's
    guide is 4..16 sqrt(n); fewer, longer lists keep k-means short on 2 cores at the same recall for `NPROBE`),
    and never more than the sample can train (`TRAIN_PER_LIST` points each)."""
    target = 2 ** round(np.log2(max(2 * np.sqrt(segments), 1)))
    return int(max(1, min(target, segments // TRAIN_PER_LIST)))


def exact_index(dim: int):
    """The exact structure: every query is compared with every vector."""
    import faiss

    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def approximate_index(dim: int, segments: int):
    """The approximate structure for a library of `segments`, untrained: an inverted file of float16 vectors
    (half of float32's memory; 8-bit codes, a quarter, lost ~3 points of recall@10 to their rounding: 0.967 at
    200k clustered segments where float16 gave 0.999), inner product; faiss's k-means for an inner-product
    inverted file is spherical, as the search vectors are unit length."""
    import faiss

    index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, ivf_lists(segments),
                                          faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    return search_params(index)  # (faiss's Python wrapper keeps the quantizer alive with the index)


def search_params(index):
    """Set the search-time parameters this module promises (`NPROBE`) on an index, as loaded or built."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = min(NPROBE, ivf.nlist)
    return index


def search_one(index, query: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores [top], ids [top]) of one query, on one OpenMP thread: faiss spreads even a single query over
    all threads, and on a busy 2-core machine their start-up and spin-waiting dominate (exact search at 100k
    segments measured p50 52-76 ms on 2 threads against 10.5 ms on one; the inverted file ~0.9 ms either way).
    The thread count is the calling thread's own setting, so concurrent searches do not disturb each other."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        scores, ids = index.search(np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1), top)
    finally:
        faiss.omp_set_num_threads(threads)
    return scores[0], ids[0]


def is_approximate(index) -> bool:
    import faiss

    return faiss.try_extract_index_ivf(index) is not None


@dataclass(frozen=True)
class Hit:
    video_id: int
    segment: int
    score: float


class SegmentIndex:
    """The faiss index of one model identity and embedder over one store; see the module docstring.

    `approximate_from`: segments from which the index is approximate (`APPROXIMATE_FROM`; tests lower it)."""

    def __init__(self, store: Store, fingerprint: str, embedder: str, dim: int, *,
                 approximate_from: int = APPROXIMATE_FROM):
        if approximate_from < 1:
            raise ValueError(f"approximate_from must be >= 1 segment, got {approximate_from}")
        self.store, self.fingerprint, self.embedder, self.dim = store, fingerprint, embedder, dim
        self.approximate_from = approximate_from
        folder = store.home.root / "index"
        self.path = folder / f"{fingerprint[:16]}-{embedder}.safetensors"
        self.lock_path = folder / f"{fingerprint[:16]}-{embedder}.lock"
        self.rows: dict[int, tuple[str, int]] = {}  # video id -> (uid, segments) in the index
        self.missing: list[int] = []  # ready videos without a vector file at the last sync
        self.trained = 0  # segments the approximate index was trained on; 0: the index is exact
        self._faiss = None
        self._stamp: tuple[int, int] | None = None  # (size, mtime_ns) of the file as last read or written
        self._synced_with: dict[int, tuple[str, int]] | None = None  # the ready videos the last sync saw

    @property
    def structure(self) -> str:
        return "ivf-fp16" if self.trained else "exact"

    # ---- the derived file ---------------------------------------------------------------------

    def _reset(self) -> None:
        self._faiss, self.rows, self.trained = exact_index(self.dim), {}, 0

    def _load(self) -> None:
        import faiss

        self._reset()
        if not self.path.exists():
            return
        try:
            with safe_open(str(self.path), "np") as f:
                meta = f.metadata() or {}
                blob = f.get_tensor("index")
            if meta.get("format") != INDEX_FORMAT or int(meta.get("dim", -1)) != self.dim:
                return  # another layout: rebuilt by the sync that follows
            index = search_params(faiss.deserialize_index(blob))
            rows = {int(k): (str(uid), int(n)) for k, (uid, n) in json.loads(meta["rows"]).items()}
            # no `trained` (a process of an older version rewrote the file): count from its size now
            trained = int(meta.get("trained") or index.ntotal or 1) if is_approximate(index) else 0
            self._faiss, self.rows, self.trained = index, rows, trained
            self._stamp = self._file_stamp()
        except Exception:  # noqa: BLE001 - a derived cache: unreadable means rebuild, never fail the search
            self._reset()

    def _save(self) -> None:
        import faiss

        blob = faiss.serialize_index(self._faiss)
        meta = {"format": INDEX_FORMAT, "dim": str(self.dim), "fingerprint": self.fingerprint,
                "embedder": self.embedder, "rows": json.dumps(self.rows), "structure": self.structure}
        if self.trained:
            meta["trained"] = str(self.trained)
        atomic_save(self.path, {"index": blob}, meta)
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
        """Add the ready videos the index lacks, drop those gone from the database; write if changed. Crossing
        `approximate_from`, growing `RETRAIN_GROWTH` times past the trained size, or shrinking below half the
        threshold rebuilds the index from the vector files in the structure its size calls for."""
        with self._locked():
            if rebuild:
                self._reset()
            else:
                self._load()
            want = self.ready_videos()
            gone = [vid for vid, row in self.rows.items() if want.get(vid) != row]  # removed, or another video now
            self._remove(gone)
            kept = set(self.rows)
            restructured = self._restructure_due(want)
            if restructured:
                self._build(want)
            else:
                self._add(want)
            added = len(set(self.rows) - kept)
            if rebuild or restructured or gone or added or not self.path.exists():
                self._save()
            self._synced_with = want
        return {"videos": len(self.rows), "segments": int(self._faiss.ntotal), "added": added,
                "removed": len(gone), "missing_vectors": len(self.missing), "structure": self.structure}

    def _restructure_due(self, want: dict[int, tuple[str, int]]) -> bool:
        segments = sum(n for _, n in want.values())  # the database's count: decided before reading any file
        if not self.trained:
            return segments >= self.approximate_from
        # half the threshold back to exact: a library hovering at the threshold does not flip on every sync
        return segments < self.approximate_from // 2 or segments >= RETRAIN_GROWTH * self.trained

    def _build(self, want: dict[int, tuple[str, int]]) -> None:
        """The index anew from the vector files: exact below `approximate_from`, else trained on a strided
        sample of all the vectors (read twice, sample then add, so memory stays near the index's own)."""
        self._reset()
        segments = sum(n for _, n in want.values())
        if segments >= self.approximate_from:
            stride = max(1, segments // (TRAIN_PER_LIST * ivf_lists(segments)))
            parts, seen = [], 0
            for _, _, vectors in self._vector_files(want):
                parts.append(vectors[(-seen) % stride::stride])  # every stride-th segment of the library
                seen += len(vectors)
            if seen:  # none: nothing to train on (all vector files missing), stays exact
                index = approximate_index(self.dim, seen)
                index.train(np.concatenate(parts))
                self._faiss, self.trained = index, seen
        self._add(want)

    def _vector_files(self, want: dict[int, tuple[str, int]]):
        """(video id, uid, vectors) of the wanted videos not in the index; those without usable vectors (none
        yet, or stale: --rebuild-index) are listed in `missing`."""
        self.missing = []
        for vid, (uid, segments) in sorted(want.items()):
            if vid in self.rows:
                continue
            vectors = read_vectors(self.store, uid, self.fingerprint, self.embedder)
            if vectors is None or len(vectors) != segments:
                self.missing.append(vid)
                continue
            yield vid, uid, np.ascontiguousarray(vectors, dtype=np.float32)

    def _add(self, want: dict[int, tuple[str, int]]) -> None:
        for vid, uid, vectors in self._vector_files(want):
            ids = (vid << _SEGMENT_BITS) + np.arange(len(vectors), dtype=np.int64)
            self._faiss.add_with_ids(vectors, ids)
            self.rows[vid] = (uid, len(vectors))

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
        scores, ids = search_one(self._faiss, query, min(top, self._faiss.ntotal))
        mask = (1 << _SEGMENT_BITS) - 1
        return [Hit(int(i) >> _SEGMENT_BITS, int(i) & mask, float(s))
                for s, i in zip(scores, ids, strict=True) if i >= 0]


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
