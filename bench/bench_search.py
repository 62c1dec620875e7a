"""Segment search: recall of a needle segment, and faiss latency / build time / bytes at library scale.

    python bench/bench_search.py                         # bundled synthetic model, 512 distractors, 100k random vectors
    python bench/bench_search.py --distractors 128 --needles 8 --scale 10000   # quick
    python bench/bench_search.py --hard --scale 1000     # distractors share the needle's shape or colour

Recall: a pool of distractor segments (plain backgrounds or a non-red non-circle shape, voco/data/needle.py)
and of needle segments (a red circle) is compressed once; caches are position-free, so a "video" of T
segments is any T-1 distractors plus one needle. For each T and needle: the needle's rank among the T
segments for the question, with the search vector of voco/search.py (`voco-keys`: the <voco> tokens'
un-rotated keys vs the question's un-rotated queries at one layer) and with a baseline (mean projected
vision embedding vs mean LM token embedding of the question). Scale: `--scale` random vectors of the
embedder's dimension in the index type store/index.py uses (IndexIDMap2 over IndexFlatIP): build time,
serialize+load time (what a process pays on its first search), search p50/p95 (one query), bytes per segment.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_model, machine  # noqa: E402
from voco.data.needle import NEEDLE, draw_segment  # noqa: E402
from voco.data.world import OBJECT_COLORS, SHAPES  # noqa: E402
from voco.search import VisionMeanEmbedder, VoCoKeyEmbedder  # noqa: E402

QUERIES = ("is there a red circle?", "a red circle")


def pools(model, distractors: int, needles: int, seed: int, hard: bool) -> tuple[list, list]:
    """Distractors: half plain, half another shape in another colour; `hard`: half of those a red
    non-circle or a non-red circle (the needle's colour or shape, never both)."""
    rng = np.random.default_rng(seed)
    fps, size = model.voco.frames_per_segment, 96
    shapes = [s for s in SHAPES if s != NEEDLE[0]]
    colors = [c for c in OBJECT_COLORS if c != NEEDLE[1]]

    def distractor():
        if rng.random() < 0.5:
            return None
        shape, color = shapes[rng.integers(len(shapes))], colors[rng.integers(len(colors))]
        if hard and rng.random() < 0.5:
            return (NEEDLE[0], color) if rng.random() < 0.5 else (shape, NEEDLE[1])
        return shape, color

    hay = [draw_segment(rng, fps, size, distractor()) for _ in range(distractors)]
    return hay, [draw_segment(rng, fps, size, NEEDLE) for _ in range(needles)]


def recall(model, args) -> dict:
    hay, needles = pools(model, args.distractors, args.needles, args.seed, args.hard)
    keys, vision = VoCoKeyEmbedder(model, args.layer), VisionMeanEmbedder(model)
    start = time.perf_counter()
    caches = model.compress(hay + needles, batch_size=32)
    compress_s = time.perf_counter() - start
    start = time.perf_counter()
    key_vecs = keys.segment_vectors(caches)
    vectors_ms = (time.perf_counter() - start) / len(caches) * 1e3
    segments = hay + needles
    vision_vecs = np.concatenate([vision.frame_vectors(segments[i:i + 32]) for i in range(0, len(segments), 32)])
    rng = np.random.default_rng(args.seed + 1)
    out: dict = {"signal": keys.name, "layer": keys.layer, "compress_ms_per_segment": round(compress_s / len(caches)
                 * 1e3, 1), "vector_ms_per_segment": round(vectors_ms, 3)}
    for name, embedder, vecs in (("voco_keys", keys, key_vecs), ("vision_mean", vision, vision_vecs)):
        for q_i, question in enumerate(QUERIES):
            q = embedder.query_vector(question)
            scores = vecs @ q
            hay_scores, needle_scores = scores[:len(hay)], scores[len(hay):]
            for T in args.lengths:
                if T - 1 > len(hay):
                    continue
                # ties count against the needle: a signal that scores everything alike must not look perfect
                ranks = [int((hay_scores[rng.choice(len(hay), T - 1, replace=False)] >= s).sum())
                         for s in needle_scores]
                tag = f"{name}_q{q_i}_T{T}"
                out[f"{tag}_recall@1"] = round(float(np.mean([r < 1 for r in ranks])), 3)
                out[f"{tag}_recall@5"] = round(float(np.mean([r < 5 for r in ranks])), 3)
    start = time.perf_counter()
    for _ in range(10):
        keys.query_vector(QUERIES[0])
    out["query_vector_ms"] = round((time.perf_counter() - start) / 10 * 1e3, 1)
    return out


def scale(dim: int, n: int, seed: int) -> dict:
    import faiss

    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    ids = np.arange(n, dtype=np.int64)
    start = time.perf_counter()
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    index.add_with_ids(vectors, ids)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    blob = faiss.serialize_index(index)
    faiss.deserialize_index(blob)
    roundtrip_s = time.perf_counter() - start
    queries = rng.standard_normal((200, dim), dtype=np.float32)
    times = []
    for q in queries:
        start = time.perf_counter()
        index.search(q[None], 10)
        times.append(time.perf_counter() - start)
    return {"segments": n, "dim": dim, "build_s": round(build_s, 3), "serialize_load_s": round(roundtrip_s, 3),
            "search_p50_ms": round(float(np.percentile(times, 50)) * 1e3, 2),
            "search_p95_ms": round(float(np.percentile(times, 95)) * 1e3, 2),
            "index_bytes_per_segment": round(len(blob) / n, 1), "vector_file_bytes_per_segment": dim * 4}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="synthetic",
                   help="a model of the synthetic world (its needles are coloured shapes)")
    p.add_argument("--layer", type=int, default=None, help="search layer (default: the embedder's)")
    p.add_argument("--distractors", type=int, default=512)
    p.add_argument("--needles", type=int, default=20)
    p.add_argument("--lengths", type=int, nargs="+", default=[16, 128, 512])
    p.add_argument("--scale", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hard", action="store_true", help="distractors may share the needle's shape or colour")
    args = p.parse_args()
    torch.manual_seed(args.seed)
    model = bench_model(args.model).eval()
    with torch.inference_mode():
        result = {"bench": "search", "model": args.model, "hard": args.hard, **recall(model, args)}
    result["scale"] = scale(VoCoKeyEmbedder(model, args.layer).dim, args.scale, args.seed)
    result["machine"] = machine()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
