"""Who answers the held-out footage questions, and the run that scores them side by side.

Answerers (each `answer(video, question, history=()) -> str`):

    ModelAnswerer     a VoCo model: the video's segments compressed in memory, answered through the one answering
                      session (`voco.session.AnswerSession`) with each segment's time, as the app answers; with
                      `cache_dtype="int8"` from those caches as an int8 store gives them back (store/quant.py)
    QuestionOnly      the same model answering from caches of mid-grey frames (same number of segments and times):
                      what it gets right comes from the question alone
    ViewAnswerer      a diagnostic for a model trained with views (configs/default.yaml): the same model answering
                      from its `full` view (every vision token's KV) or `summary` view (the KV its caches are
                      distilled toward): does its reader read held-out footage at all, before compression?
    LookupRule        no language model: the classifier's top-1 class word per segment ("A cat, then a cup."),
                      "No." to every yes/no, "At the beginning." to every when, "One." to every how-many, the
                      dominant colour of the frames' centre to every colour question
    EvidenceRule      a diagnostic, not a baseline (`--evidence-rule`): the model's own evidence slots per segment
                      read by rules that are told the question's kind and subject (no parsing): what a perfect
                      reader of that evidence would score, so the gap to the model is the reader's and the gap to
                      1.0 the evidence's

`evaluate` runs every answerer on the same questions and reports accuracy per kind (with n), the macro average over
kinds, the share of in-scope answers that say "I can't tell", and for models the contradiction rate (a thing named
in the answer to "What can be seen?" then denied by "Is there X?") and the history-flip rate (a yes/no answer that
changes when the chat already holds an unrelated turn).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np

from evaluation.footage import FootageSet, HeldoutVideo
from evaluation.footage_qa import (
    EXISTS,
    KINDS,
    Question,
    article,
    correct,
    named_things,
    says_cant_tell,
    video_questions,
    yes_no,
)
from store.quant import MODEL, as_stored, check_cache_dtype


class ModelAnswerer:
    """A VoCo model answering from its caches of the video, through `AnswerSession` (selection `all`).

    cache_dtype: how a store would keep the caches (store/quant.py `CACHE_DTYPES`); `int8` answers from them after
    the store's own quantize/dequantize round trip, so its accuracy is what int8 ingest costs.
    """

    def __init__(self, name: str, model, max_new_tokens: int = 32, cache_dtype: str = MODEL):
        check_cache_dtype(cache_dtype)
        self.name = name if cache_dtype == MODEL else f"{name} ({cache_dtype} caches)"
        self.model, self.max_new_tokens, self.cache_dtype = model, max_new_tokens, cache_dtype
        self._video: str | None = None
        self._timeline = None

    def caches(self, video: HeldoutVideo) -> list:
        return as_stored(self.model.compress(video.segments), self.cache_dtype)

    def timeline(self, video: HeldoutVideo):
        from voco.session import Timeline

        if self._video != video.name:
            self._timeline = Timeline.of(self.caches(video), video.times)
            self._video = video.name
        return self._timeline

    def answer(self, video: HeldoutVideo, question: str, history: Sequence[tuple[str, str]] = ()) -> str:
        from voco.session import AnswerSession

        session = AnswerSession(self.model, self.timeline(video), "all")
        return session.answer(question, max_new_tokens=self.max_new_tokens, history=tuple(history))[0]


class QuestionOnly(ModelAnswerer):
    """The model answering from mid-grey segments: one grey cache serves every place (caches are position-free)."""

    def __init__(self, name: str, model, max_new_tokens: int = 32):
        super().__init__(name, model, max_new_tokens)
        self._grey = None

    def caches(self, video: HeldoutVideo) -> list:
        if self._grey is None:
            self._grey = self.model.compress([np.full_like(video.segments[0], 128)])[0]
        return [self._grey] * len(video.segments)


class ViewAnswerer(ModelAnswerer):
    """The model answering from a training view instead of its `<voco>` caches (see the module doc)."""

    VIEWS = ("full", "summary")

    def __init__(self, name: str, model, view: str, max_new_tokens: int = 32):
        if view not in self.VIEWS:
            raise ValueError(f"view must be one of {self.VIEWS}, got {view!r}")
        super().__init__(f"{name} ({view} view)", model, max_new_tokens)
        self.view = view

    @contextmanager
    def _compressor(self):
        """The full view is the `full` compressor's caches, which the session reads only with that compressor."""
        if self.view != "full":
            yield
            return
        from voco.compressors.dense import FullCompressor

        kept, self.model.compressor = self.model.compressor, FullCompressor(self.model.k)
        try:
            yield
        finally:
            self.model.compressor = kept

    def caches(self, video: HeldoutVideo) -> list:
        if self.view == "full":
            with self._compressor():
                return self.model.compress(video.segments)
        import torch

        from voco.cache import SegmentCache
        from voco.train.kv_distill import summary_view

        with torch.inference_mode():
            view = summary_view(self.model, video.segments)  # kv [B, layers, 2, H, k, D] at the <voco> slots
        return [SegmentCache(kv, view.layout.kept_start, self.model.fingerprint, self.model.compressor.name)
                for kv in view.kv]

    def answer(self, video: HeldoutVideo, question: str, history: Sequence[tuple[str, str]] = ()) -> str:
        with self._compressor():
            return super().answer(video, question, history)


