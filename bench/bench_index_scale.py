"""Search index at library scale: exact vs the approximate structure store/index.py switches to, side by side.

    python bench/bench_index_scale.py                                  # 100k and 1M segments, mixture + uniform
    python bench/bench_index_scale.py --sizes 100000,1000000,5000000   # 5M too (no exact index built there)
    python bench/bench_index_scale.py --sizes 20000 --data mixture --queries 50   # quick
    python bench/bench_index_scale.py --sizes 200000 --also "IVF1024,Flat" "HNSW32" --params nprobe=16 efSearch=64

Vectors (synthetic; the dimension is the default model's search embedder's, `concept-minilm`: 384):
- `mixture`: L2-normalised draws from a Gaussian mixture shaped like sentence-embedding search vectors: unit
  vectors share one common direction (real MiniLM vectors of a library have mean pairwise cosine ~0.5), sit
  around `--clusters` centres with Zipf-distributed popularity (a few common scene kinds, many rare ones), at a
  spread that gives ~0.8 cosine within a cluster. A model of real vectors, not real vectors.
- `uniform`: L2-normalised isotropic Gaussian draws (uniform on the sphere): no structure for an inverted file to
  use, the worst case.
Queries (`--queries` of each kind): `near` = a stored vector plus noise (what a query that matches a stored moment
looks like), `fresh` = new draws from the same distribution. Ground truth is exact top-10 inner product, computed
in chunks with numpy over the regenerated vectors (so 5M never needs the exact index in memory).

Per size and data: build time (exact: add; approximate: train + add), recall@10 against the exact top 10,
`near_row_first` (how often a near query's own stored row is the first hit), p50/p95 latency of one single-vector
search as the app makes it (store.index_structures.search_one: one thread), serialized bytes per segment (vectors, ids,
centroids). `exact` is skipped above
`--exact-max` segments (its latency grows linearly: 1.5 KB per segment read per query). Vectors are made in
chunks of 100k, so memory stays near the indexes' own size. Prints a table, then one JSON line.

Time on the 2-core machine, busy (load average 6-9): the default run 6 min (100k: 30 s; 1M: ~2.7 min per kind of
data); `--sizes 5000000 --data mixture` 18.5 min (training 4096 lists 3.3 min, adding 5M 7.6 min), 5 GB of memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DIM = 384  # all-MiniLM-L6-v2, the text side of the default model's `concept-minilm` embedder (voco/search.py)
CHUNK = 100_000
TOP = 10


class Vectors:
    """Deterministic synthetic vectors, made chunk by chunk (the same chunk always gives the same rows)."""

    def __init__(self, kind: str, n: int, dim: int, seed: int, clusters: int, spread: float):
        if kind not in ("mixture", "uniform"):
            raise ValueError(f"unknown --data {kind!r}: mixture or uniform")
        self.kind, self.n, self.dim, self.seed, self.spread = kind, n, dim, seed, spread
        rng = np.random.default_rng([seed, 0])
        common = _unit(rng.standard_normal(dim))
        self.centres = _unit(common + rng.standard_normal((clusters, dim)) / np.sqrt(dim)).astype(np.float32)
        weights = 1.0 / np.arange(1, clusters + 1)  # Zipf: popularity of scene kinds
        self.weights = weights / weights.sum()

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        noise = rng.standard_normal((n, self.dim), dtype=np.float32) / np.float32(np.sqrt(self.dim))
        if self.kind == "uniform":
            return _unit(noise)
        labels = rng.choice(len(self.centres), size=n, p=self.weights)
        return _unit(self.centres[labels] + np.float32(self.spread) * noise)

    def chunks(self, stride: int = 1):
        """(first row, rows[::stride]) per chunk of CHUNK rows."""
        for c, start in enumerate(range(0, self.n, CHUNK)):
            rows = self.draw(np.random.default_rng([self.seed, 1, c]), min(CHUNK, self.n - start))
            yield start, rows[::stride]

    def queries(self, count: int) -> dict[str, np.ndarray]:
        """`near` (stored rows `picks` plus noise: cosine ~0.96 to their row), `fresh`, and `picks`."""
        rng = np.random.default_rng([self.seed, 2])
        picks = np.sort(rng.choice(self.n, size=count, replace=False))
        stored = np.concatenate([rows[(picks[(picks >= s) & (picks < s + len(rows))] - s)]
                                 for s, rows in self.chunks()])
        near = _unit(stored + 0.3 * rng.standard_normal(stored.shape, dtype=np.float32) / np.sqrt(self.dim))
        return {"near": near.astype(np.float32), "fresh": self.draw(rng, count), "picks": picks}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class GroundTruth:
    """Exact top-10 ids by inner product [Q, TOP] of `queries`, merged chunk by chunk as the chunks pass."""

    def __init__(self, queries: np.ndarray):
        self.queries = queries
        self.scores = np.full((len(queries), TOP), -np.inf, np.float32)
        self.ids = np.zeros((len(queries), TOP), np.int64)

    def update(self, start: int, rows: np.ndarray) -> None:
        s = np.concatenate([self.scores, self.queries @ rows.T], axis=1)
        ids = np.broadcast_to(np.arange(start, start + len(rows)), (len(self.queries), len(rows)))
        i = np.concatenate([self.ids, ids], axis=1)
        top = np.argpartition(-s, TOP, axis=1)[:, :TOP]
        self.scores, self.ids = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)


class Candidate:
    """One index under test: how it is made, its training and add times."""

    def __init__(self, name: str, index, params: str = ""):
        import faiss

        self.name, self.index, self.train_s, self.add_s = name, index, 0.0, 0.0
        if params:
            faiss.ParameterSpace().set_index_parameters(index, params)
            self.name += f" [{params}]"

    def train(self, sample: np.ndarray) -> None:
        if not self.index.is_trained:
            start = time.perf_counter()
            self.index.train(sample)
            self.train_s = time.perf_counter() - start

    def add(self, start: int, rows: np.ndarray) -> None:
        t = time.perf_counter()
        self.index.add_with_ids(rows, np.arange(start, start + len(rows), dtype=np.int64))
        self.add_s += time.perf_counter() - t


def candidates(n: int, args) -> list[Candidate]:
    """Exact (up to --exact-max), the product's approximate structure, and any --also factory strings."""
    import faiss

    from store.index_structures import NPROBE, approximate_index, exact_index

    out = [Candidate("exact", exact_index(args.dim))] if n <= args.exact_max else []
    approx = approximate_index(args.dim, n)
    out.append(Candidate(f"ivf-fp16 (lists {approx.nlist}, nprobe {approx.nprobe} of NPROBE {NPROBE})", approx))
    for i, spec in enumerate(args.also):
        index = faiss.index_factory(args.dim, spec, faiss.METRIC_INNER_PRODUCT)
        out.append(Candidate(spec, index, args.params[i] if i < len(args.params) else ""))
    return out


