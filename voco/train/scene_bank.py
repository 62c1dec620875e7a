"""A bank of rendered stamp scenes read by the evidence tower once, cached on disk (features, not pixels).

    bank = SceneBank.build_or_load(model, spec, root)   # model: an assembled model with the evidence tower
    bank.slots[split]    float32 [scenes, views, S, FIELDS]: what the tower read in each view
    bank.truths[split]   SceneTruth per scene, only things the tower's evidence names (see `grounded`)

Scenes of the `val` split use only stamps whose names no `train` scene uses (names split by a stable hash), so
validation measures reading names never trained on. The cache key covers everything that changes the bytes: the
tower's evidence settings and weights' identity, the concept and stamp tables, the scene spec, the sizes, the seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from voco.evidence.concepts import ASSETS
from voco.evidence.tower import FIELDS, HYPERNYMS, NAME, SCORE, EvidenceTower
from voco.train.scene_questions import SceneTruth, Thing
from voco.train.stamps import Backgrounds, SceneSpec, StampCatalogue, render_scene

log = logging.getLogger(__name__)
SPLITS = ("train", "val")
VERSION = 1
"""Part of the cache key: raise it when rendering or reading scenes changes in a way the settings do not show."""
VAL_SHARE = 10
"""One name in VAL_SHARE goes to validation scenes only."""


def val_name(name: str) -> bool:
    return zlib.crc32(name.encode()) % VAL_SHARE == 0


def grounded(truth: SceneTruth, slots: np.ndarray, words: tuple[str, ...]) -> SceneTruth:
    """What a model reading the evidence can be asked about: each thing whose name some view's evidence shows
    (as a slot's name) as it is; a thing whose name no view shows but one of its hypernyms does (a fox read as a
    dog, an animal) under that hypernym; the rest left out (and never asked about as absent: `SceneVideos`)."""
    ids = slots[..., [NAME, *range(HYPERNYMS, FIELDS)]].reshape(-1)
    seen = {words[int(i)] for i in ids if i >= 0}
    kept = []
    for thing in truth.things:
        if thing.name in seen:
            kept.append(thing)
            continue
        general = [h for h in thing.hypernyms if h in seen]
        if general:
            rest = thing.hypernyms[thing.hypernyms.index(general[0]) + 1:]
            kept.append(Thing(general[0], rest, thing.colour, thing.count))
    return SceneTruth(tuple(kept), truth.people)


@dataclass
class BankSpec:
    """Sizes and sources of the bank (options of the `stamp_scenes` dataset)."""

    stamps: str = "/usr/share/tuxpaint/stamps"
    stamp_table: str = "stamp_concepts.tsv"
    """The usable stamps and their names: a file in voco/assets, or an absolute path."""
    backgrounds: tuple[str, ...] = ("/usr/share/backgrounds",)
    train_scenes: int = 6000
    val_scenes: int = 300
    seed: int = 0
    scene: dict = dataclasses.field(default_factory=dict)
    """`voco.train.stamps.SceneSpec` fields."""

    def scene_spec(self) -> SceneSpec:
        return SceneSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in self.scene.items()})


def bank_key(tower: EvidenceTower, spec: BankSpec) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"version": VERSION, "evidence": tower.config.settings(),
                              "image_size": tower.image_size,
                              "spec": dataclasses.asdict(spec), "scene": dataclasses.asdict(spec.scene_spec())},
                             sort_keys=True, default=str).encode())
    concepts = tower.concepts
    digest.update(json.dumps([concepts.class_concepts, sorted(concepts.hypernyms.items())]).encode())
    digest.update((ASSETS / spec.stamp_table).read_bytes())
    head = tower.classifier.net._fc.weight
    digest.update(head.detach().float().cpu().numpy().tobytes()[:1 << 20])
    return digest.hexdigest()[:16]


def named_as_read(truth: SceneTruth, slots: np.ndarray, words: tuple[str, ...]) -> SceneTruth:
    """A thing kept under a hypernym (`grounded`: a hippo the classifier read as a buffalo, an animal) takes the
    name of the best slot that shows that hypernym, as the model will say it: the model is taught to report what
    the evidence names when the evidence is right about what kind of thing it is, not to fall back on "an
    animal" (which no viewer would answer) whenever a name might be wrong."""
    rows = slots.reshape(-1, slots.shape[-1])
    named = {words[int(i)] for i in rows[:, NAME] if i >= 0}
    things = []
    for thing in truth.things:
        if thing.name not in named:
            fits = [r for r in rows if r[NAME] >= 0 and thing.name in
                    {words[int(i)] for i in (r[NAME], *r[HYPERNYMS:FIELDS]) if i >= 0}]
            if fits:
                best = max(fits, key=lambda r: r[SCORE])
                hyps = tuple(words[int(i)] for i in best[HYPERNYMS:FIELDS] if i >= 0)
                thing = Thing(words[int(best[NAME])], hyps, thing.colour, thing.count)
        if all(thing.name != t.name for t in things):
            things.append(thing)
    return SceneTruth(tuple(things), truth.people)


