"""Everyday words for what a classifier sees: ImageNet classes -> a name and hypernyms from one vocabulary.

Tables (voco/assets, derived from WordNet 3.0 by `scripts/derive_concepts.py`, curated where WordNet is odd):

    concept_vocabulary.tsv   word, plural, synonyms: the hypernym words ("animal", "vehicle", "car", ...)
    imagenet_concepts.tsv    per class: its everyday name ("tabby" -> "cat") and hypernyms ("animal")

`ConceptTable` turns them into index tensors: class -> name id, name id -> hypernym ids, so the evidence tower
can sum class probabilities into name and hypernym probabilities (twenty dog breeds at 0.05 each are one dog).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

ASSETS = Path(__file__).resolve().parents[1] / "assets"
MAX_HYPERNYMS = 2
"""Hypernyms a slot shows (the most specific first); the tables may list more."""


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def split_words(cell: str | None) -> list[str]:
    return [w.strip() for w in (cell or "").split(",") if w.strip()]


@dataclass(frozen=True)
class Vocabulary:
    """The shared hypernym vocabulary: word -> plural and the synonyms people use for it in questions."""

    words: tuple[str, ...]
    plurals: dict[str, str]
    synonyms: dict[str, tuple[str, ...]]

    @classmethod
    def load(cls, path: Path = ASSETS / "concept_vocabulary.tsv") -> Vocabulary:
        rows = read_tsv(path)
        words = tuple(r["word"] for r in rows)
        return cls(words, {r["word"]: r["plural"] for r in rows},
                   {r["word"]: tuple(split_words(r.get("synonyms"))) for r in rows})


class ConceptTable:
    """Classes -> names and hypernyms, as index tensors over `names` (every name and hypernym word)."""

    def __init__(self, class_names: list[str], class_concepts: list[str], class_hypernyms: list[list[str]]):
        if not len(class_names) == len(class_concepts) == len(class_hypernyms):
            raise ValueError("concept table: one name and one hypernym list per class")
        words = sorted({*class_concepts, *(h for hs in class_hypernyms for h in hs)})
        self.words: tuple[str, ...] = tuple(words)
        """Every word a slot can show as a name or a hypernym, sorted (its index is its id)."""
        self.index = {w: i for i, w in enumerate(self.words)}
        self.class_names = class_names
        self.class_concepts = class_concepts
        self.class_name_id = torch.tensor([self.index[c] for c in class_concepts])  # [C]
        hypernyms: dict[str, list[str]] = {}
        for concept, hyps in zip(class_concepts, class_hypernyms, strict=True):
            hypernyms.setdefault(concept, [h for h in hyps if h != concept])
        self.hypernyms = {c: tuple(h[:MAX_HYPERNYMS]) for c, h in hypernyms.items()}
        """name -> its hypernyms, most specific first (from the first class with that name)."""

    @classmethod
    def load(cls, path: Path = ASSETS / "imagenet_concepts.tsv") -> ConceptTable:
        rows = read_tsv(path)
        order = [int(r["index"]) for r in rows]
        if order != list(range(len(rows))):
            raise ValueError(f"{path}: rows must be the classes in order 0 .. {len(rows) - 1}")
        return cls([r["imagenet_name"] for r in rows], [r["name"] for r in rows],
                   [split_words(r["hypernyms"]) for r in rows])

    @property
    def num_classes(self) -> int:
        return len(self.class_concepts)

    @cached_property
    def name_matrix(self) -> torch.Tensor:
        """[C, W] 0/1: class c is called word w (its name)."""
        m = torch.zeros(self.num_classes, len(self.words))
        m[torch.arange(self.num_classes), self.class_name_id] = 1.0
        return m

    @cached_property
    def hypernym_matrix(self) -> torch.Tensor:
        """[C, W] 0/1: word w is a hypernym of class c's name."""
        m = torch.zeros(self.num_classes, len(self.words))
        for c, concept in enumerate(self.class_concepts):
            for h in self.hypernyms[concept]:
                m[c, self.index[h]] = 1.0
        return m

    def hypernym_ids(self, word_id: int) -> list[int]:
        return [self.index[h] for h in self.hypernyms.get(self.words[word_id], ())]