def serialized_bytes(index) -> int:
    """What faiss.serialize_index would return, counted as it is written (no second copy of a big index)."""
    import faiss

    total = 0

    def count(chunk: bytes) -> int:
        nonlocal total
        total += len(chunk)
        return len(chunk)

    writer = faiss.PyCallbackIOWriter(count)
    faiss.write_index(index, writer)
    del writer  # flushes
    return total


def latencies_and_hits(index, queries: np.ndarray) -> tuple[list[float], np.ndarray]:
    """One query at a time, as the app searches (store.index_structures.search_one): seconds per query, ids [Q, TOP]."""
    from store.index_structures import search_one

    times, ids = [], []
    for q in queries:
        start = time.perf_counter()
        _, found = search_one(index, q, TOP)
        times.append(time.perf_counter() - start)
        ids.append(found)
    return times, np.stack(ids)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / TOP for f, t in zip(found, truth, strict=True)]))


def run_one(n: int, kind: str, args) -> list[dict]:
    """All candidates at one size and kind of data: two passes over the vectors (training sample, then add +
    ground truth)."""
    from store.index_structures import TRAIN_PER_LIST, ivf_lists

    begin = time.perf_counter()
    vectors = Vectors(kind, n, args.dim, args.seed, args.clusters, args.spread)
    queries = vectors.queries(args.queries)
    stride = max(1, n // (TRAIN_PER_LIST * ivf_lists(n)))  # the sample store/index.py trains on
    sample = np.concatenate([rows for _, rows in vectors.chunks(stride)])
    tested = candidates(n, args)
    for c in tested:
        c.train(sample)
    del sample
    truth = GroundTruth(np.concatenate([queries["near"], queries["fresh"]]))
    for start, rows in vectors.chunks():
        truth.update(start, rows)
        for c in tested:
            c.add(start, rows)
    out = []
    for c in tested:
        times, found = latencies_and_hits(c.index, truth.queries)
        q = args.queries
        out.append({"segments": n, "data": kind, "index": c.name, "train_s": round(c.train_s, 1),
                    "build_s": round(c.train_s + c.add_s, 1),
                    "recall@10_near": round(recall(found[:q], truth.ids[:q]), 4),
                    "recall@10_fresh": round(recall(found[q:], truth.ids[q:]), 4),
                    "near_row_first": round(float(np.mean(found[:q, 0] == queries["picks"])), 4),
                    "p50_ms": round(float(np.percentile(times, 50)) * 1e3, 2),
                    "p95_ms": round(float(np.percentile(times, 95)) * 1e3, 2),
                    "bytes_per_segment": round(serialized_bytes(c.index) / n, 1)})
        c.index = None  # free before the next one is measured
    for row in out:
        row["wall_s"] = round(time.perf_counter() - begin, 1)  # the whole size + data, all candidates
    return out


def table(rows: list[dict]) -> str:
    cols = ["segments", "data", "index", "build_s", "recall@10_near", "recall@10_fresh", "near_row_first",
            "p50_ms", "p95_ms", "bytes_per_segment"]
    lines = [" | ".join(cols)]
    lines += [" | ".join(str(r[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def machine() -> dict:
    import faiss

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "faiss": faiss.__version__,
            "faiss_threads": faiss.omp_get_max_threads(), "load_average_1min": round(os.getloadavg()[0], 2),
            "python": platform.python_version()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,1000000", help="segments, comma-separated")
    p.add_argument("--data", default="mixture,uniform", help="mixture and/or uniform, comma-separated")
    p.add_argument("--queries", type=int, default=200, help="of each kind (near, fresh)")
    p.add_argument("--dim", type=int, default=DIM)
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--spread", type=float, default=0.5, help="mixture noise (cosine to the centre ~ 1/sqrt(1+s^2))")
    p.add_argument("--exact-max", type=int, default=1_000_000, help="no exact index above this many segments")
    p.add_argument("--also", nargs="*", default=[], help="faiss index_factory strings to measure beside")
    p.add_argument("--params", nargs="*", default=[], help="faiss ParameterSpace strings, one per --also")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    rows = []
    for n in sizes:
        for kind in args.data.split(","):
            new = run_one(n, kind, args)
            print("\n".join(table(new).splitlines()[1:]), file=sys.stderr, flush=True)  # progress
            rows += new
    print(table(rows))
    print(json.dumps({"bench": "index_scale", "dim": args.dim, "queries": args.queries, "clusters": args.clusters,
                      "spread": args.spread, "rows": rows, "machine": machine()}))


if __name__ == "__main__":
    main()