class LookupRule:
    """No language model: fixed answers built from the classifier's top-1 class per segment (see module doc)."""

    name = "lookup rule"

    def __init__(self, classifier_model):
        from voco.vision import read_class_names

        self.model = classifier_model
        self.words = [n.split()[-1].lower() for n in read_class_names(classifier_model.assembly.class_names_path())]
        self._memo: dict[str, list[str]] = {}

    def top_words(self, video: HeldoutVideo) -> list[str]:
        if video.name not in self._memo:
            probs = self.model.vision_features(video.segments).float()  # [T * F, 1, C]
            top = probs.reshape(len(video.segments), -1, probs.shape[-1]).mean(1).argmax(-1)
            self._memo[video.name] = [self.words[int(i)] for i in top]
        return self._memo[video.name]

    def answer(self, video: HeldoutVideo, question: Question, history=()) -> str:
        words = self.top_words(video)
        merged = [w for i, w in enumerate(words) if i == 0 or w != words[i - 1]]
        listing = ", then ".join(article(w) for w in merged)
        kind = question.kind
        if kind == "exists":
            return "No."
        if kind == "first":
            return f"{article(words[0]).capitalize()}."
        if kind == "last":
            return f"{article(words[-1]).capitalize()}."
        if kind in ("when",) or (kind == "absent" and question.text.startswith(("At what", "When"))):
            return "At the beginning."
        if kind == "count":
            return "One."
        if kind in ("colour", "absent"):
            return self.centre_colour(video).capitalize() + "."
        return f"{listing[0].upper()}{listing[1:]}."

    @staticmethod
    def centre_colour(video: HeldoutVideo) -> str:
        from voco.colours import dominant_colour

        frames = np.concatenate(video.segments)  # [T * F, H, W, 3]
        h, w = frames.shape[1:3]
        return dominant_colour(frames[:, h // 4: 3 * h // 4, w // 4: 3 * w // 4])


class EvidenceRule:
    """The evidence tower's slots per segment read by rules told the question's kind and subject (module doc)."""

    name = "evidence rule"

    def __init__(self, model):
        from voco.evidence.concepts import Vocabulary
        from voco.evidence.projector import plural

        self.model, self.words = model, model.vision_tower.words
        vocabulary = Vocabulary.load()
        self.aliases = {w: {w, plural(w), *vocabulary.synonyms.get(w, ())} for w in self.words}
        self.aliases["person"] |= {"man", "woman", "men", "women", "people", "child", "boy", "girl"}
        self._memo: dict[str, list[list[tuple[str, set[str], int, int]]]] = {}

    def slots(self, video: HeldoutVideo) -> list[list[tuple[str, set[str], int, int]]]:
        """Per segment, its filled slots: (name, every word it answers to, colour id, count)."""
        from voco.evidence.tower import COLOUR, COUNT, HYPERNYMS, NAME

        if video.name not in self._memo:
            slots = self.model.vision_features(video.segments)  # [T, S, FIELDS]
            self._memo[video.name] = [
                [(self.words[int(s[NAME])],
                  set().union(*(self.aliases[self.words[int(w)]] for w in (s[NAME], *s[HYPERNYMS:]) if w >= 0)),
                  int(s[COLOUR]), int(s[COUNT])) for s in frame if s[NAME] >= 0] for frame in slots]
        return self._memo[video.name]

    def answer(self, video: HeldoutVideo, question: Question) -> str:
        from voco.colours import COLOURS
        from voco.train.scene_questions import NUMBER_WORDS, clock, runs

        segments, kind = self.slots(video), question.kind
        subject = re.sub(r"^(the|an?) ", "", question.subject.lower())
        phrases = [" and ".join(article(name) for name, *_ in frame) or "nothing" for frame in segments]
        merged = [p for i, p in enumerate(phrases) if i == 0 or p != phrases[i - 1]]
        if kind in ("what", "first", "last"):
            said = {"what": merged, "first": merged[:1], "last": merged[-1:]}[kind]
            return ", then ".join(said).capitalize() + "."
        if kind == "cant_tell":
            return "I can't tell from the video."
        hits = [(i, slot) for i, frame in enumerate(segments) for slot in frame
                if subject in slot[1] or subject.rstrip("s") in slot[1]]
        if kind == "exists":
            return "Yes." if hits else "No."
        if kind == "count":
            return f"{NUMBER_WORDS[min(max(hits[0][1][3], 1), 10)] if hits else 'One'}."
        if kind == "colour" and (hits or segments[0]):
            colour = (hits[0][1] if hits else segments[0][0])[2]
            return f"{COLOURS[colour].capitalize()}." if colour >= 0 else "I can't tell from the video."
        if not hits:
            return f"There is no {subject} in the video."
        spans = [f"at {clock(video.times[a][0])}" if a == b else
                 f"from {clock(video.times[a][0])} to {clock(video.times[b][0])}"
                 for a, b in runs(sorted({i for i, _ in hits}))]
        return " and ".join(spans).capitalize() + "."


def _ask(answerer, video: HeldoutVideo, question: Question, history=()) -> str:
    if isinstance(answerer, (LookupRule, EvidenceRule)):
        return answerer.answer(video, question)
    return answerer.answer(video, question.text, history)


def consistency(answerer, video: HeldoutVideo, questions: list[Question], said: list[str]) -> dict:
    """Contradictions (things named by the "what" answer, denied when asked about) and history flips (yes/no
    answers that change after an unrelated earlier turn) of one video."""
    if isinstance(answerer, (LookupRule, EvidenceRule)):
        return {}
    what = next(i for i, q in enumerate(questions) if q.kind == "what")
    named = named_things(said[what])
    denied = [n for n in named if yes_no(answerer.answer(video, EXISTS[2].format(a=article(n)))) == "no"]
    earlier = [(questions[what].text, said[what])]
    cant = next((q for q, a in zip(questions, said, strict=True) if q.kind == "cant_tell"), None)
    if cant is not None:
        earlier_unrelated = [(cant.text, said[questions.index(cant)])]
    flips, asked = 0, 0
    for q, alone in zip(questions, said, strict=True):
        if q.kind != "exists":
            continue
        for history in (earlier, earlier_unrelated) if cant is not None else (earlier,):
            asked += 1
            flips += yes_no(answerer.answer(video, q.text, history)) != yes_no(alone)
    return {"named": len(named), "denied": denied, "flip_checks": asked, "flips": flips}


def evaluate(answerers: list, videos: list[HeldoutVideo], footage: FootageSet, seed: int = 0,
             checks: bool = True, log=print) -> dict:
    """Every answerer on every video's questions; returns the report (per answerer) and the samples."""
    rng = np.random.default_rng(seed)
    plan = [(video, video_questions(video, footage, rng)) for video in videos]
    report, samples = {}, []
    for answerer in answerers:
        started = time.perf_counter()
        per_kind: dict[str, list[bool]] = {k: [] for k in KINDS}
        cant_in_scope, named, denied, flip_checks, flips = [], 0, 0, 0, 0
        for video, questions in plan:
            said = [_ask(answerer, video, q) for q in questions]
            for q, answer in zip(questions, said, strict=True):
                ok = correct(q, answer)
                per_kind[q.kind].append(ok)
                if q.kind != "cant_tell":
                    cant_in_scope.append(says_cant_tell(answer))
                samples.append({"answerer": answerer.name, "video": video.name, "kind": q.kind,
                                "question": q.text, "answer": answer, "correct": ok})
            if checks:
                c = consistency(answerer, video, questions, said)
                named, denied = named + c.get("named", 0), denied + len(c.get("denied", ()))
                flip_checks, flips = flip_checks + c.get("flip_checks", 0), flips + c.get("flips", 0)
        report[answerer.name] = summarise(per_kind, cant_in_scope, named, denied, flip_checks, flips,
                                          time.perf_counter() - started)
        log(format_line(answerer.name, report[answerer.name]))
    return {"videos": len(videos), "questions": sum(len(q) for _, q in plan), "answerers": report,
            "samples": samples}


def summarise(per_kind: dict[str, list[bool]], cant_in_scope: list[bool], named: int, denied: int,
              flip_checks: int, flips: int, seconds: float) -> dict:
    accuracy = {k: round(float(np.mean(v)), 3) for k, v in per_kind.items() if v}
    out = {"accuracy": accuracy, "n": {k: len(v) for k, v in per_kind.items() if v},
           "average": round(float(np.mean(list(accuracy.values()))), 3),
           "micro": round(float(np.mean([x for v in per_kind.values() for x in v])), 3),
           "cant_tell_in_scope": round(float(np.mean(cant_in_scope)), 3) if cant_in_scope else None,
           "seconds": round(seconds, 1)}
    if named or flip_checks:
        out["contradiction_rate"] = round(denied / named, 3) if named else 0.0
        out["contradictions"] = f"{denied}/{named}"
        out["history_flip_rate"] = round(flips / flip_checks, 3) if flip_checks else 0.0
        out["history_flips"] = f"{flips}/{flip_checks}"
    return out


def format_line(name: str, r: dict) -> str:
    kinds = " ".join(f"{k}={v:.2f}" for k, v in r["accuracy"].items())
    extra = ""
    if "contradiction_rate" in r:
        extra = f" | contradictions {r['contradictions']} flips {r['history_flips']}"
    return f"{name:>22}: average {r['average']:.3f} (micro {r['micro']:.3f}) | {kinds}{extra}"
