"""Questions and answers about a video of scenes with known contents (the training side of issue 30).

A `SceneTruth` says what a scene shows (things with a name, hypernyms, colour and count; people); a video is a list
of scenes, each over a run of segments with known start times. `ask(kind, video, rng)` writes one question of a
kind, in one of many wordings, and its answer in the fixed answer style the model is taught:

    what       "A cat, then a red car."  (each scene's things joined by "and"; scenes by ", then ")
    exists     "Yes." / "No."  (names, synonyms and hypernyms of things in view, and things not in view)
    first/last "A cat."
    after      "A car." (the scene after / before the one with X), or "Nothing comes after the cat."
    when       "At 0:04." / "From 0:04 to 0:10." (each run of segments showing X: its first and last segment's
               start); "There is no dog in the video." when X is absent
    colour     "Orange."; absent X as above
    count      "Two."; "None." for an absent thing
    cant_tell  "I can't tell from the video."  (speech, names, thoughts, prices, smells, before/after the video)

None of these wordings is one of the held-out evaluation's (tests/evaluation/test_footage.py checks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from voco.data.questions import QA

CANT_TELL = "I can't tell from the video."
NUMBER_WORDS = ("None", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine", "Ten")
KINDS = ("what", "exists", "first", "last", "after", "when", "colour", "count", "cant_tell")

WHAT = ("What is in the video?", "What is shown in the video?", "What do you see in the video?",
        "What does the video show?", "Describe what you see.", "What appears in this video?",
        "What is visible in the video?", "Which things are in the video?", "What is this video of?",
        "What can you see?", "Name what is shown.", "What are we looking at?", "What's shown here?")
EXISTS = ("Is there {a} in the video?", "Does the video show {a}?", "Do you see {a}?", "Is there {a}?",
          "Does {a} appear in the video?", "Is {a} shown?", "Can you spot {a}?", "Any {plural} in the video?",
          "Are there {plural} in the video?", "Does this video contain {a}?", "Is {a} in the picture?",
          "Did you see {a}?", "Is {a} present?")
FIRST = ("What appears first in the video?", "What is shown first?", "What do you see first?",
         "What comes first?", "What is at the start of the video?", "What does the video begin with?",
         "What is the first thing shown?")
LAST = ("What appears last in the video?", "What is shown at the end of the video?", "What do you see last?",
        "What comes last?", "What does the video end with?", "What is the last thing shown?")
AFTER = ("What appears after {the}?", "What comes after {the}?", "What is shown after {the}?",
         "What follows {the}?", "What do you see after {the}?")
BEFORE = ("What appears before {the}?", "What comes before {the}?", "What is shown before {the}?",
          "What do you see before {the}?")
WHEN = ("When does {the} appear?", "When is {the} shown?", "At what point does {the} appear?",
        "When do you see {the}?", "What time does {the} appear?", "When does {the} show?",
        "At which time is {the} visible?", "When is {the} in the video?")
COLOUR = ("What colour is {the}?", "What color is {the}?", "What is the colour of {the}?",
          "What color is {the} in the video?", "Which colour is {the}?", "What colour does {the} have?")
COUNT = ("How many {plural} are there?", "How many {plural} are in the video?", "How many {plural} do you see?",
         "Count the {plural}.", "How many {plural} are shown?", "What number of {plural} appear?")
CANT_TELL_QUESTIONS = (
    "What is {person} talking about?", "What does {person} say?",
    "What is {person} thinking?", "How does {person} feel?", "What is {person_s} name?", "Who is {person}?",
    "How old is {person}?", "Where does {person} live?", "What is {person_s} job?",
    "What sound does {the} make?", "What is {the} called?", "How much does {the} cost?",
    "How much does {the} weigh?", "How does {the} smell?", "What does {the} taste like?",
    "Who owns {the}?", "Where was {the} bought?", "How old is {the}?", "Why is {the} there?",
    "What music is playing?", "What song is this?", "What language are they speaking?", "Is anyone singing?",
    "What can you hear?", "What noise is in the background?", "Who made this video?",
    "When was this video recorded?", "What year was this filmed?", "What city is this?",
    "What happens after the video ends?", "What happened before the video?", "What will happen next?",
    "Why was this video made?", "What is the temperature?", "Is it going to rain tomorrow?",
    "What is the password?", "What is the phone number?", "What is the weather forecast?",
    "Who is behind the camera?", "What day is it?", "How far away is this place?",
)


@dataclass(frozen=True)
class Thing:
    """One kind of thing in a scene."""

    name: str
    hypernyms: tuple[str, ...] = ()
    colour: str | None = None
    count: int = 1
    counted: bool = True
    """Whether the evidence shows the count (else "How many?" is not asked about it)."""

    @property
    def words(self) -> set[str]:
        return {self.name, *self.hypernyms}


@dataclass(frozen=True)
class SceneTruth:
    """What a scene shows: things (largest first) and people."""

    things: tuple[Thing, ...] = ()
    people: int = 0

    @property
    def listed(self) -> list[Thing]:
        return [*self.things, *((Thing("person", (), None, self.people),) if self.people else ())]

    @property
    def words(self) -> set[str]:
        return set().union(*(t.words for t in self.listed)) if self.listed else set()


@dataclass
class VideoTruth:
    """Scenes in order, each over a run of segments; every segment's start time."""

    scenes: list[SceneTruth]
    scene_of_segment: list[int]
    starts: list[float]
    vocabulary: dict[str, tuple[str, str, tuple[str, ...]]] = field(default_factory=dict)
    """word -> (singular, plural, synonyms) for the words questions may use."""
    absent_pool: tuple[str, ...] = ()
    segment_words: list[set[str]] | None = None
    """Per segment, the words its own evidence shows (None: every segment shows all its scene's words)."""
    siblings: tuple[str, ...] = ()
    """Absent words that share a hypernym with something the video shows (a cat where a dog is seen): the hard
    "No." of a yes/no question."""

    def segments_with(self, word: str) -> list[int]:
        """Segments whose scene has `word` and (when known) whose own evidence shows it: when a thing is seen."""
        return [i for i, s in enumerate(self.scene_of_segment) if word in self.scenes[s].words
                and (self.segment_words is None or word in self.segment_words[i] or word == "person")]

    @property
    def words(self) -> set[str]:
        return set().union(*(s.words for s in self.scenes))


