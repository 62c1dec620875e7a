"""Class-mixture videos: what an image classifier would say about footage of a few scenes, without any photos.

A video is 1-3 scenes in a row (each a classifier class, e.g. "Egyptian cat" then "espresso"), cut into
segments of `frames_per_segment` frames. A frame is not pixels but the classifier's output on it: class
probabilities softmax(beta * S[c] + noise) where S is the cosine similarity of the classifier's own head
weights, so the probability mass spreads over the classes the real classifier confuses (tabby, tiger cat,
Siamese cat for a cat photo), and sometimes a second object of another class shows in the frame.
Questions are templated over the scene classes' names: what is shown, whether something appears, what
comes first or last, and when something appears.

These examples hold vision *features* (float32 [frames, 1, classes]) in place of frames; the training
forward pass feeds them to the projector directly (`voco.train.vision_inputs.segment_vision_embeds`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from voco.data.questions import QA
from voco.train.data import VideoExample

WHAT_QUESTIONS = ("What is shown in the video?", "What is in the video?", "What do you see in the video?",
                  "What does the video show?")
HAPPENING_QUESTIONS = ("What is happening in this video?", "Describe the video.", "What is this video about?")
EXISTS_QUESTIONS = ("Is there {x} in the video?", "Does the video show {x}?", "Do you see {x} in the video?")
FIRST_QUESTIONS = ("What appears first in the video?", "What is shown first?")
LAST_QUESTIONS = ("What appears last in the video?", "What is shown at the end of the video?")
WHEN_QUESTIONS = ("When does {x} appear in the video?", "When is {x} shown?")
WHEN_ANSWERS = ("At the beginning of the video.", "In the middle of the video.", "At the end of the video.")
THROUGHOUT = "Throughout the video."
KINDS = ("what", "happening", "exists", "first", "last", "when")


@dataclass
class ClassMixtureSpec:
    """Knobs of the class-mixture world (YAML `data.options` for `dataset: class_mixture`)."""

    min_segments: int = 2
    max_segments: int = 8
    max_scenes: int = 3
    min_scenes: int = 1
    """Fewest scenes in a video (2: every "what appears last?" differs from "first", a stage that teaches order)."""
    sharpness: tuple[float, float] = (6.0, 14.0)
    """Range of beta: how sure the classifier is (beta 6 -> top class ~0.3, 14 -> ~0.99)."""
    noise: tuple[float, float] = (0.3, 1.0)
    """Range of the logit noise's standard deviation."""
    second_object: float = 0.2
    """Chance that a frame also shows a weaker second object (of a random other class)."""
    drift: float = 0.0
    """Chance that the classifier calls a frame by one of its scene class's nearest classes (by head-weight
    similarity) instead: a real classifier's top class wanders from frame to frame of one scene (tabby, tiger
    cat, Egyptian cat). 0 draws nothing extra, so videos without drift stay as they were."""
    drift_neighbours: int = 5
    """How many of the scene class's nearest classes a drifting frame picks from."""
    absent_max_similarity: float = 0.2
    """An absent thing asked about is never this similar to a class in the video (or it would be a trick)."""
    kinds: tuple[str, ...] = KINDS
    """Question kinds to ask (e.g. only the ones that name things, for a stage that teaches reading names); a kind
    listed twice is asked twice per video (two yes/no questions that differ only in the thing asked about)."""
    answer_names: str = "full"
    """How answers name a class: `full` ("an Egyptian cat"), or `word`: its last word when the LM reads that
    word as one token ("a cat"), else the full name. One token is what one `<voco>` cache can hand the answer to
    copy (`voco.train.kv_distill` pulls each cache toward the top name's last token)."""

    def __post_init__(self) -> None:
        self.sharpness, self.noise, self.kinds = tuple(self.sharpness), tuple(self.noise), tuple(self.kinds)
        if self.answer_names not in ANSWER_NAMES:
            raise ValueError(f"class_mixture: answer_names must be one of {sorted(ANSWER_NAMES)}, got "
                             f"{self.answer_names!r}")
        if not self.kinds or set(self.kinds) - set(KINDS):
            raise ValueError(f"class_mixture: kinds must be some of {KINDS}, got {self.kinds}")
        if not 1 <= self.min_segments <= self.max_segments or not 1 <= self.min_scenes <= self.max_scenes:
            raise ValueError("class_mixture: need 1 <= min_segments <= max_segments and 1 <= min_scenes <= "
                             "max_scenes")
        if self.min_scenes > self.min_segments:
            raise ValueError(f"class_mixture: min_scenes {self.min_scenes} needs min_segments >= it (a scene "
                             f"takes at least one segment), got {self.min_segments}")
        if not (0.0 <= self.drift <= 1.0 and self.drift_neighbours >= 1):
            raise ValueError(f"class_mixture: need 0 <= drift <= 1 and drift_neighbours >= 1, got {self.drift} "
                             f"and {self.drift_neighbours}")
        if not (0 < self.sharpness[0] <= self.sharpness[1] and 0 <= self.noise[0] <= self.noise[1]):
            raise ValueError("class_mixture: sharpness and noise are [low, high] ranges with low <= high")


