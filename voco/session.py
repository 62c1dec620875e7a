"""One answering session: a video's caches in, segments selected, the prompt, streamed decoding with stats.

The library (`VoCoModel.answer` / `stream`), the app and the evaluation answerers all answer through
`AnswerSession`; none keeps a decoding loop of its own. Storage-free: callers bring the caches (and, when
they know them, each segment's start-end seconds), e.g. from `store.timelines.StoredTimelines`.

An answer is an `AnswerJob` (selection and the prompt pass, then tokens to text pieces, the stats last) run by
`voco.batching`: alone in the caller's thread (`stream`, `answer`), or batched with other questions by an
`AnswerEngine` (the app), taking the same steps either way.

Caches are position-free, so any subset of segments kept in time order is a valid timeline: a
`Selector` picks which segments to answer from when the video does not fit the model's positions
(`uniform`), always all of them (`all`, which fails loudly when they do not fit), or those most relevant
to the question plus temporal context (`retrieved`, from per-segment relevance scores the caller brings).
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from voco.batching import Job, decode_alone
from voco.cache import SegmentCache
from voco.generation import (
    GenerationConfig,
    Row,
    StopText,
    check_position_budget,
    eos_ids,
    next_token,
    place,
    sampler,
    segments_that_fit,
    stop_strings,
)

__all__ = ["AllSegments", "AnswerJob", "AnswerPiece", "AnswerSession", "RetrievedSegments", "SegmentSpan", "Selector",
           "SessionStats", "Timeline", "UniformSubset", "make_selector"]


# ---- what goes in: a timeline of caches ------------------------------------------------------------


Scores = Sequence[float] | Callable[[], Sequence[float]] | None
"""Relevance per segment, or a callable giving it when a selector needs it (scoring costs an LM pass)."""


@dataclass(frozen=True)
class SegmentSpan:
    """A segment's place in its video: index and, when known, start-end seconds."""

    index: int
    start_s: float | None = None
    end_s: float | None = None

    def to_dict(self) -> dict:
        return {"index": self.index, "start_s": self.start_s, "end_s": self.end_s}

    def label(self) -> str:
        if self.start_s is None or self.end_s is None:
            return f"#{self.index}"
        return f"{self.start_s:.0f}-{self.end_s:.0f} s"


@dataclass(frozen=True)
class Timeline:
    """A video's caches in time order, with each segment's span."""

    caches: tuple[SegmentCache, ...]
    spans: tuple[SegmentSpan, ...]

    def __post_init__(self) -> None:
        if len(self.caches) != len(self.spans):
            raise ValueError(f"Timeline: {len(self.caches)} caches but {len(self.spans)} segment spans; "
                             "give one (start_s, end_s) per cache")

    @classmethod
    def of(cls, caches: Sequence[SegmentCache], times: Sequence[tuple[float, float]] | None = None) -> Timeline:
        """Caches with their (start_s, end_s) times, or index-only spans when `times` is None."""
        if times is None:
            spans = tuple(SegmentSpan(i) for i in range(len(caches)))
        else:
            spans = tuple(SegmentSpan(i, float(a), float(b)) for i, (a, b) in enumerate(times))
        return cls(tuple(caches), spans)

    def __len__(self) -> int:
        return len(self.caches)

    def starts(self, segment_seconds: float) -> list[float]:
        """Each segment's start seconds: its span's, or index * segment_seconds where the span has none (what a
        model with time labels writes after each cache; a subset keeps each segment's own start)."""
        return [s.start_s if s.start_s is not None else s.index * segment_seconds for s in self.spans]


# ---- segment selection -----------------------------------------------------------------------------

class Selector(ABC):
    """Which segments to answer from: sorted indices into the timeline."""

    name: ClassVar[str]
    subset_note: ClassVar[str] = ""
    """How a subset was chosen, for people ("sampled uniformly")."""

    @abstractmethod
    def select(self, n_segments: int, budget: int, scores: Sequence[float] | None = None) -> list[int]:
        """`budget`: how many segments fit the model's positions; `scores`: relevance per segment, if known."""


