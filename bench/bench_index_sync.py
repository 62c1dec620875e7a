"""Keeping the search index in step as a large library grows: one-hour videos added one at a time, the file
rewritten on every change (as before) against the file left alone until what it lacks passes
`store.index.REWRITE_SHARE` / `RECENT_MAX` (searches read the rest from a side index), side by side.

    python bench/bench_index_sync.py                                  # 1M segments, 6 one-hour videos added
    python bench/bench_index_sync.py --segments 200000 --add 4        # quick

Time here (2 cores): 1M segments ~15 min (making the store ~10-12 min, the first sync's k-means ~1 min); 200k ~2 min.

A real store (SQLite, tiny caches) holds `--segments` rows as videos of `--base-video` segments with search vector
files (the `mixture` vectors of bench/bench_index_scale.py, 384 dimensions); the first sync builds the index the
library's size calls for (approximate past 100k: trained, the slow part of the set-up). Then, per policy, from
the same index file: `--add` one-hour videos (1,800 segments), each followed by the sync an ingest run makes at its
end (a fresh `SegmentIndex`, as each `python -m ingest` run has); per sync its wall time and the bytes it wrote.
Last, a fresh `SegmentIndex` (another process: the app) times its first search (loading the file, plus the side
index of what it lacks; best of 3) and then the p50 of 50 searches. Also: listing the library
(`Store.list_videos`) against the grouped count of every segment row it ran before. Prints a table, then one JSON
line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_index_scale import DIM, Vectors  # noqa: E402
from bench.common import machine  # noqa: E402
from store import ModelInfo, ProbeRecord, SegmentRecord, Store, VideoKey  # noqa: E402
from store.claims import new_owner  # noqa: E402
from store.index import RECENT_MAX, REWRITE_SHARE, SegmentIndex  # noqa: E402
from store.search_vectors import write_vectors  # noqa: E402
from voco.cache import SegmentCache  # noqa: E402

FP, EMBEDDER, HOUR = "b" * 64, "bench-emb", 1800


def add_video(store: Store, serial: int, vectors: np.ndarray) -> int:
    """A ready video of len(vectors) tiny caches and its vector file; its id."""
    model_id = store.register_model(ModelInfo(FP, "bench", "voco", 1, {"k": 1}))
    owner, n = new_owner(), len(vectors)
    claim = store.claim(VideoKey(f"{serial:064x}", model_id, 2.0, 1, 0), fingerprint=FP, path=f"/v{serial}.mp4",
                        size=1, owner=owner)
    store.set_probe(claim, owner, ProbeRecord(n, 1.0, n, 8, 8, 0, n))
    cache = SegmentCache(torch.zeros(1, 2, 1, 1, 4), 2, FP, "voco")
    store.add_chunk(claim, owner, [SegmentRecord(i, 2.0 * i, 2.0 * i + 2) for i in range(n)], [cache] * n)
    store.finish(claim, owner)
    write_vectors(store, store.get_video(claim.video_id).uid, FP, EMBEDDER, vectors)
    return claim.video_id


def grow(store: Store, policy: dict, vectors: Vectors, serial: int, count: int) -> tuple[list[dict], list[int]]:
    """Add `count` one-hour videos, each followed by an ingest run's sync; per sync its seconds and bytes written."""
    rows, ids = [], []
    rng = np.random.default_rng([7, serial])
    for i in range(count):
        ids.append(add_video(store, serial + i, vectors.draw(rng, HOUR)))
        index = SegmentIndex(store, FP, EMBEDDER, DIM, **policy)
        before = index.path.stat().st_mtime_ns
        start = time.perf_counter()
        report = index.sync()
        seconds = time.perf_counter() - start
        written = index.path.stat().st_size if index.path.stat().st_mtime_ns != before else 0
        rows.append({"sync_s": seconds, "written_mb": written / 1e6, "unwritten": report["unwritten_segments"]})
    return rows, ids