def article(name: str) -> str:
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


def mention(name: str, rng: np.random.Generator) -> str:
    """How a question names a thing: the full class name, or (half the time) its head word ("cat" for
    "Egyptian cat"), the way people ask."""
    words = name.split()
    if len(words) > 1 and rng.random() < 0.5:
        name = words[-1]
    return f"the {name}" if rng.random() < 0.3 else article(name)


def answer_name(name: str, tokenizer) -> str:
    """The class's last word when `tokenizer` reads it (after a space) as one token, else the whole name."""
    word = name.split()[-1]
    return word if len(tokenizer(f" {word}", add_special_tokens=False)["input_ids"]) == 1 else name


ANSWER_NAMES = {"full": lambda name, tokenizer: name, "word": answer_name}
"""`ClassMixtureSpec.answer_names` -> how an answer names a class (its name, the LM's tokenizer)."""


def when_answer(spans: list[tuple[int, int]], scene: int, segments: int) -> str:
    start, end = spans[scene]
    if start == 0 and end == segments:
        return THROUGHOUT
    centre = (start + end) / 2 / segments
    return WHEN_ANSWERS[min(2, int(centre * 3))]


class ClassMixtureWorld:
    """Deterministic class-mixture videos: `load(split, index)` depends only on (seed, split, index)."""

    def __init__(self, names: list[str], head_weight: torch.Tensor, frames_per_segment: int,
                 spec: ClassMixtureSpec, *, questions_per_video: int = 4, seed: int = 0,
                 answer_names: list[str] | None = None):
        if len(names) != head_weight.shape[0]:
            raise ValueError(f"{len(names)} class names for a classifier head of {head_weight.shape[0]} classes")
        unit = torch.nn.functional.normalize(head_weight.detach().float(), dim=1)
        self.similarity = (unit @ unit.T).numpy()
        self.names = names
        self.answer_names = answer_names or names
        """How answers name each class (`ClassMixtureSpec.answer_names`); questions use the full names."""
        self.frames_per_segment = frames_per_segment
        self.spec = spec
        self.questions_per_video = questions_per_video
        self.seed = seed

    @classmethod
    def for_model(cls, model, spec: ClassMixtureSpec, *, questions_per_video: int = 4,
                  seed: int = 0) -> ClassMixtureWorld:
        """The world of an assembled model's classifier (its class names and head weights)."""
        from voco.vision import read_class_names

        if getattr(model, "assembly", None) is None:
            raise ValueError("class_mixture data needs an assembled model (model.init: assembled): it simulates "
                             "the model's own classifier")
        names = read_class_names(model.assembly.class_names_path())
        answers = [ANSWER_NAMES[spec.answer_names](n, model.tokenizer) for n in names]
        return cls(names, model.vision_tower.net._fc.weight, model.voco.frames_per_segment, spec,
                   questions_per_video=questions_per_video, seed=seed, answer_names=answers)

    @cached_property
    def nearest(self) -> np.ndarray:
        """[classes, drift_neighbours]: each class's nearest other classes, most similar first (sorted on first
        use: only a world with drift needs it)."""
        return np.argsort(-self.similarity, axis=1, kind="stable")[:, 1:self.spec.drift_neighbours + 1]

    def _rng(self, split: str, index: int) -> np.random.Generator:
        split_key = {"train": 0, "val": 1, "test": 2}[split]
        return np.random.default_rng(np.random.SeedSequence(entropy=self.seed, spawn_key=(split_key, index)))

    def frame(self, scene: int, rng: np.random.Generator) -> np.ndarray:
        """Class probabilities [1, classes] of one frame of `scene`."""
        s = self.spec
        beta = rng.uniform(*s.sharpness)
        shown = scene
        if s.drift and rng.random() < s.drift:
            shown = int(self.nearest[scene, rng.integers(self.nearest.shape[1])])
        logits = beta * self.similarity[shown]
        if rng.random() < s.second_object:  # always weaker than the scene's own class
            other = int(rng.integers(len(self.names)))
            logits = np.maximum(logits, rng.uniform(0.4, 0.8) * beta * self.similarity[other])
        logits = logits + rng.normal(0.0, rng.uniform(*s.noise), size=logits.shape)
        probs = np.exp(logits - logits.max())
        return (probs / probs.sum())[None].astype(np.float32)

    def load(self, split: str, index: int) -> VideoExample:
        rng = self._rng(split, index)
        s = self.spec
        segments = int(rng.integers(s.min_segments, s.max_segments + 1))
        scenes_n = int(rng.integers(s.min_scenes, min(s.max_scenes, segments) + 1))
        scenes = [int(c) for c in rng.choice(len(self.names), size=scenes_n, replace=False)]
        cuts = sorted(int(c) for c in rng.choice(np.arange(1, segments), size=scenes_n - 1, replace=False))
        bounds = [0, *cuts, segments]
        spans = [(bounds[i], bounds[i + 1]) for i in range(scenes_n)]
        scene_of = [i for i, (a, b) in enumerate(spans) for _ in range(a, b)]
        frames = [np.stack([self.frame(scenes[scene_of[t]], rng) for _ in range(self.frames_per_segment)])
                  for t in range(segments)]
        many = self.questions_per_video > len(s.kinds)  # distinct kinds while there are enough
        qas = [self.question(str(kind), scenes, spans, segments, rng)
               for kind in rng.choice(s.kinds, size=self.questions_per_video, replace=many)]
        return VideoExample(f"mixture-{split}-{index}", frames, qas)

    def absent(self, scenes: list[int], rng: np.random.Generator) -> int:
        """A class the video does not show: unlike every scene class, sharing no word with their names (the
        least similar class when none qualifies)."""
        present_words = {w.lower() for c in scenes for w in self.names[c].split()}
        closeness = self.similarity[:, scenes].max(axis=1)
        candidates = [c for c in np.flatnonzero(closeness < self.spec.absent_max_similarity)
                      if not present_words & {w.lower() for w in self.names[c].split()}]
        if not candidates:
            return int(closeness.argmin())
        return int(candidates[int(rng.integers(len(candidates)))])

    def question(self, kind: str, scenes: list[int], spans, segments: int, rng: np.random.Generator) -> QA:
        names = [self.answer_names[c] for c in scenes]
        pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
        listing = ", then ".join(article(n) for n in names)
        if kind == "what":
            return QA(pick(WHAT_QUESTIONS), f"{listing[0].upper()}{listing[1:]}.", kind)
        if kind == "happening":
            return QA(pick(HAPPENING_QUESTIONS), f"The video shows {listing}.", kind)
        if kind == "exists":
            present = rng.random() < 0.5
            thing = self.names[int(rng.choice(scenes))] if present else self.names[self.absent(scenes, rng)]
            return QA(pick(EXISTS_QUESTIONS).format(x=mention(thing, rng)), "Yes." if present else "No.", kind)
        if kind in ("first", "last"):
            name = names[0] if kind == "first" else names[-1]
            answer = article(name)
            return QA(pick(FIRST_QUESTIONS if kind == "first" else LAST_QUESTIONS),
                      f"{answer[0].upper()}{answer[1:]}.", kind)
        scene = int(rng.integers(len(scenes)))
        return QA(pick(WHEN_QUESTIONS).format(x=mention(names[scene], rng)), when_answer(spans, scene, segments),
                  "when")
