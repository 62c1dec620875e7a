"""Choosing the class-evidence embedder's novelty weight on class-mixture videos (not on the held-out photos).

    python bench/bench_class_novelty.py                 # the assembled real-footage model, 300 validation videos

Class-mixture videos (voco/train/class_mixture.py, the world the real-footage model is trained on: what its
classifier would output for scenes of its classes) of 3-12 segments and 2-3 scenes, validation split. For each
scene, the query "a <class name>" ranks the video's segments by `voco.search.video_scores` with novelty weight w;
recall@1 / MRR of a segment of that scene (ties count against it). The weight `ClassEvidenceEmbedder` uses
(`novelty_weight`) was read from this bench. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_model, machine  # noqa: E402
from voco.search import ClassEvidenceEmbedder, video_scores  # noqa: E402
from voco.train.class_mixture import ClassMixtureSpec, ClassMixtureWorld, article  # noqa: E402

WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)


def scene_bounds(world: ClassMixtureWorld, index: int) -> tuple[list[int], list[int]]:
    """(scene classes, segment bounds) of validation video `index`, replaying the world's own draws in order."""
    rng, s = world._rng("val", index), world.spec
    segments = int(rng.integers(s.min_segments, s.max_segments + 1))
    n = int(rng.integers(1, min(s.max_scenes, segments) + 1))
    scenes = [int(c) for c in rng.choice(len(world.names), size=n, replace=False)]
    cuts = sorted(int(c) for c in rng.choice(np.arange(1, segments), size=n - 1, replace=False))
    return scenes, [0, *cuts, segments]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--videos", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = bench_model(args.model)
    embedder = ClassEvidenceEmbedder(model)
    world = ClassMixtureWorld.for_model(model, ClassMixtureSpec(min_segments=3, max_segments=12), seed=0)
    found: dict[float, list[int]] = {w: [] for w in WEIGHTS}
    for i in range(args.videos):
        example = world.load("val", i)
        scenes, bounds = scene_bounds(world, i)
        if bounds[-1] != len(example.segments):
            raise SystemExit("class_mixture draws changed: update scene_bounds to replay them")
        if len(scenes) < 2:
            continue
        probs = torch.from_numpy(np.stack([seg[:, 0].mean(0) for seg in example.segments]))  # [T, C]
        vectors = embedder.vectors_from_probabilities(probs)
        for k, scene in enumerate(scenes):
            relevant = np.zeros(len(vectors), bool)
            relevant[bounds[k]:bounds[k + 1]] = True
            query = embedder.query_vector(article(world.names[scene]))
            for w in WEIGHTS:
                scores = video_scores(vectors, query, w)
                found[w].append(int((scores[~relevant] >= scores[relevant].max()).sum()) + 1)
    result = {str(w): {"recall@1": round(float((np.array(r) == 1).mean()), 3),
                       "mrr": round(float((1 / np.array(r)).mean()), 3), "queries": len(r)} for w, r in found.items()}
    print(json.dumps({"model": args.model, "videos": args.videos, "novelty_weight": result,
                      "chosen": embedder.novelty_weight, "machine": machine()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
