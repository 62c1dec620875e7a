"""The `stamp_scenes` dataset: videos assembled from the scene bank, with questions of every kind (issue 30).

A video is a few scenes of the bank in a row, each over a run of 2-second segments; each segment is one of its
scene's views as the evidence tower read it (features: float32 [1, S, FIELDS] per segment). Some scenes get people
(the person slot, first, as the tower fills it from the face detector: stamps show no faces). Segment start times
are those of a whole short video, or, half the time, of a subset of a long one (a random offset up to an hour and
gaps between segments, as retrieval hands the model), so the model learns to read any time label.

Questions (`voco.train.scene_questions`): `kinds` are drawn with replacement for each video (a kind listed twice is
drawn twice as often); some questions carry one or two earlier turns of the same video as chat history.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from voco.colours import COLOURS
from voco.evidence.concepts import Vocabulary
from voco.evidence.tower import COLOUR, COUNT, FIELDS, HYPERNYMS, NAME, SCORE
from voco.train.data import VideoExample
from voco.train.scene_bank import BankSpec, SceneBank, grounded, named_as_read
from voco.train.scene_questions import KINDS, SceneTruth, Thing, VideoTruth, ask

SPLIT_SEED = {"train": 0, "val": 1, "test": 2}


@dataclass
class SceneVideoSpec:
    """Knobs of the `stamp_scenes` dataset (YAML `data.options`; stages may override any)."""

    min_segments: int = 2
    max_segments: int = 12
    max_scenes: int = 4
    people: float = 0.2
    """Chance that a scene shows people (one, sometimes two or three)."""
    subset: float = 0.5
    """Chance that the segment times are a retrieved subset of a long video (offset and gaps) rather than 0, 2, ..."""
    history: float = 0.25
    """Chance that a question carries one or two earlier turns about the same video."""
    rename: float = 0.0
    """Chance that a training video's names are swapped for other names of the concept table, the same way in its
    evidence and its answers (`renamed`): the stamps hold a few hundred names, and a model that sees only those
    learns to say them rather than to read the evidence (validation, on names never trained on, stays near 0 for
    "what" and "first")."""
    absent: float = 0.2
    """Chance that a when / colour / count question asks about a thing the video does not show (answer: "There is
    no dog in the video.", "None."): how often reading the question's noun against the evidence decides."""
    sibling: float = 0.0
    """Chance that a yes/no question about an absent thing asks about a sibling of something the video shows (a
    name sharing a hypernym with a shown thing: "Is there a cat?" where the evidence reads "dog animal") rather than
    any name: hard negatives, so "No." depends on the asked word, not on its kind."""
    kinds: tuple[str, ...] = KINDS
    bank: dict = dataclasses.field(default_factory=dict)
    """`voco.train.scene_bank.BankSpec` fields (stamps and background folders, scene counts)."""
    cache: str = "~/.cache/voco/scene_bank"

    def __post_init__(self) -> None:
        self.kinds = tuple(self.kinds)
        if not self.kinds or set(self.kinds) - set(KINDS):
            raise ValueError(f"stamp_scenes: kinds must be some of {KINDS}, got {self.kinds}")
        if not 1 <= self.min_segments <= self.max_segments or self.max_scenes < 1:
            raise ValueError("stamp_scenes: need 1 <= min_segments <= max_segments and max_scenes >= 1")
        for name in ("people", "subset", "history", "rename", "absent", "sibling"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"stamp_scenes: {name} is a chance in [0, 1], got {getattr(self, name)}")
        BankSpec(**self.bank)

    def bank_spec(self) -> BankSpec:
        return BankSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in self.bank.items()})


@lru_cache(maxsize=2)
def _vocabulary() -> dict[str, tuple[str, str, tuple[str, ...]]]:
    vocab = Vocabulary.load()
    return {w: (w, vocab.plurals[w], vocab.synonyms[w]) for w in vocab.words}