def uniform_indices(n_segments: int, count: int) -> list[int]:
    """`count` indices spread evenly over `0 .. n_segments - 1`, first and last included."""
    if count >= n_segments:
        return list(range(n_segments))
    if count <= 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, n_segments - 1, count)})


class AllSegments(Selector):
    """Every segment; the context check fails loudly when they do not fit."""

    name = "all"

    def select(self, n_segments: int, budget: int, scores: Sequence[float] | None = None) -> list[int]:
        return list(range(n_segments))


@dataclass
class UniformSubset(Selector):
    """Every segment when they fit, else a uniform subset spanning the whole video."""

    name: ClassVar[str] = "uniform"
    subset_note: ClassVar[str] = "sampled uniformly"
    max_segments: int | None = None
    """Answer from at most this many segments even when all would fit (None: only when they don't)."""

    def __post_init__(self) -> None:
        if self.max_segments is not None and self.max_segments < 1:
            raise ValueError(f"uniform: max_segments must be >= 1 or None, got {self.max_segments}")

    def select(self, n_segments: int, budget: int, scores: Scores = None) -> list[int]:
        return uniform_indices(n_segments, min(budget, self.max_segments or budget))


@dataclass
class RetrievedSegments(Selector):
    """The segments most relevant to the question, each with its neighbours, plus a sparse uniform sketch
    of the whole video, kept in time order. Needs one relevance score per segment (higher is better)."""

    name: ClassVar[str] = "retrieved"
    subset_note: ClassVar[str] = "most relevant to the question, with their neighbours and a uniform sketch"
    neighbours: int = 1
    """Segments kept on each side of a top-scoring one (temporal context)."""
    sketch_share: float = 0.25
    """Share of the budget given to a uniform sketch of the whole video."""
    max_segments: int | None = None
    """Answer from at most this many segments even when all would fit (None: retrieve only when they don't)."""

    def __post_init__(self) -> None:
        if self.neighbours < 0:
            raise ValueError(f"retrieved: neighbours must be >= 0, got {self.neighbours}")
        if not 0 <= self.sketch_share < 1:
            raise ValueError(f"retrieved: sketch_share must be in [0, 1), got {self.sketch_share}")
        if self.max_segments is not None and self.max_segments < 1:
            raise ValueError(f"retrieved: max_segments must be >= 1 or None, got {self.max_segments}")

    def select(self, n_segments: int, budget: int,
               scores: Scores = None) -> list[int]:
        """`scores` may be a callable: it is called only when a subset must be chosen (scoring costs a pass)."""
        count = min(n_segments, budget, self.max_segments or budget)
        if count >= n_segments:
            return list(range(n_segments))
        if callable(scores):
            scores = scores()
        if scores is None or len(scores) != n_segments:
            got = "none" if scores is None else f"{len(scores)}"
            raise ValueError(f"the 'retrieved' selection needs one relevance score per segment ({n_segments}), "
                             f"got {got}: pass scores=, or use the 'uniform' selection")
        chosen = set(uniform_indices(n_segments, int(count * self.sketch_share)))
        for top in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"):
            for i in _around(int(top), self.neighbours, n_segments):
                if len(chosen) >= count:
                    return sorted(chosen)
                chosen.add(i)
        return sorted(chosen)


def _around(center: int, radius: int, n_segments: int) -> list[int]:
    """`center` first, then its neighbours nearest first, within the video."""
    out = [center]
    for d in range(1, radius + 1):
        out += [i for i in (center - d, center + d) if 0 <= i < n_segments]
    return out


SELECTORS: dict[str, type[Selector]] = {cls.name: cls for cls in (AllSegments, UniformSubset, RetrievedSegments)}


def make_selector(name: str, **options) -> Selector:
    """The selector class named `name` (all, uniform, retrieved), built with its options."""
    try:
        cls = SELECTORS[name]
    except KeyError:
        raise ValueError(f"unknown segment selection {name!r}: choose one of {', '.join(SELECTORS)}") from None
    return cls(**options)


