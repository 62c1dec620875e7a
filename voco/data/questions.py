"""MSVD-QA-style questions (one-word answers) from a synthetic video's ground truth.

Question types follow ActivityNet-QA's split into kinds of reasoning. Some need detail inside one
short time segment ("local": where is X, which shape is X), others need several segments ("global":
order of appearance, counts over the whole video):

=============  ======  =====================================================  ==========================
type           scope   example                                                answers
=============  ======  =====================================================  ==========================
what_object    local   what shape is the red object?                          circle, square, ...
what_color     local   what color does the square turn into?                  red, green, ...
count          global  how many circles appear in the video?                  0 .. 9
location       local   where is the red circle when it appears?               left/right/top/bottom/center
motion         local   which direction does the red circle move?              left/right/up/down/none
temporal       global  which shape appears first? / does the red circle       shape, colour, yes/no
                       appear before the blue square?
yes_no         global  is there a red circle in the video?                    yes/no (balanced 50/50)
when           local   when does the red circle appear?                       beginning/middle/end
=============  ======  =====================================================  ==========================

A question is only asked when its answer is unambiguous: "the red circle" names exactly one object
(the world never reuses a (shape, colour) pair), "the square" is only used when there is one square,
and ``when`` skips objects that enter near a third of the video.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from voco.data.world import DIRECTIONS, OBJECT_COLORS, REGIONS, SHAPES, ObjectTrack, Video, as_generator

QUESTION_TYPES: tuple[str, ...] = (
    "what_object", "what_color", "count", "location", "motion", "temporal", "yes_no", "when",
)
TIME_PHASES: tuple[str, ...] = ("beginning", "middle", "end")
COUNT_ANSWERS: tuple[str, ...] = tuple(str(i) for i in range(10))
# Every answer a question of each type can have.
ANSWER_VOCAB: dict[str, frozenset[str]] = {
    "what_object": frozenset(SHAPES),
    "what_color": frozenset(OBJECT_COLORS),
    "count": frozenset(COUNT_ANSWERS),
    "location": frozenset(REGIONS),
    "motion": frozenset(DIRECTIONS),
    "temporal": frozenset(SHAPES) | frozenset(OBJECT_COLORS) | {"yes", "no"},
    "yes_no": frozenset({"yes", "no"}),
    "when": frozenset(TIME_PHASES),
}
# "local": answerable from one short segment; "global": needs several segments of the video.
QUESTION_SCOPE: dict[str, str] = {
    "what_object": "local", "what_color": "local", "count": "global", "location": "local",
    "motion": "local", "temporal": "global", "yes_no": "global", "when": "local",
}
_PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "diamond": "diamonds",
            "cross": "crosses"}
_WHEN_MARGIN = 0.04  # skip `when` questions for objects entering within 4 % of a phase boundary


@dataclass(frozen=True)
class QA:
    """One question with its one-word lowercase answer."""

    question: str
    answer: str
    type: str  # one of QUESTION_TYPES
    object_ids: tuple[int, ...] = ()  # objects the question is about (for debugging / analysis)

    @property
    def scope(self) -> str:
        return QUESTION_SCOPE[self.type]


def _pick(rng: np.random.Generator, items: Sequence):
    return items[int(rng.integers(len(items)))]


def _name(obj: ObjectTrack) -> str:
    """Referring expression "the red circle" uses the colour the object has when it enters."""
    return f"{obj.color} {obj.shape}"


def _is_nameable(obj: ObjectTrack, objects: list[ObjectTrack]) -> bool:
    """True when no other object with the same shape ever shows obj's entering colour."""
    return not any(o is not obj and o.shape == obj.shape and obj.color in o.colors for o in objects)


def _nameable(video: Video, asked: set[str], kind: str) -> list[ObjectTrack]:
    return [o for o in video.objects
            if _is_nameable(o, video.objects) and f"{kind}:{o.object_id}" not in asked]


# A maker gets the video, the rng and the keys of facts already asked about in this video; it returns
# (key, QA) for a new fact, or None. Keys make "is there a red circle" and "does a red circle appear"
# count as the same question.
Maker = Callable[[Video, np.random.Generator, set[str]], tuple[str, QA] | None]


