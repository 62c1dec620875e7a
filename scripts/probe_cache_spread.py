"""Do a model's `<voco>` caches depend on the frame? Relative distance between the caches (and, for an evidence
model, the KV-distillation targets) of held-out photos, against each other and against the target.

    python scripts/probe_cache_spread.py --model runs/evidence/final          # the issue-30 experiment
    python scripts/probe_cache_spread.py --model default --photos astronaut,cat,coffee

A cache that answers from the video must move with it: the evidence experiment's caches sit 1-2% apart while its
distillation targets sit 7-8% apart, 20-22% when computed without its LoRA adapters (docs/measured.md, "The
bundled default model"). The model is changed in memory only. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return round(float((a - b).norm() / a.norm()), 4)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="bundled name or checkpoint folder")
    p.add_argument("--photos", default="astronaut,cat,coffee",
                   help="held-out photo ids (evaluation/heldout_footage.yaml)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from evaluation.footage import load_footage, photo_pixels
    from voco import VoCoModel

    model = VoCoModel.from_pretrained(args.model).eval()
    footage = load_footage()
    ids = args.photos.split(",")
    frames = [photo_pixels(footage.by_id(i))[None].repeat(model.voco.frames_per_segment, 0) for i in ids]
    with torch.no_grad():
        caches = torch.stack([model.compress([f])[0].kv for f in frames])  # [N, layers, 2, H, k, D]; photo sizes differ
    out = {"model": args.model, "photos": ids,
           "cache_spread": {i: relative(caches[0], caches[j]) for j, i in enumerate(ids) if j}}
    if getattr(model.projector, "summary_index", None) is not None:
        from voco.train.kv_distill import teacher_kv

        with torch.no_grad():
            target = torch.cat([teacher_kv(model, [torch.as_tensor(f)]) for f in frames]).reshape(caches.shape)
        out["target_spread"] = {i: relative(target[0], target[j]) for j, i in enumerate(ids) if j}
        out["cache_to_target"] = {i: relative(target[j], caches[j]) for j, i in enumerate(ids)}
        from voco.lora import LoRALinear

        adapters = [mod for mod in model.modules() if isinstance(mod, LoRALinear)]
        if adapters:  # the same targets from the base LM (adapters off): how much of the spread training removed
            with torch.no_grad():
                for mod in adapters:
                    mod.lora_B.zero_()
                base = torch.cat([teacher_kv(model, [torch.as_tensor(f)]) for f in frames])
            out["target_spread_without_adapters"] = {i: relative(base[0], base[j]) for j, i in enumerate(ids) if j}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
