"""Judging predictions: `exact` (offline, normalised match) and `openai` (the Video-ChatGPT protocol).

Both give each (question, answer, prediction) a `Judgment`: `pred` "yes"/"no" and an integer `score`
0..5; accuracy is yes / (yes + no) and the score its mean (evaluation/metrics.py).

`openai` (evaluation/openai_judge.py) asks an OpenAI-compatible endpoint, as Video-ChatGPT's QA scorer does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

JUDGES: tuple[str, ...] = ("exact", "openai")


@dataclass(frozen=True)
class Judgment:
    pred: str | None
    """'yes' or 'no'; None when the judge failed."""
    score: int | None
    """0..5; None when the judge failed or gives no score (exact)."""
    error: str | None = None
    raw: str | None = None
    """The judge's reply text (openai)."""
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.pred in ("yes", "no")

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


Triple = tuple[str, str, str]  # (question, answer, prediction)


class JudgeFatal(RuntimeError):
    """A problem no retry fixes (bad key, unknown endpoint or model): judging stops."""


# ---- exact --------------------------------------------------------------------------------------------

_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
          "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
NUMBER_WORDS: dict[str, str] = {w: str(i) for i, w in enumerate(_UNITS)}
NUMBER_WORDS.update({w: str(20 + 10 * i) for i, w in enumerate(_TENS)})
NUMBER_WORDS["hundred"] = "100"
_TEN_DIGITS = frozenset(NUMBER_WORDS[w] for w in _TENS)
ARTICLES = frozenset({"a", "an", "the"})
IRREGULAR_PLURALS: dict[str, str] = {
    "people": "person", "persons": "person", "men": "man", "women": "woman", "children": "child",
    "feet": "foot", "teeth": "tooth", "mice": "mouse", "geese": "goose", "oxen": "ox", "knives": "knife",
    "wolves": "wolf", "leaves": "leaf", "shelves": "shelf", "dice": "die",
}
_NEVER_SINGULAR = frozenset({"yes", "this", "is", "was", "has", "does", "his", "its", "us", "as", "plus", "news",
                             "bus", "gas", "glasses", "pants", "jeans", "shorts", "trousers", "scissors", "series",
                             "species", "physics", "always", "sometimes"})


def normalize(text: str) -> list[str]:
    """Lower case, no punctuation, no articles, number words as digits ("twenty one" -> "21")."""
    text = text.lower().replace("'", "").replace("\u2019", "")
    words = [w for w in re.sub(r"[^\w\s]|_", " ", text).split() if w not in ARTICLES]
    out: list[str] = []
    for word in words:
        digit = NUMBER_WORDS.get(word, word)
        if out and out[-1] in _TEN_DIGITS and len(digit) == 1 and digit in "123456789":
            out[-1] = str(int(out[-1]) + int(digit))  # "twenty one" / "twenty-one" -> 21
            continue
        out.append(digit)
    return out


def singular_forms(word: str) -> set[str]:
    """The word and what it may be the plural of: circles -> circle, boxes -> box, berries -> berry."""
    forms = {word}
    if word in IRREGULAR_PLURALS:
        forms.add(IRREGULAR_PLURALS[word])
    if len(word) > 3 and word.endswith("s") and word not in _NEVER_SINGULAR and not word.endswith("ss"):
        forms.add(word[:-1])
        if word.endswith("ies"):
            forms.add(word[:-3] + "y")
        if word.endswith("es"):
            forms.add(word[:-2])
    return forms


def words_match(a: str, b: str) -> bool:
    return a == b or bool(singular_forms(a) & singular_forms(b))


def exact_match(answer: str, pred: str) -> bool:
    """Normalised equality: case, articles, punctuation, number words, simple plurals are ignored."""
    a, p = normalize(answer), normalize(pred)
    return bool(a) and len(a) == len(p) and all(words_match(x, y) for x, y in zip(a, p, strict=True))


class ExactJudge:
    """Offline judge for one-word answers: normalised match, yes or no. It gives no score (a 5-or-0 score
    would only be 5 x accuracy)."""

    name = "exact"
    gives_score = False

    def describe(self) -> dict:
        return {"judge": "exact", "rule": "normalised match (case, articles, punctuation, number words, plurals)"}

    def judge(self, question: str, answer: str, pred: str) -> Judgment:
        return Judgment("yes" if exact_match(answer, pred) else "no", None)

    def judge_many(self, triples: Sequence[Triple], progress: bool = False) -> list[Judgment]:
        return [self.judge(*t) for t in triples]