# ---- answering ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SessionStats:
    """What an answer cost and which segments (with their times) it used."""

    segments_used: tuple[SegmentSpan, ...]
    segments_total: int
    cache_tokens: int
    ttft_ms: float
    tokens: int
    tokens_per_s: float
    selection: str
    positions: tuple[int, ...] = ()
    """The used segments' places in the timeline (what `segments_used` spans are of)."""
    waited_ms: float = 0.0
    """Time in line before the answer started (batched answering, `voco.engine.AnswerEngine`); in `ttft_ms`."""
    vision_tokens: int = 0
    """Vision tokens the used segments stand for (set by whoever knows the model's count: the app)."""
    note: str = ""
    """What the person should know: a uniform subset of a long video, or that the model gave no answer."""

    @property
    def subset(self) -> bool:
        """True when the answer saw only some of the video's segments."""
        return len(self.segments_used) < self.segments_total

    @property
    def compression(self) -> float:
        return self.vision_tokens / max(1, self.cache_tokens)

    def times(self) -> str:
        """The used segments' times, runs of neighbours joined ("0-6 s, 12-14 s")."""
        runs: list[list[SegmentSpan]] = []
        for span in self.segments_used:
            if runs and span.index == runs[-1][-1].index + 1:
                runs[-1].append(span)
            else:
                runs.append([span])
        return ", ".join(SegmentSpan(r[0].index, r[0].start_s, r[-1].end_s).label() for r in runs)

    def summary(self) -> str:
        """One line for a person: segments and their times, cache tokens, first token, speed, the note."""
        speed = f" at {self.tokens_per_s:.1f} tok/s" if self.tokens > 1 else ""
        used = f"{len(self.segments_used)}/{self.segments_total} segments ({self.times()})"
        waited = f" ({self.waited_ms:.0f} ms in line)" if self.waited_ms >= 1 else ""
        text = (f"{used} · {self.cache_tokens} cache tokens for "
                f"{self.vision_tokens} vision tokens ({self.compression:.0f}x) · first token "
                f"{self.ttft_ms:.0f} ms{waited} · {self.tokens} token{'s' if self.tokens != 1 else ''}{speed}")
        return f"{text} · {self.note}" if self.note else text

    def to_dict(self) -> dict:
        """The API's view: `segments_used` as [{index, start_s, end_s}], `subset` when not all were used (the
        timeline `positions` stay inside)."""
        out = {**dataclasses.asdict(self), "segments_used": [s.to_dict() for s in self.segments_used],
               "subset": self.subset, "ttft_ms": round(self.ttft_ms, 1), "tokens_per_s": round(self.tokens_per_s, 2),
               "waited_ms": round(self.waited_ms, 1)}
        del out["positions"]
        return out


@dataclass(frozen=True)
class AnswerPiece:
    text: str
    """New answer text since the previous piece."""
    stats: SessionStats | None = None
    """Set on the last piece only."""