def searches(store: Store, policy: dict, queries: np.ndarray) -> dict:
    """A fresh process's first search (best of 3 fresh indexes: loading ~780 MB at 1M varies with the page cache),
    then the p50 of the rest of `queries` on the last one (seconds, ms)."""
    firsts = []
    for _ in range(3):
        fresh = SegmentIndex(store, FP, EMBEDDER, DIM, **policy)
        start = time.perf_counter()
        fresh.search(queries[0], top=10)
        firsts.append(time.perf_counter() - start)
    times = []
    for query in queries[1:]:
        start = time.perf_counter()
        fresh.search(query, top=10)
        times.append(time.perf_counter() - start)
    return {"first_search_s": min(firsts), "first_searches_s": firsts, "search_p50_ms": 1000 * statistics.median(times)}


def listing_ms(store: Store) -> dict:
    """Best of 3: listing the library now (a ready video's count is its length) and counting every video's segment
    rows as the listing did before (the grouped count it joined), in ms."""
    from sqlalchemy import func, select

    from store.models import Segment

    def best(fn) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return 1000 * min(times)

    def count_all() -> None:
        with store.read() as s:
            s.execute(select(Segment.video_id, func.count(Segment.id)).group_by(Segment.video_id)).all()

    return {"list_videos_ms": best(store.list_videos), "count_every_segment_ms": best(count_all),
            "ready_rows_ms": best(lambda: store.ready_rows(FP))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--segments", type=int, default=1_000_000, help="segments in the library before the additions")
    p.add_argument("--base-video", type=int, default=50_000, help="segments per video of the starting library")
    p.add_argument("--add", type=int, default=6, help="one-hour videos added, one sync after each")
    args = p.parse_args(argv)
    if args.segments < args.base_video or args.add < 1:
        p.error("--segments must hold at least one --base-video, and --add must be >= 1")
    vectors = Vectors("mixture", args.segments, DIM, seed=0, clusters=1000, spread=0.55)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_sync_") as tmp, Store(Path(tmp) / "home") as store:
        start = time.perf_counter()
        serial = 0
        for _, rows in vectors.chunks():
            for part in range(0, len(rows), args.base_video):
                add_video(store, serial, rows[part : part + args.base_video])
                serial += 1
        made_s = time.perf_counter() - start
        start = time.perf_counter()
        base = SegmentIndex(store, FP, EMBEDDER, DIM)
        built = base.sync()
        build_s = time.perf_counter() - start
        listing = listing_ms(store)
        saved = Path(tmp) / "base.index"
        shutil.copy2(base.path, saved)
        queries = vectors.draw(np.random.default_rng(3), 51)
        policies = {"every change": {"rewrite_share": 0.0, "recent_max": 0},
                    f"past {REWRITE_SHARE:g} or {RECENT_MAX:,}": {}}
        for name, policy in policies.items():
            shutil.copy2(saved, base.path)  # the same starting file for both policies
            syncs, added = grow(store, policy, vectors, 10_000 + serial, args.add)
            results[name] = {"syncs": syncs, **searches(store, policy, queries)}
            for vid in added:  # back to the starting library for the next policy
                store.remove(vid)
            serial += args.add
    print(f"library {args.segments:,} segments ({built['structure']}; made {made_s:.0f} s, first sync {build_s:.0f} s),"
          f" {args.add} one-hour videos added one sync each")
    print("| file written | ingest's sync p50 / max | MB written per sync (mean) | unwritten at the end | "
          "fresh first search | search p50 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        s = [x["sync_s"] for x in r["syncs"]]
        mb = statistics.mean(x["written_mb"] for x in r["syncs"])
        print(f"| {name} | {statistics.median(s):.2f} / {max(s):.2f} s | {mb:.0f} | {r['syncs'][-1]['unwritten']:,}"
              f" | {r['first_search_s']:.2f} s | {r['search_p50_ms']:.1f} ms |")
    print(f"listing the library: {listing['list_videos_ms']:.1f} ms (the grouped count of every segment row it ran "
          f"before: {listing['count_every_segment_ms']:.1f} ms); an index's ready rows: "
          f"{listing['ready_rows_ms']:.1f} ms")
    print(json.dumps({"bench": "index_sync", "segments": args.segments, "structure": built["structure"],
                      "added_videos": args.add, "results": results, "listing": listing, "machine": machine()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