class SceneVideos:
    """Deterministic videos: `load(index)` depends only on (seed, split, index)."""

    def __init__(self, bank: SceneBank, spec: SceneVideoSpec, split: str, person_id: int,
                 questions_per_video: int, seed: int = 0, hypernyms: dict[str, tuple[str, ...]] | None = None):
        source = "val" if split != "train" else "train"
        self.slots, self.truths = bank.slots[source], bank.truths[source]
        self.mentioned = bank.mentioned[source]
        self.words = bank.words
        self.good_views = [[v for v in range(self.slots.shape[1]) if self._reads_right(i, v)]
                           for i in range(len(self.truths))]
        self.usable = [i for i, views in enumerate(self.good_views) if views]
        if not self.usable:
            raise ValueError(f"no {source} scene of the scene bank has a view whose leading slot names one of its "
                             "things: the bank is too small, or the tower reads nothing right (check its classifier "
                             "weights and concept table)")
        self.spec, self.split, self.person_id = spec, split, person_id
        self.questions_per_video, self.seed = questions_per_video, seed
        self.vocabulary = _vocabulary()
        names = {t.name for truth in self.truths for t in truth.things}
        self.absent_pool = tuple(sorted(names | set(self.vocabulary) | {"person"}))
        self.renamer = Renamer(self.words, hypernyms, person_id) if hypernyms and split == "train" else None
        self.hypernyms = hypernyms or {}

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(entropy=self.seed,
                                                            spawn_key=(SPLIT_SEED[self.split], index)))

    def _layout(self, rng: np.random.Generator) -> tuple[list[int], list[int]]:
        """Scene bank indices and how many segments each lasts."""
        s = self.spec
        total = int(rng.integers(s.min_segments, s.max_segments + 1))
        n = int(rng.integers(1, min(s.max_scenes, total) + 1))
        cuts = sorted(int(c) for c in rng.choice(np.arange(1, total), size=n - 1, replace=False)) if n > 1 else []
        lengths = np.diff([0, *cuts, total]).tolist()
        scenes = [self.usable[int(i)] for i in rng.choice(len(self.usable), size=n, replace=False)]
        return scenes, lengths

    def _starts(self, count: int, rng: np.random.Generator) -> list[float]:
        if rng.random() >= self.spec.subset:
            return [2.0 * i for i in range(count)]
        offset = 2.0 * int(rng.integers(0, 1800))
        gaps = np.where(rng.random(count) < 0.3, rng.integers(1, 60, size=count), 1) * 2.0
        gaps[0] = 0.0
        return (offset + np.cumsum(gaps)).tolist()

    def _reads_right(self, scene: int, view: int) -> bool:
        """Whether the tower's most confident slot in this view is one of the scene's things (in name, or in kind
        and then named as the slot names it): the views a video shows. The stamps are pasted photos and cartoons
        on wallpapers, where the classifier's top class is often something else entirely; footage of real scenes
        reads right far more often, and a model taught on views that read wrong learns to ignore what it reads."""
        used = self.slots[scene, view][None]
        first = used[0, 0, NAME]
        names = {t.name for t in named_as_read(grounded(self.truths[scene], used, self.words), used,
                                               self.words).things}
        return first >= 0 and self.words[int(first)] in names

    def _segment(self, scene: int, people: int, view: int) -> np.ndarray:
        """One segment's evidence [1, S, FIELDS]: a view of the scene, with the person slot filled."""
        slots = self.slots[scene, view].copy()
        if people:  # as the tower fills it: first, the things after it (the last one drops out)
            person = np.full_like(slots[:1], -1.0)
            person[0, NAME], person[0, SCORE], person[0, COUNT] = self.person_id, 1.0, people
            slots = np.concatenate([person, slots[:-1]])
        return slots[None]

    def shown(self, segments: list[np.ndarray]) -> set[str]:
        """Every name and hypernym the video's evidence shows: never asked about as absent (a "No." there would
        teach the model to deny what it reads)."""
        ids = np.concatenate([s[0][:, [NAME, *range(HYPERNYMS, FIELDS)]].reshape(-1) for s in segments])
        return {self.words[int(i)] for i in np.unique(ids) if i >= 0}

    def _scene(self, scene: int, length: int, rng: np.random.Generator):
        """A scene's segments (a random view each), its truth as those views show it, and each segment's words."""
        people = int(rng.choice([1, 1, 1, 2, 3])) if rng.random() < self.spec.people else 0
        good = self.good_views[scene]
        views = [good[int(i)] for i in rng.integers(len(good), size=length)]
        segments = [self._segment(scene, people, v) for v in views]
        used = np.stack([self.slots[scene, v] for v in views])  # [length, S, FIELDS], without the person slot
        truth = as_shown(self.truths[scene], used, self.words, people)
        words = [self.shown([s]) for s in segments]
        return segments, truth, words

    def load(self, index: int) -> VideoExample:
        rng = self._rng(index)
        scenes, lengths = self._layout(rng)
        truths, segments, scene_of, segment_words = [], [], [], []
        for k, (scene, length) in enumerate(zip(scenes, lengths, strict=True)):
            parts, truth, words = self._scene(scene, length, rng)
            truths.append(truth)
            segments += parts
            segment_words += words
            scene_of += [k] * length
        starts = self._starts(len(segments), rng)
        mentioned = set().union(*(self.mentioned[s] for s in scenes)) | self.shown(segments)
        if self.renamer is not None and rng.random() < self.spec.rename:
            segments, truths = self.renamer(segments, truths, rng)
            segment_words = [self.shown([s]) for s in segments]
            mentioned = self.shown(segments)
        absent = tuple(w for w in self.absent_pool if w not in mentioned)
        siblings = tuple(w for w in absent if set(self.hypernyms.get(w, ())) & mentioned)
        video = VideoTruth(truths, scene_of, starts, self.vocabulary, absent, segment_words, siblings)
        qas, histories = [], []
        for kind in rng.choice(self.spec.kinds, size=self.questions_per_video * 2):
            qa = ask(str(kind), video, rng, absent=self.spec.absent, sibling=self.spec.sibling)
            if qa is None:
                continue
            earlier = [(q.question, q.answer) for q in qas]
            take = int(rng.integers(1, 3)) if earlier and rng.random() < self.spec.history else 0
            histories.append([earlier[int(i)] for i in rng.choice(len(earlier), size=min(take, len(earlier)),
                                                                    replace=False)])
            qas.append(qa)
            if len(qas) == self.questions_per_video:
                break
        return VideoExample(f"scenes-{self.split}-{index}", segments, qas, histories=histories, times=starts)


