"""Where an assembled (class-evidence) model loses what it sees: in the caches, or in reading them.

    python scripts/probe_real_caches.py --model default                  # both checks (~5 min on one core)
    python scripts/probe_real_caches.py --model default --val-videos 0   # only the cache check (~1 min)

1. Do the caches hold the segment? Two frames of each of --classes classifier classes (class-mixture frames,
   `voco.train.class_mixture`, independent noise) are compressed into their kept KV; each first frame's cache
   is matched to the most similar second-frame cache (cosine, centred), per layer and over all layers.
   Accuracy 1.0 means every cache tells its class apart from the others; chance is 1 / classes.
2. Can the model answer from what it is given? Accuracy per question kind on the class-mixture validation
   videos (the split training validates on, never the held-out photos), read from the caches (`cache`) and
   from every vision token (`full`), by greedy decoding and exact match (`voco.train.evaluate`).
If (1) is near 1.0 while (2) stays low in both views, the bottleneck is the LM turning what it reads into
the names, not the compression. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch
from torch.nn import functional as F

from voco import VoCoModel
from voco.train.class_mixture import ClassMixtureSpec, ClassMixtureWorld
from voco.train.evaluate import evaluate
from voco.train.forward import compress_segments


def retrieval(model: VoCoModel, world: ClassMixtureWorld, classes: int, seed: int) -> dict:
    """Same-class retrieval accuracy of the kept KV, over all layers and per layer."""
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(world.names), classes, replace=False)
    first = [np.stack([world.frame(int(c), rng) for _ in range(model.voco.frames_per_segment)]) for c in picked]
    second = [np.stack([world.frame(int(c), rng) for _ in range(model.voco.frames_per_segment)]) for c in picked]
    with torch.no_grad():
        a, _ = compress_segments(model, first)  # [S, layers, 2, kv_heads, kept, head_dim]
        b, _ = compress_segments(model, second)

    def accuracy(x: torch.Tensor, y: torch.Tensor) -> float:
        x = F.normalize(x.flatten(1) - x.flatten(1).mean(0), dim=1)
        y = F.normalize(y.flatten(1) - y.flatten(1).mean(0), dim=1)
        return round(float(((x @ y.T).argmax(1) == torch.arange(len(x))).float().mean()), 3)

    return {"classes": classes, "chance": round(1 / classes, 4), "all_layers": accuracy(a, b),
            "per_layer": [accuracy(a[:, layer], b[:, layer]) for layer in range(a.shape[1])]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="an assembled model: bundled name or checkpoint folder")
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--val-videos", type=int, default=16, help="class-mixture validation videos (0: skip)")
    parser.add_argument("--max-new-tokens", type=int, default=14)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = VoCoModel.from_pretrained(args.model).eval()
    spec = ClassMixtureSpec(min_segments=2, max_segments=8, max_scenes=3)  # configs/default.yaml's data.options
    world = ClassMixtureWorld.for_model(model, spec, questions_per_video=4, seed=0)
    result = {"model": args.model, "cache_retrieval": retrieval(model, world, args.classes, args.seed)}
    if args.val_videos:
        examples = [world.load("val", i) for i in range(args.val_videos)]
        for view in ("cache", "full"):
            r = evaluate(model, examples, max_new_tokens=args.max_new_tokens, view=view)
            result[f"val_{view}"] = {"average": round(r["average"], 3),
                                     **{k: round(v, 3) for k, v in r["accuracy"].items()}}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
