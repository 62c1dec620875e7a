"""Questions about held-out footage and how answers are judged (`scripts/eval_real_footage.py`).

Kinds (each judged by whole-word matching on the answer, never by a model):

    what       every scene's subject is named (any of its `subject` words)
    exists     "Is there X?": yes/no right; balanced: two things in view (a noun or synonym, and a hypernym when
               the footage has one) and two absent things per video
    first/last multi-scene videos: the first / last scene's subject is named and no other scene's
    when       a time (m:ss) is named and every named time lies inside the thing's scene (ends included)
    absent     a question about something not in the video ("When does the dog show up?"): the answer says it
               is not there and names no time
    count      "How many X?" where a viewer sees the number at a glance: the number is right
    colour     "What colour is X?" where the footage shows it: an accepted colour word is named
    cant_tell  a question no one can answer from the pixels (speech, names, what happens after the clip, ...):
               the answer says it cannot tell

The wordings below are the evaluation's own; `tests/evaluation/test_footage.py` checks that no training
template uses them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from evaluation.footage import FootageSet, HeldoutVideo, clip_spans

KINDS = ("what", "exists", "first", "last", "when", "absent", "count", "colour", "cant_tell")

WHAT = ("What can be seen in this clip?", "Tell me what this footage shows.", "What's in this clip?")
EXISTS = ("Can you see {a} anywhere in this clip?", "Does {a} appear in this footage?", "Is {a} visible in this clip?")
FIRST = ("What shows up first in this clip?", "Which thing is seen first in the footage?")
LAST = ("What is the final thing shown in this clip?", "What shows up at the very end of the footage?")
WHEN = ("At what time does {the} show up?", "When can {the} be seen in this clip?")
COUNT = ("How many {plural} can be seen in this clip?", "What is the number of {plural} in the footage?")
COLOUR = ("What colour is {the} in this clip?", "Which colour does {the} have in this footage?")
CANT_TELL = (
    "What is {person} saying?", "What song is playing in this clip?", "What language is spoken in this footage?",
    "What is the name of {subject}?", "What will happen after this clip ends?", "Who filmed this footage?",
    "What does {subject} smell like?", "How much did {subject} cost?", "What was going on just before this clip?",
    "What day of the week was this footage recorded?", "Why was this clip recorded?", "How heavy is {subject}?",
)
PLURALS = {"person": "people", "man": "men", "woman": "women", "child": "children", "bus": "buses",
           "glasses": "glasses", "fish": "fish", "mouse": "mice"}
NUMBERS = {"no": 0, "none": 0, "zero": 0, "one": 1, "a single": 1, "two": 2, "three": 3, "four": 4, "five": 5,
           "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}
CANT_TELL_RE = re.compile(r"can'?t tell|cannot tell|can not tell|not possible to tell|unable to tell|no way to tell")
NEGATION_RE = re.compile(r"\b(no|not|never|none|nothing|doesn't|does not|isn't|is not|don't|do not)\b")
TIME_RE = re.compile(r"\b(?:(\d+):)?(\d{1,2}):(\d{2})\b")


@dataclass(frozen=True)
class Question:
    kind: str
    text: str
    truth: object
    """What `correct` compares with: per kind (see `correct`)."""
    subject: str = ""
    """The thing asked about (exists, when, absent, count, colour), for reports."""


def article(word: str) -> str:
    vowel = word[:1].lower() in "aeiou" and not word.lower().startswith(("uni", "use", "one", "eu"))
    return f"an {word}" if vowel else f"a {word}"


def plural(word: str) -> str:
    if word in PLURALS:
        return PLURALS[word]
    return word + ("es" if word.endswith(("s", "x", "ch", "sh")) else "s")


def names(answer: str, words) -> bool:
    """Whether the answer uses one of `words` as a whole word (or its plural)."""
    text = answer.lower()
    return any(re.search(rf"\b{re.escape(w.lower())}(s|es)?\b", text) for w in words)


def yes_no(answer: str) -> str | None:
    first = re.match(r"\W*(\w+)", answer.lower())
    return first.group(1) if first and first.group(1) in ("yes", "no") else None


def clock_times(answer: str) -> list[float]:
    """Every m:ss or h:mm:ss time named in an answer, in seconds."""
    return [int(h or 0) * 3600 + int(m) * 60 + int(s) for h, m, s in TIME_RE.findall(answer)]


def said_number(answer: str) -> int | None:
    text = answer.lower()
    digits = re.search(r"\b(\d+)\b", text)
    if digits:
        return int(digits.group(1))
    found = [(m.start(), n) for word, n in NUMBERS.items() for m in re.finditer(rf"\b{word}\b", text)]
    return min(found)[1] if found else None


def says_cant_tell(answer: str) -> bool:
    return bool(CANT_TELL_RE.search(answer.lower().replace("’", "'")))


def correct(question: Question, answer: str) -> bool:
    kind, truth = question.kind, question.truth
    if kind == "what":
        return all(names(answer, subject) for subject in truth)
    if kind == "exists":
        return yes_no(answer) == truth
    if kind in ("first", "last"):
        target, others = truth
        return names(answer, target) and not names(answer, others)
    if kind == "when":
        times = clock_times(answer)
        return bool(times) and all(any(a <= t <= b for a, b in truth) for t in times)
    if kind == "absent":
        return bool(NEGATION_RE.search(answer.lower())) and not clock_times(answer)
    if kind == "count":
        return said_number(answer) == truth
    if kind == "colour":
        return names(answer, truth)
    if kind == "cant_tell":
        return says_cant_tell(answer)
    raise ValueError(f"unknown question kind {kind!r}")


# ---- questions of one video -------------------------------------------------------------------------------


def _pick(options, rng: np.random.Generator):
    return options[int(rng.integers(len(options)))]


def _exists(video: HeldoutVideo, footage: FootageSet, rng: np.random.Generator) -> list[Question]:
    """Two things in view (a noun or synonym, then a hypernym when there is one) and two absent things."""
    scenes = [s.footage for s in video.scenes]
    mentioned = set().union(*(f.mentioned for f in scenes))
    out = []
    shown = _pick(scenes, rng)
    nouns = [*shown.seen.get("noun", ()), *shown.seen.get("synonym", ())]
    general = [*_pick(scenes, rng).seen.get("hypernym", ())] or [w for f in scenes for w in f.present]
    for word in (_pick(nouns, rng), _pick(general, rng)):
        out.append(Question("exists", _pick(EXISTS, rng).format(a=article(word)), "yes", word))
    absent = [w for w in footage.absent if w not in mentioned]
    for word in rng.choice(absent, size=2, replace=False):
        out.append(Question("exists", _pick(EXISTS, rng).format(a=article(str(word))), "no", str(word)))
    return out


def _when(video: HeldoutVideo, rng: np.random.Generator) -> Question | None:
    """When a scene's subject shows up: the spans of every scene that shows it (a clip: its segments that do).
    Not asked when another scene of the video might be said to show it too (in its `avoid`)."""
    scene = _pick(video.scenes, rng)
    thing = scene.footage
    noun = thing.refer.split()[-1]
    if any(noun in s.footage.avoid for s in video.scenes):
        return None
    if thing.is_clip:
        spans = clip_spans(thing, thing.seen["noun"][0])
    else:
        spans = [(s.start_s, s.end_s) for s in video.scenes if noun in s.footage.present | set(s.footage.subject)]
    return Question("when", _pick(WHEN, rng).format(the=thing.refer), spans, thing.refer)


def _absent(video: HeldoutVideo, footage: FootageSet, rng: np.random.Generator) -> Question:
    mentioned = set().union(*(s.footage.mentioned for s in video.scenes))
    word = _pick([w for w in footage.absent if w not in mentioned and w not in ("person", "animal", "vehicle",
                                                                                 "food", "plant", "drink")], rng)
    template = _pick((WHEN[0], COLOUR[0]), rng)
    return Question("absent", template.format(the=f"the {word}"), None, word)


def _count(video: HeldoutVideo, rng: np.random.Generator) -> Question | None:
    people = [s for s in video.scenes if s.footage.count.get("thing") == "people"]
    if people and rng.random() < 0.5:
        n = sum(s.footage.count["n"] for s in people)
        return Question("count", _pick(COUNT, rng).format(plural="people"), n, "people")
    counted = [s.footage for s in video.scenes if s.footage.count.get("thing") not in (None, "people")]
    things = [f.count["thing"] for f in counted]
    unique = [f for f in counted if things.count(f.count["thing"]) == 1]
    if not unique:
        return None
    chosen = _pick(unique, rng)
    return Question("count", _pick(COUNT, rng).format(plural=chosen.count["thing"]), chosen.count["n"],
                    chosen.count["thing"])


def _colour(video: HeldoutVideo, rng: np.random.Generator) -> Question | None:
    coloured = [s.footage for s in video.scenes if s.footage.colour]
    if not coloured:
        return None
    chosen = _pick(coloured, rng)
    return Question("colour", _pick(COLOUR, rng).format(the=chosen.colour["thing"]),
                    tuple(chosen.colour["accepted"]), chosen.colour["thing"])


def _cant_tell(video: HeldoutVideo, rng: np.random.Generator) -> Question:
    scenes = [s.footage for s in video.scenes]
    people = [f for f in scenes if f.person]
    options = [t for t in CANT_TELL if "{person}" not in t or people]
    template = _pick(options, rng)
    person = _pick(people, rng).refer if people else ""
    return Question("cant_tell", template.format(person=person, subject=_pick(scenes, rng).refer), None)


def video_questions(video: HeldoutVideo, footage: FootageSet, rng: np.random.Generator) -> list[Question]:
    """Every question asked about one video (fixed by `rng`)."""
    subjects = [s.footage.subject for s in video.scenes]
    out = [Question("what", _pick(WHAT, rng), tuple(subjects))]
    out += _exists(video, footage, rng)
    if len(video.scenes) > 1:
        first, last = subjects[0], subjects[-1]
        out.append(Question("first", _pick(FIRST, rng), (first, [w for s in subjects[1:] for w in s
                                                                   if w not in first])))
        out.append(Question("last", _pick(LAST, rng), (last, [w for s in subjects[:-1] for w in s
                                                                if w not in last])))
    out += [q for q in (_when(video, rng), _absent(video, footage, rng), _count(video, rng), _colour(video, rng))
            if q is not None]
    out.append(_cant_tell(video, rng))
    return out


def named_things(answer: str) -> list[str]:
    """The nouns a "what" answer names ("A cat, then a red car." -> cat, car): the last word of each listed
    phrase, for the contradiction check."""
    text = re.sub(r"[^a-z ,]", " ", answer.lower())
    phrases = re.split(r",| then | and | with ", text)
    skip = {"video", "clip", "footage", "it", "i", "tell", "nothing", "shows", "see", "can", "the", "a", "an"}
    words = [p.split()[-1] for p in phrases if p.split()]
    return list(dict.fromkeys(w for w in words if w not in skip and len(w) > 2))