class SceneBank:
    def __init__(self, slots: dict[str, np.ndarray], truths: dict[str, list[SceneTruth]],
                 mentioned: dict[str, list[set[str]]], words: tuple[str, ...]):
        self.slots, self.truths, self.mentioned, self.words = slots, truths, mentioned, words

    @classmethod
    def build_or_load(cls, tower: EvidenceTower, spec: BankSpec, root: str | Path) -> SceneBank:
        folder = Path(root).expanduser() / bank_key(tower, spec)
        if (folder / "bank.npz").is_file():
            return cls.load(folder, tower.words)
        bank = cls.build(tower, spec)
        bank.save(folder)
        return bank

    @classmethod
    def build(cls, tower: EvidenceTower, spec: BankSpec) -> SceneBank:
        from tqdm import tqdm

        scene_spec = spec.scene_spec()
        catalogue = StampCatalogue.load(spec.stamps, ASSETS / spec.stamp_table)
        catalogue = catalogue.weighted(set(tower.concepts.class_concepts), scene_spec.nameable_weight)
        backgrounds = Backgrounds.find(spec.backgrounds)
        slots, truths, mentioned = {}, {}, {}
        for split, count in (("train", spec.train_scenes), ("val", spec.val_scenes)):
            part = catalogue.subset(lambda s, split=split: val_name(s.name) == (split == "val"))
            rng = np.random.default_rng(np.random.SeedSequence(entropy=spec.seed, spawn_key=(SPLITS.index(split),)))
            views, raw = [], []
            for _ in tqdm(range(count), desc=f"scene bank ({split})", unit="scene"):
                frames, truth = render_scene(part, backgrounds, scene_spec, rng)
                views.append(tower(torch.from_numpy(frames)).numpy())
                raw.append(truth)
            slots[split] = np.stack(views).astype(np.float32)  # [scenes, V, S, FIELDS]
            truths[split] = [grounded(t, v, tower.words) for t, v in zip(raw, slots[split], strict=True)]
            mentioned[split] = [set().union(*(t.words for t in r.things)) if r.things else set() for r in raw]
        return cls(slots, truths, mentioned, tower.words)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(folder / "bank.npz", **{f"slots_{s}": v for s, v in self.slots.items()})
        meta = {s: [{"things": [dataclasses.asdict(t) for t in truth.things], "mentioned": sorted(m)}
                    for truth, m in zip(self.truths[s], self.mentioned[s], strict=True)] for s in self.truths}
        (folder / "truths.json").write_text(json.dumps(meta))
        log.info("scene bank saved to %s", folder)

    @classmethod
    def load(cls, folder: Path, words: tuple[str, ...]) -> SceneBank:
        arrays = np.load(folder / "bank.npz")
        meta = json.loads((folder / "truths.json").read_text())
        slots = {s: arrays[f"slots_{s}"] for s in meta}
        truths = {s: [SceneTruth(tuple(Thing(t["name"], tuple(t["hypernyms"]), t["colour"], t["count"])
                                       for t in scene["things"])) for scene in meta[s]] for s in meta}
        mentioned = {s: [set(scene["mentioned"]) for scene in meta[s]] for s in meta}
        return cls(slots, truths, mentioned, words)
