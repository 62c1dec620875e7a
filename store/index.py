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
from there on: an inverted file with float16 vectors (store/index_structures.py), trained
on the vectors present when the library crosses the threshold and trained again, from the vector files, whenever
it has grown `RETRAIN_GROWTH` times past the size it was trained at (the file's metadata records that size as
`trained`); a library that shrinks below half the threshold becomes exact again. Both structures take
`add_with_ids` and `remove_ids(IDSelectorRange)`, so the incremental sync is the same for both. Figures:
bench/bench_index_scale.py.

The file may lack the newest videos. A sync reads the file's header (its row set), not the index: it rewrites the
file when a video it holds is gone from the database (a removed video's vectors leave the disk at once), when the
videos it lacks pass `REWRITE_SHARE` of it or `RECENT_MAX` segments, or when the structure is due to change, and
otherwise leaves it alone, so ingesting one more hour into a 1M-segment library no longer rewrites ~780 MB.
A searcher loads the file and reads the videos it lacks from their vector files into a small exact side index,
and searches both. Restructuring (crossing the threshold, retraining) happens in the syncs ingest and
--rebuild-index run, never in a search's own: no question waits for k-means. Figures: bench/bench_index_sync.py.
"""

from __future__ import annotations

import fcntl
import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from safetensors import safe_open

from store.index_structures import (
    TRAIN_PER_LIST,
    approximate_index,
    exact_index,
    ivf_lists,
    search_one,
    search_params,
)
from store.search_vectors import atomic_save, read_vectors, vector_count, vectors_path
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
REWRITE_SHARE = 0.1
"""A sync that only adds rewrites the file once the ready videos it lacks pass this share of the segments it holds
(or `RECENT_MAX`): a growing library rewrites it about every 10% of growth, not on every ingest run (at 1M
segments each rewrite is ~780 MB and several seconds here; bench/bench_index_sync.py)."""
RECENT_MAX = 20_000
"""...or pass this many segments (~11 hours of video at 2 s a segment): searches read the videos the file lacks
from an exact side index built from their vector files, every vector of it per query (~2 ms at 20k here)."""


@dataclass(frozen=True)
class Hit:
    video_id: int
    segment: int
    score: float


class SegmentIndex:
    """The faiss index of one model identity and embedder over one store; see the module docstring.

    approximate_from: segments from which the index is approximate (`APPROXIMATE_FROM`; tests lower it);
    rewrite_share, recent_max: when a sync that only adds rewrites the file (`REWRITE_SHARE`, `RECENT_MAX`; 0 / 0:
    on every change, as before they existed)."""

    def __init__(self, store: Store, fingerprint: str, embedder: str, dim: int, *,
                 approximate_from: int = APPROXIMATE_FROM, rewrite_share: float = REWRITE_SHARE,
                 recent_max: int = RECENT_MAX):
        if approximate_from < 1:
            raise ValueError(f"approximate_from must be >= 1 segment, got {approximate_from}")
        if not rewrite_share >= 0 or recent_max < 0:
            raise ValueError(f"rewrite_share and recent_max must be >= 0 (0: write the file on every change), got "
                             f"{rewrite_share} and {recent_max}")
        self.store, self.fingerprint, self.embedder, self.dim = store, fingerprint, embedder, dim
        self.approximate_from, self.rewrite_share, self.recent_max = approximate_from, rewrite_share, recent_max
        folder = store.home.root / "index"
        self.path = folder / f"{fingerprint[:16]}-{embedder}.safetensors"
        self.lock_path = folder / f"{fingerprint[:16]}-{embedder}.lock"
        self.written: dict[int, tuple[str, int]] = {}  # video id -> (uid, segments): the rows the file holds
        self.trained = 0  # segments the file's approximate index was trained on; 0: it is exact
        self.base_rows: dict[int, tuple[str, int]] = {}  # rows of `_faiss` (the file's, less any gone since)
        self.recent_rows: dict[int, tuple[str, int]] = {}  # rows of `_recent` (ready videos the file lacks)
        self.missing: list[int] = []  # ready videos without a vector file at the last sync
        self._faiss = None  # the file's index, loaded for searching (None: not loaded)
        self._recent = exact_index(dim)
        self._stamp: tuple[int, int] | None = None  # (size, mtime_ns) of the file `_faiss` was read from or written to
        self._covered: dict[int, tuple[str, int]] | None = None  # the rows the last sync left searchable
        self._synced_with: dict[int, tuple[str, int]] | None = None  # the ready videos the last sync saw
        self._searched_with: dict[int, tuple[str, int]] | None = None  # ... and the last refresh of memory
        self._waiting: dict[int, tuple[int, int] | None] = {}  # ready videos not searchable yet: their vector file's
        # stamp at the last refresh (a search refreshes when one appears or changes: ingest writes it after `finish`)
        self._memory = threading.RLock()  # one thread at a time reads or changes this instance's faiss indexes

    @property
    def structure(self) -> str:
        return "ivf-fp16" if self.trained else "exact"

    @property
    def rows(self) -> dict[int, tuple[str, int]]:
        """Every row a search reads: the loaded file's and the side index's."""
        return {**self.base_rows, **self.recent_rows}

    # ---- the derived file ---------------------------------------------------------------------

    def _read_header(self) -> bool:
        """`written` and `trained` from the file's header (the index itself is not read); False without a file of
        this layout (missing, unreadable, another format or dimension)."""
        self.written, self.trained = {}, 0
        if not self.path.exists():
            return False
        try:
            with safe_open(str(self.path), "np") as f:
                meta = f.metadata() or {}
            if meta.get("format") != INDEX_FORMAT or int(meta.get("dim", -1)) != self.dim:
                return False  # another layout: rebuilt by this sync
            rows = {int(k): (str(uid), int(n)) for k, (uid, n) in json.loads(meta["rows"]).items()}
            approximate = meta.get("structure") == "ivf-fp16"
            # no `trained` (written by an older version): count from its size now
            self.written = rows
            self.trained = int(meta.get("trained") or sum(n for _, n in rows.values()) or 1) if approximate else 0
        except Exception:  # noqa: BLE001 - a derived cache: unreadable means rebuild, never fail the search
            self.written, self.trained = {}, 0
            return False
        return True

    def _load(self) -> bool:
        """The file's index into memory (`_faiss`, `base_rows`); False (an empty exact index) without a usable file."""
        import faiss

        self._forget_recent()
        self._faiss, self.base_rows, self._stamp = exact_index(self.dim), {}, self._file_stamp()
        if not self._read_header():
            return False
        try:
            with safe_open(str(self.path), "np") as f:
                blob = f.get_tensor("index")
            self._faiss, self.base_rows = search_params(faiss.deserialize_index(blob)), dict(self.written)
        except Exception:  # noqa: BLE001 - as in _read_header
            self.written, self.trained = {}, 0
            return False
        return True

    def _save(self) -> None:
        import faiss

        blob = faiss.serialize_index(self._faiss)
        meta = {"format": INDEX_FORMAT, "dim": str(self.dim), "fingerprint": self.fingerprint,
                "embedder": self.embedder, "rows": json.dumps(self.base_rows), "structure": self.structure}
        if self.trained:
            meta["trained"] = str(self.trained)
        atomic_save(self.path, {"index": blob}, meta)
        self._stamp, self.written = self._file_stamp(), dict(self.base_rows)

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

    # ---- keeping the file in step with the database -------------------------------------------

    def ready_videos(self) -> dict[int, tuple[str, int]]:
        """The database's ready videos of this model: id -> (uid, segments)."""
        return self.store.ready_rows(self.fingerprint)

    def sync(self, *, rebuild: bool = False, restructure: bool = True) -> dict[str, int]:
        """Bring the file in step with the database's ready videos (see the module docstring): rebuilt when asked,
        missing or (with `restructure`) due for another structure; rewritten when a video it holds went or the
        videos it lacks passed `_rewrite_due`; else untouched, its header the only part read."""
        with self._memory, self._locked():
            return self._sync(rebuild, restructure)

    def _sync(self, rebuild: bool, restructure: bool) -> dict[str, int]:
        want = self.ready_videos()
        usable = self._read_header()
        before = self._covered if self._covered is not None else dict(self.written)
        gone = [vid for vid, row in self.written.items() if want.get(vid) != row]  # removed, or another video now
        lacking = self._lacking(want)
        written = True
        if rebuild or not usable or (restructure and self._restructure_due(want)):
            self._build(want, approximate=restructure)
        elif gone or self._rewrite_due(lacking):
            if self._load():
                self._remove_base([vid for vid in gone if vid in self.base_rows])
                self._add_base(lacking)
            else:  # the file went bad since its header was read
                self._build(want, approximate=restructure)
        else:
            written = False
        if written:
            self._save()
            lacking = self._lacking(want)  # what the file lacks now (vectors missing): searches read the rest
        self._synced_with, self._covered = want, {**self.written, **lacking}
        unwritten = sum(n for _, n in lacking.values())
        return {"videos": len(self._covered), "segments": sum(n for _, n in self._covered.values()),
                "added": sum(before.get(vid) != row for vid, row in self._covered.items()),
                "removed": sum(self._covered.get(vid) != row for vid, row in before.items()),
                "missing_vectors": len(self.missing), "structure": self.structure, "unwritten_segments": unwritten}

    def _lacking(self, want: dict[int, tuple[str, int]]) -> dict[int, tuple[str, int]]:
        """Ready videos the file does not hold whose vector file has one vector per segment (its header says); the
        rest (none yet, or a live video's file cut short: --rebuild-index) are listed in `missing`."""
        out, self.missing = {}, []
        for vid, row in want.items():
            if self.written.get(vid) == row:
                continue
            if vector_count(self.store, row[0], self.fingerprint, self.embedder) == row[1]:
                out[vid] = row
            else:
                self.missing.append(vid)
        return out

    def _rewrite_due(self, lacking: dict[int, tuple[str, int]]) -> bool:
        """The videos the file lacks exceed `rewrite_share` of its segments or `recent_max` segments (every search
        reads them from an exact side index: ~2 ms per query at 20k)."""
        unwritten = sum(n for _, n in lacking.values())
        held = sum(n for _, n in self.written.values())
        return unwritten > 0 and (unwritten > self.rewrite_share * held or unwritten > self.recent_max)

    def _restructure_due(self, want: dict[int, tuple[str, int]]) -> bool:
        segments = sum(n for _, n in want.values())  # the database's count: decided before reading any file
        if not self.trained:
            return segments >= self.approximate_from
        # half the threshold back to exact: a library hovering at the threshold does not flip on every sync
        return segments < self.approximate_from // 2 or segments >= RETRAIN_GROWTH * self.trained

    def _build(self, want: dict[int, tuple[str, int]], *, approximate: bool) -> None:
        """The index anew from the vector files: exact below `approximate_from` (or without `approximate`: a
        search never waits for k-means), else trained on a strided sample of all the vectors (read twice, sample
        then add, so memory stays near the index's own)."""
        self._forget_recent()
        self._faiss, self.base_rows, self.trained = exact_index(self.dim), {}, 0
        segments = sum(n for _, n in want.values())
        if approximate and segments >= self.approximate_from:
            stride = max(1, segments // (TRAIN_PER_LIST * ivf_lists(segments)))
            parts, seen = [], 0
            for _, _, vectors in self._vector_files(want):
                parts.append(vectors[(-seen) % stride::stride])  # every stride-th segment of the library
                seen += len(vectors)
            if seen:  # none: nothing to train on (all vector files missing), stays exact
                index = approximate_index(self.dim, seen)
                index.train(np.concatenate(parts))
                self._faiss, self.trained = index, seen
        self._add_base(want)

    def _vector_files(self, want: dict[int, tuple[str, int]]):
        """(video id, uid, vectors) of `want`'s videos whose vector file is usable (right length)."""
        for vid, (uid, segments) in sorted(want.items()):
            vectors = read_vectors(self.store, uid, self.fingerprint, self.embedder)
            if vectors is not None and len(vectors) == segments:  # else stale: --rebuild-index recomputes it
                yield vid, uid, np.ascontiguousarray(vectors, dtype=np.float32)

    def _add_base(self, want: dict[int, tuple[str, int]]) -> None:
        _add(self._faiss, self.base_rows, self._vector_files(want))

    def _remove_base(self, video_ids) -> None:
        _remove(self._faiss, self.base_rows, video_ids)

    def drop(self, video_ids: list[int]) -> bool:
        """Remove these videos' rows from the file now (ingest --remove); True when the file changed."""
        with self._memory, self._locked():
            self._read_header()  # a store has an index per model and embedder: most hold none of these videos
            if not any(vid in self.written for vid in video_ids):
                return False
            self._load()
            gone = [vid for vid in video_ids if vid in self.base_rows]
            self._remove_base(gone)
            if gone:
                self._save()
        return bool(gone)

    # ---- searching ----------------------------------------------------------------------------

    def _forget_recent(self) -> None:
        """Empty the side index: `_faiss` is being replaced, and the next search rebuilds what the new one lacks."""
        self._recent, self.recent_rows, self._searched_with = exact_index(self.dim), {}, None

    def _refresh(self, want: dict[int, tuple[str, int]]) -> None:
        """Memory in step with `want`: the file's index (read again when another process wrote it) without the
        videos gone since, and an exact side index of the ready videos it lacks, from their vector files."""
        if self._faiss is None or self._stamp != self._file_stamp():
            self._load()
        self._remove_base([vid for vid, row in self.base_rows.items() if want.get(vid) != row])
        recent = {vid: row for vid, row in want.items() if self.base_rows.get(vid) != row}
        if any(recent.get(vid) != row for vid, row in self.recent_rows.items()):  # went, or now in the file
            self._recent, self.recent_rows = exact_index(self.dim), {}
        _add(self._recent, self.recent_rows,
             self._vector_files({vid: row for vid, row in recent.items() if vid not in self.recent_rows}))
        self._waiting = {vid: self._vector_stamp(row) for vid, row in recent.items() if vid not in self.recent_rows}
        self._searched_with = want

    def _vector_stamp(self, row: tuple[str, int]) -> tuple[int, int] | None:
        try:
            st = vectors_path(self.store, row[0], self.fingerprint, self.embedder).stat()
        except FileNotFoundError:
            return None
        return st.st_size, st.st_mtime_ns

    def _stale(self, want: dict[int, tuple[str, int]]) -> bool:
        """Memory lags: first use, another process wrote the file, the library changed, or a ready video's vector
        file appeared or changed since the last refresh (not merely: one still lacks vectors, which would re-read
        every vector file on every search)."""
        return (self._faiss is None or self._stamp != self._file_stamp() or self._searched_with != want
                or any(self._vector_stamp(want[vid]) != stamp for vid, stamp in self._waiting.items()))

    def search(self, query: np.ndarray, top: int = 10) -> list[Hit]:
        """The `top` segments of the library with the highest inner product with `query` [dim]."""
        want = self.ready_videos()
        with self._memory:
            if self._stale(want):
                with self._locked():
                    self._sync(rebuild=False, restructure=False)
                    self._refresh(self._synced_with)
            found = [(s, i) for index in (self._faiss, self._recent) if index.ntotal
                     for s, i in zip(*search_one(index, query, min(top, index.ntotal)), strict=True) if i >= 0]
        mask = (1 << _SEGMENT_BITS) - 1
        return [Hit(int(i) >> _SEGMENT_BITS, int(i) & mask, float(s)) for s, i in sorted(found, reverse=True)[:top]]


def _add(index, rows: dict[int, tuple[str, int]], vector_files) -> None:
    for vid, uid, vectors in vector_files:
        index.add_with_ids(vectors, (vid << _SEGMENT_BITS) + np.arange(len(vectors), dtype=np.int64))
        rows[vid] = (uid, len(vectors))


def _remove(index, rows: dict[int, tuple[str, int]], video_ids) -> None:
    import faiss

    for vid in list(video_ids):
        index.remove_ids(faiss.IDSelectorRange(vid << _SEGMENT_BITS, (vid + 1) << _SEGMENT_BITS))
        del rows[vid]


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
