"""The two faiss structures of a search index (store/index.py) and how one query searches them.

Exact: `IndexIDMap2(IndexFlatIP)`, every query reads every vector. Approximate: an inverted file of float16 vectors
(`IndexIVFScalarQuantizer`, inner product) with `ivf_lists` lists, `NPROBE` of them scanned per query. Figures:
bench/bench_index_scale.py.
"""

from __future__ import annotations

import numpy as np

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