def _what_object(video: Video, rng: np.random.Generator, asked: set[str]) -> tuple[str, QA] | None:
    candidates = [(obj, color) for obj in video.objects for color in obj.colors
                  if f"what_object:{color}" not in asked
                  and not any(o is not obj and color in o.colors for o in video.objects)]
    if not candidates:
        return None
    obj, color = _pick(rng, candidates)
    template = _pick(rng, ("what shape is the {c} object?", "which shape is {c}?",
                           "what is the shape of the {c} object?"))
    return f"what_object:{color}", QA(template.format(c=color), obj.shape, "what_object", (obj.object_id,))


def _what_color(video: Video, rng: np.random.Generator, asked: set[str]) -> tuple[str, QA] | None:
    candidates = [(obj, phase) for obj in video.objects for phase in ("enter", "new")
                  if sum(o.shape == obj.shape for o in video.objects) == 1
                  and f"what_color:{obj.object_id}:{phase}" not in asked
                  and (phase == "enter" or obj.new_color is not None)]
    if not candidates:
        return None
    obj, phase = _pick(rng, candidates)
    key, ids = f"what_color:{obj.object_id}:{phase}", (obj.object_id,)
    if phase == "new":
        template = _pick(rng, ("what color does the {s} turn into?", "what color does the {s} change to?"))
        return key, QA(template.format(s=obj.shape), str(obj.new_color), "what_color", ids)
    if obj.new_color is not None:
        return key, QA(f"what color is the {obj.shape} when it appears?", obj.color, "what_color", ids)
    template = _pick(rng, ("what color is the {s}?", "what color is the {s} in the video?"))
    return key, QA(template.format(s=obj.shape), obj.color, "what_color", ids)


def _count(video: Video, rng: np.random.Generator, asked: set[str]) -> tuple[str, QA] | None:
    """Picks the answer value first (uniformly over the values on offer) so that "1" does not dominate."""
    options: list[tuple[str, QA]] = [(
        "count:background", QA("how many times does the background change color?",
                               str(len(video.backgrounds) - 1), "count"),
    ), (
        "count:objects", QA("how many objects appear in the video?", str(len(video.objects)), "count",
                            tuple(o.object_id for o in video.objects)),
    )]
    for shape in SHAPES:
        ids = tuple(o.object_id for o in video.objects if o.shape == shape)
        options.append((f"count:{shape}", QA(f"how many {_PLURALS[shape]} appear in the video?",
                                             str(len(ids)), "count", ids)))
    options = [(key, qa) for key, qa in options if key not in asked]
    if not options:
        return None
    answer = _pick(rng, sorted({qa.answer for _, qa in options}))
    return _pick(rng, [(key, qa) for key, qa in options if qa.answer == answer])


def _location(video: Video, rng: np.random.Generator, asked: set[str]) -> tuple[str, QA] | None:
    candidates = _nameable(video, asked, "location")
    if not candidates:
        return None
    obj = _pick(rng, candidates)
    if obj.enter_frame == 0 and rng.random() < 0.5:
        question = f"where is the {_name(obj)} at the beginning of the video?"
    else:
        question = f"where is the {_name(obj)} when it appears?"
    return f"location:{obj.object_id}", QA(question, obj.start_region, "location", (obj.object_id,))


def _motion(video: Video, rng: np.random.Generator, asked: set[str]) -> tuple[str, QA] | None:
    candidates = _nameable(video, asked, "motion")
    if not candidates:
        return None
    obj = _pick(rng, candidates)
    template = _pick(rng, ("which direction does the {o} move?", "in which direction does the {o} move?"))
    return f"motion:{obj.object_id}", QA(template.format(o=_name(obj)), obj.direction, "motion",
                                         (obj.object_id,))


def _temporal(video: Video, rng: np.random.Generator, asked: set[str]) -> tuple[str, QA] | None:
    objects = sorted(video.objects, key=lambda o: o.enter_frame)
    if len(objects) < 2:
        return None
    options: list[tuple[str, QA]] = []
    for which, obj in (("first", objects[0]), ("last", objects[-1])):
        options.append((f"temporal:shape:{which}", QA(f"which shape appears {which}?", obj.shape, "temporal",
                                                      (obj.object_id,))))
        if obj.new_color is None:  # its colour is asked only when it never changes
            options.append((f"temporal:color:{which}", QA(f"what color is the {which} object to appear?",
                                                          obj.color, "temporal", (obj.object_id,))))
    options = [(key, qa) for key, qa in options if key not in asked]
    nameable = [o for o in objects if _is_nameable(o, objects)]
    if len(nameable) >= 2 and (not options or rng.random() < 1 / 3):
        first, second = (nameable[i] for i in rng.choice(len(nameable), size=2, replace=False))
        key = "temporal:before:" + ":".join(str(i) for i in sorted((first.object_id, second.object_id)))
        if key not in asked:
            answer = "yes" if first.enter_frame < second.enter_frame else "no"
            return key, QA(f"does the {_name(first)} appear before the {_name(second)}?", answer, "temporal",
                           (first.object_id, second.object_id))
    return _pick(rng, options) if options else None