class AnswerSession:
    """Answers questions about one video's caches: select segments, check the context, decode, time it.

    `stream` / `answer` decode alone in the caller's thread; `job` makes the same answer a request for a batch
    (`voco.engine.AnswerEngine`), which decodes it with others in the same steps. row_tile: how `stream` /
    `answer` run the model's linear layers (`voco.batching`; None: fastest; T: bitwise what an engine with
    row_tile=T answers, whoever shares its steps); an engine decodes its batch with its own."""

    def __init__(self, model, timeline: Timeline | Sequence[SegmentCache], selector: Selector | str = "all",
                 row_tile: int | None = None):
        self.model = model
        self.timeline = timeline if isinstance(timeline, Timeline) else Timeline.of(timeline)
        self.selector = make_selector(selector) if isinstance(selector, str) else selector
        self.row_tile = row_tile

    def starts(self) -> list[float]:
        """Every segment's start seconds (see `Timeline.starts`)."""
        return self.timeline.starts(self.model.voco.segment_seconds)

    def select(self, question: str, cfg: GenerationConfig, scores: Scores = None) -> list[int]:
        """Indices of the segments this question is answered from; `ContextTooLong` when none fit.
        Each segment counts its cache tokens and, with time labels, the longest label the video has."""
        caches = self.timeline.caches
        prefix, suffix = self.model.prompt_ids(question, cfg.history)
        text_tokens = len(prefix) + len(suffix) + cfg.max_new_tokens
        starts = self.starts()
        per_segment = max((c.k for c in caches), default=1) + self.model.longest_segment_label(starts)
        budget = segments_that_fit(self.model, text_tokens, per_segment)
        if budget < 1 and caches:  # not even one segment fits: say so rather than answer blind
            check_position_budget(self.model, prefix, caches, suffix, cfg.max_new_tokens, starts)
        budget = min(budget, self.model.voco.answer_segments or budget)  # what the model was trained to read
        return self.selector.select(len(caches), budget, scores)

    def job(self, question: str, scores: Scores = None, **kwargs) -> AnswerJob:
        """This answer as a request for `voco.batching` (nothing runs yet); kwargs as
        `voco.generation.GenerationConfig`, checked now."""
        return AnswerJob(self, question, scores, GenerationConfig(**kwargs))

    def stream(self, question: str, scores: Scores = None, **kwargs) -> Iterator[AnswerPiece]:
        """Answer text pieces as decoded (cut at the first stop string); the last piece carries the stats.
        kwargs as `voco.generation.GenerationConfig`."""
        yield from decode_alone(self.model, self.job(question, scores, **kwargs), self.row_tile)

    def answer(self, question: str, scores: Scores = None, **kwargs) -> tuple[str, SessionStats]:
        """The whole answer (stripped) and its stats."""
        text, stats = "", None
        for piece in self.stream(question, scores, **kwargs):
            text += piece.text
            stats = piece.stats or stats
        return text.strip(), stats


class AnswerJob(Job):
    """One question on its way through decoding, alone or batched: segment selection and the placed past when it
    starts (`place`), then tokens -> text pieces cut at stop strings (`take`), the stats last (`finish`)."""

    def __init__(self, session: AnswerSession, question: str, scores: Scores, cfg: GenerationConfig):
        super().__init__()
        self.session, self.question, self.scores, self.cfg = session, question, scores, cfg
        model = session.model
        self.stopper = StopText(model.tokenizer, stop_strings(model, cfg))
        self.eos = set(eos_ids(model))
        self.used: list[int] = []
        self.ids: list[int] = []
        self.generator = None
        self.submitted = time.perf_counter()
        self.started: float | None = None
        self.first: float | None = None

    def place(self) -> Row:
        self.started = time.perf_counter()
        session = self.session
        self.used = session.select(self.question, self.cfg, self.scores)
        starts = session.starts()
        chosen = [session.timeline.caches[i] for i in self.used]
        self.generator = sampler(self.cfg, session.model.device)
        return place(session.model, self.question, chosen, self.cfg, [starts[i] for i in self.used])

    def take(self, logits) -> int | None:
        """As answering always has: at most max_new_tokens tokens, none after an end token or a stop string."""
        if len(self.ids) >= self.cfg.max_new_tokens or self.stopper.stopped:
            return None
        token = next_token(logits, self.cfg, self.generator)
        if token in self.eos:
            return None
        self.first = self.first or time.perf_counter()
        self.ids.append(token)
        piece = self.stopper.feed(self.ids)
        if piece:
            self.out(AnswerPiece(piece))
        if self.stopper.stopped or len(self.ids) >= self.cfg.max_new_tokens:
            return None
        return token

    def finish(self) -> None:
        tail = "" if self.stopper.stopped else self.stopper.feed(self.ids, final=True)
        end = time.perf_counter()
        first = self.first or end
        session, ids = self.session, self.ids
        chosen = [session.timeline.caches[i] for i in self.used]
        stats = SessionStats(
            segments_used=tuple(session.timeline.spans[i] for i in self.used), segments_total=len(session.timeline),
            cache_tokens=sum(c.k for c in chosen), ttft_ms=(first - self.submitted) * 1000, tokens=len(ids),
            tokens_per_s=(len(ids) - 1) / (end - first) if len(ids) > 1 and end > first else 0.0,
            selection=session.selector.name, positions=tuple(self.used),
            waited_ms=((self.started or end) - self.submitted) * 1000)
        self.out(AnswerPiece(tail, stats))