# ---- phrasing ---------------------------------------------------------------------------------------------


def article(word: str) -> str:
    vowel = word[:1].lower() in "aeiou" and not word.lower().startswith(("uni", "use", "one", "eu"))
    return f"an {word}" if vowel else f"a {word}"


def clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def plural_of(word: str, video: VideoTruth) -> str:
    from voco.evidence.projector import plural

    return video.vocabulary.get(word, (word, plural(word), ()))[1]


def thing_phrase(thing: Thing, video: VideoTruth) -> str:
    if thing.count >= 2 and thing.counted:
        return f"{NUMBER_WORDS[min(thing.count, 10)].lower()} {plural_of(thing.name, video)}"
    return article(thing.name)


def scene_phrase(scene: SceneTruth, video: VideoTruth) -> str:
    parts = [thing_phrase(t, video) for t in scene.listed]
    return " and ".join(parts) if parts else "nothing I can name"


def merged_scenes(video: VideoTruth) -> list[tuple[SceneTruth, str]]:
    """(scene, phrase) in order, a scene that reads like the one before merged into it (a viewer sees one scene)."""
    out: list[tuple[SceneTruth, str]] = []
    for scene in video.scenes:
        phrase = scene_phrase(scene, video)
        if not out or phrase != out[-1][1]:
            out.append((scene, phrase))
    return out


def scene_phrases(video: VideoTruth) -> list[str]:
    """Each merged scene's phrase (`merged_scenes`)."""
    return [phrase for _, phrase in merged_scenes(video)]


def sentence(text: str) -> str:
    return f"{text[0].upper()}{text[1:]}."


def spoken(word: str, video: VideoTruth, rng: np.random.Generator) -> str:
    """How a question names a word: itself, or (a third of the time) one of its synonyms."""
    synonyms = video.vocabulary.get(word, (word, "", ()))[2]
    return synonyms[int(rng.integers(len(synonyms)))] if synonyms and rng.random() < 0.33 else word