def _yes_no(video: Video, rng: np.random.Generator, asked: set[str]) -> tuple[str, QA] | None:
    present_pairs = {(c, o.shape) for o in video.objects for c in o.colors}
    present_shapes = {o.shape for o in video.objects}
    present_colors = {c for c, _ in present_pairs}
    template = _pick(rng, ("is there a {c} {s} in the video?", "does a {c} {s} appear in the video?"))
    positives = [pair for pair in sorted(present_pairs) if f"yes_no:{pair[0]}:{pair[1]}" not in asked]
    negatives = [(c, s) for c in OBJECT_COLORS for s in SHAPES
                 if (c, s) not in present_pairs and f"yes_no:{c}:{s}" not in asked]
    # hard negatives share a colour or a shape with something that is there: the model must bind both
    hard = [(c, s) for c, s in negatives if s in present_shapes or c in present_colors]
    if positives and (rng.random() < 0.5 or not negatives):
        color, shape = _pick(rng, positives)
        ids = tuple(o.object_id for o in video.objects if o.shape == shape and color in o.colors)
        return f"yes_no:{color}:{shape}", QA(template.format(c=color, s=shape), "yes", "yes_no", ids)
    if not negatives:
        return None
    color, shape = _pick(rng, hard if hard and rng.random() < 0.75 else negatives)
    return f"yes_no:{color}:{shape}", QA(template.format(c=color, s=shape), "no", "yes_no")


def time_phase(frame: int, num_frames: int) -> str:
    """beginning / middle / end: which third of the video a frame lies in."""
    return TIME_PHASES[min(int(3 * frame / num_frames), 2)]


def _when(video: Video, rng: np.random.Generator, asked: set[str]) -> tuple[str, QA] | None:
    def clear(obj: ObjectTrack) -> bool:
        fraction = obj.enter_frame / video.num_frames
        return min(abs(fraction - 1 / 3), abs(fraction - 2 / 3)) > _WHEN_MARGIN

    candidates = [o for o in _nameable(video, asked, "when") if clear(o)]
    if not candidates:
        return None
    # choose the phase first so that "beginning" (where objects crowd) does not dominate
    phase = _pick(rng, sorted({time_phase(o.enter_frame, video.num_frames) for o in candidates}))
    obj = _pick(rng, [o for o in candidates if time_phase(o.enter_frame, video.num_frames) == phase])
    template = _pick(rng, ("when does the {o} appear?", "when does the {o} first appear in the video?"))
    return f"when:{obj.object_id}", QA(template.format(o=_name(obj)), phase, "when", (obj.object_id,))


QUESTION_MAKERS: dict[str, Maker] = {
    "what_object": _what_object, "what_color": _what_color, "count": _count, "location": _location,
    "motion": _motion, "temporal": _temporal, "yes_no": _yes_no, "when": _when,
}


def make_questions(
    video: Video,
    seed: int | np.random.SeedSequence | np.random.Generator = 0,
    n: int = 6,
    types: Sequence[str] = QUESTION_TYPES,
) -> list[QA]:
    """Up to ``n`` distinct questions about ``video``, spread over ``types`` (deterministic per seed).

    Types are visited in shuffled rounds so a video gets a mix; a type that has no unambiguous
    question for this video is skipped. Fewer than ``n`` questions come back only when the video
    cannot support more distinct ones.
    """
    unknown = set(types) - set(QUESTION_MAKERS)
    if unknown:
        raise ValueError(f"unknown question types {sorted(unknown)}; known: {QUESTION_TYPES}")
    rng = as_generator(seed)
    questions: list[QA] = []
    asked: set[str] = set()
    for _ in range(n + 2):  # rounds; a round adds at most one question per type
        if len(questions) >= n:
            break
        for index in rng.permutation(len(types)):
            made = QUESTION_MAKERS[types[index]](video, rng, asked)
            if made is not None:
                asked.add(made[0])
                questions.append(made[1])
                if len(questions) >= n:
                    break
    return questions