class Renamer:
    """Swaps a video's names for other names of the concept table, one for one, in its evidence (each renamed
    slot shows its new name's hypernyms) and in its truth: the same video about other things. The person slot
    keeps its name; names that are also some name's hypernym ("dog" for a terrier) are never drawn, so a new name
    cannot collide with a hypernym a slot shows."""

    def __init__(self, words: tuple[str, ...], hypernyms: dict[str, tuple[str, ...]], person_id: int):
        self.words, self.person_id = words, person_id
        self.index = {w: i for i, w in enumerate(words)}
        general = {h for hs in hypernyms.values() for h in hs}
        self.hypernyms = hypernyms
        self.pool = np.array([self.index[w] for w in sorted(hypernyms) if w not in general and w in self.index
                              and self.index[w] != person_id])

    def __call__(self, segments: list[np.ndarray], truths: list[SceneTruth], rng: np.random.Generator):
        ids = sorted({int(i) for s in segments for i in s[0][:, NAME] if i >= 0 and int(i) != self.person_id})
        if not ids or len(self.pool) < len(ids):
            return segments, truths
        new = rng.choice(self.pool, size=len(ids), replace=False)
        mapping = {old: int(n) for old, n in zip(ids, new, strict=True)}
        out = []
        for seg in segments:
            seg = seg.copy()
            rows = seg[0]  # [S, FIELDS]
            for r in rows:
                if r[NAME] >= 0 and int(r[NAME]) in mapping:
                    r[NAME] = mapping[int(r[NAME])]
                    hyps = [self.index[h] for h in self.hypernyms.get(self.words[int(r[NAME])], ())
                            if h in self.index][: FIELDS - HYPERNYMS]
                    r[HYPERNYMS:] = -1.0
                    r[HYPERNYMS:HYPERNYMS + len(hyps)] = hyps
            out.append(seg)
        names = {self.words[old]: self.words[n] for old, n in mapping.items()}
        renamed = []
        for truth in truths:
            things = tuple(Thing(names[t.name], self.hypernyms.get(names[t.name], ()), t.colour, t.count, t.counted)
                           if t.name in names else t for t in truth.things)
            renamed.append(SceneTruth(things, truth.people))
        return out, renamed


def as_shown(truth: SceneTruth, used: np.ndarray, words: tuple[str, ...], people: int) -> SceneTruth:
    """A scene's truth as the evidence of the segments a video shows of it can tell it (`used`: their slots
    [segments, S, FIELDS], the person slot left out): things named (or renamed) by those views only (`grounded`,
    `named_as_read`) in one of their two leading slots, a colour only where some view reads the same colour for
    it, a count only where some view reads the same count. So every answer the model is taught can be read from
    what it is given."""
    shown = named_as_read(grounded(truth, used, words), used, words)
    rows = used.reshape(-1, used.shape[-1])
    leading = {words[int(i)] for i in used[:, :2, NAME].reshape(-1) if i >= 0}
    things = []
    for thing in shown.things:
        if thing.name not in leading:  # named only by a weak slot: the model is taught to name the leading ones
            continue
        mine = [r for r in rows if r[NAME] >= 0 and words[int(r[NAME])] == thing.name]
        colour = thing.colour if any(r[COLOUR] >= 0 and COLOURS[int(r[COLOUR])] == thing.colour for r in mine) \
            else None
        counted = any(int(r[COUNT]) == thing.count for r in mine)
        things.append(Thing(thing.name, thing.hypernyms, colour, thing.count if counted else 1, counted))
    return SceneTruth(tuple(things), people)