def runs(indices: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for i in indices:
        if out and i == out[-1][1] + 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


def when_answer(video: VideoTruth, word: str) -> str:
    """"From 0:04 to 0:10." over the segments whose own evidence reads `word` (at least one)."""
    parts = []
    for a, b in runs(video.segments_with(word)):
        start, end = clock(video.starts[a]), clock(video.starts[b])
        parts.append(f"at {start}" if a == b else f"from {start} to {end}")
    return sentence(" and ".join(parts))


def absent_answer(word: str) -> str:
    return f"There is no {word} in the video."


# ---- questions ---------------------------------------------------------------------------------------------


def _pick(options, rng: np.random.Generator):
    return options[int(rng.integers(len(options)))]


def _present_word(video: VideoTruth, rng: np.random.Generator, hypernym: bool) -> str:
    things = [t for s in video.scenes for t in s.listed]
    thing = _pick(things, rng)
    if hypernym and thing.hypernyms:
        return _pick(thing.hypernyms, rng)
    return thing.name


def _absent_word(video: VideoTruth, rng: np.random.Generator) -> str | None:
    present = video.words
    pool = [w for w in video.absent_pool if w not in present]
    return _pick(pool, rng) if pool else None


def _ask_exists(video: VideoTruth, rng: np.random.Generator, sibling: float = 0.0) -> QA | None:
    present = rng.random() < 0.5
    if present:
        word = _present_word(video, rng, rng.random() < 0.4)
    elif sibling > 0 and video.siblings and rng.random() < sibling:  # no draw at 0: earlier recipes unchanged
        word = _pick(video.siblings, rng)
    else:
        word = _absent_word(video, rng)
    if word is None:
        return None
    said = spoken(word, video, rng)
    template = _pick(EXISTS, rng)
    text = template.format(a=article(said), plural=plural_of(said, video))
    return QA(text, "Yes." if present else "No.", "exists")


def _ask_about_thing(kind: str, video: VideoTruth, rng: np.random.Generator, absent: float) -> QA | None:
    """when / colour / count about a thing in view, or (chance `absent`) about one the video does not show."""
    if rng.random() < absent:
        word = _absent_word(video, rng)
        if word is None:
            return None
        the = f"the {spoken(word, video, rng)}"
        if kind == "count":
            return QA(_pick(COUNT, rng).format(plural=plural_of(word, video)), "None.", kind)
        return QA(_pick(WHEN if kind == "when" else COLOUR, rng).format(the=the), absent_answer(word), kind)
    things = [t for s in video.scenes for t in s.listed
              if (kind != "colour" or t.colour) and (kind != "count" or t.counted)]
    if not things:
        return None
    thing = _pick(things, rng)
    word = thing.name if kind != "when" or rng.random() < 0.8 or not thing.hypernyms else _pick(thing.hypernyms, rng)
    if kind == "when":
        if not video.segments_with(word):  # a hypernym no single segment's own evidence reads
            word = thing.name
        if not video.segments_with(word):  # listed from the scene, read in no segment alone: no time to give
            return None
        return QA(_pick(WHEN, rng).format(the=f"the {spoken(word, video, rng)}"), when_answer(video, word), kind)
    if kind == "colour":
        return QA(_pick(COLOUR, rng).format(the=f"the {_unique_word(thing, video, rng)}"), sentence(thing.colour),
                  kind)
    total = max(t.count for s in video.scenes for t in s.listed if t.name == thing.name)
    return QA(_pick(COUNT, rng).format(plural=plural_of(thing.name, video)), sentence(NUMBER_WORDS[min(total, 10)]),
              kind)


def _unique_word(thing: Thing, video: VideoTruth, rng: np.random.Generator) -> str:
    """The thing's name, or (a third of the time) a hypernym or synonym no other thing in the video shares."""
    others = set().union(*(t.words for s in video.scenes for t in s.listed if t.name != thing.name))
    general = [h for h in thing.hypernyms if h not in others]
    if general and rng.random() < 0.33:
        return spoken(_pick(general, rng), video, rng)
    return spoken(thing.name, video, rng)


def _ask_order(kind: str, video: VideoTruth, rng: np.random.Generator) -> QA | None:
    merged = merged_scenes(video)
    scenes, phrases = [s for s, _ in merged], [p for _, p in merged]
    if kind in ("first", "last"):
        phrase = phrases[0] if kind == "first" else phrases[-1]
        return QA(_pick(FIRST if kind == "first" else LAST, rng), sentence(phrase), kind)
    if len(scenes) < 2:
        return None
    i = int(rng.integers(len(scenes)))
    after = rng.random() < 0.6
    unique = [t for t in scenes[i].listed if sum(t.name in s.words for s in scenes) == 1]
    if not unique:
        return None
    thing = _pick(unique, rng)
    the = f"the {thing.name}"
    neighbour = i + 1 if after else i - 1
    if 0 <= neighbour < len(scenes):
        answer = sentence(phrases[neighbour])
    else:
        answer = f"Nothing comes {'after' if after else 'before'} {the}."
    return QA(_pick(AFTER if after else BEFORE, rng).format(the=the), answer, "after")


def _ask_cant_tell(video: VideoTruth, rng: np.random.Generator) -> QA:
    listed = [t for s in video.scenes for t in s.listed]
    people = [t for t in listed if t.name == "person"]
    options = [q for q in CANT_TELL_QUESTIONS if "{person" not in q or people or rng.random() < 0.3]
    template = _pick(options, rng)
    person = _pick(("the man", "the woman", "the person", "he", "she", "the boy", "the girl"), rng)
    possessive = {"he": "his", "she": "her"}.get(person, f"{person}'s")
    thing = _pick(listed, rng).name if listed else "thing"
    text = template.format(person=person, person_s=possessive, the=f"the {thing}")
    return QA(text[0].upper() + text[1:], CANT_TELL, "cant_tell")


def ask(kind: str, video: VideoTruth, rng: np.random.Generator, absent: float = 0.2,
        sibling: float = 0.0) -> QA | None:
    """One question of `kind` about the video and its answer (None when the video has nothing to ask it about);
    `absent`: the chance that a when / colour / count question is about a thing not in the video; `sibling`: the
    chance that a yes/no question's absent thing is one of `video.siblings`."""
    if kind == "what":
        return QA(_pick(WHAT, rng), sentence(", then ".join(scene_phrases(video))), kind)
    if kind == "exists":
        return _ask_exists(video, rng, sibling)
    if kind in ("first", "last", "after"):
        return _ask_order(kind, video, rng)
    if kind in ("when", "colour", "count"):
        return _ask_about_thing(kind, video, rng, absent)
    if kind == "cant_tell":
        return _ask_cant_tell(video, rng)
    raise ValueError(f"unknown question kind {kind!r}; known: {KINDS}")
