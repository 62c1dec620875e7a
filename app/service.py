"""The chat service behind the app: stored videos, cached answers, uploads. No Gradio in here.

A question is answered through `voco.session.AnswerSession` from the video's VoCo caches in the store
(loaded once, kept in `store.timelines`' bounded LRU), so asking again about the same video costs only
the question. A video whose caches do not fit the model's context is answered from a uniform subset of
its segments, and the answer says so and which segments (start-end times) it used.

Questions from many users are answered together: each goes into one `voco.engine.AnswerEngine`, which decodes
up to `ServiceLimits.max_batch` answers in one forward per step and keeps at most `max_queue` more waiting (each
hears its place in line); past that a question is refused with `ServiceBusy` ("busy ... try again in a moment").
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from app.library import LibrarySource, library_timeline
from app.times import TimeLink, time_links
from app.uploads import UploadJob, Uploads, display_name
from app.validation import AskRequest, ServiceError, ask_request, public_text
from app.validation import video_id as checked_video_id
from ingest.search import MomentSearch
from store import NotFound, SegmentInfo, Store, StoreError, VideoInfo, VideoStatus
from store.timelines import StoredTimelines
from voco.batching import Waiting
from voco.cache import SegmentCache
from voco.engine import AnswerEngine, EngineBusy, EngineConfig
from voco.generation import ContextTooLong
from voco.model import VoCoModel
from voco.session import AnswerSession, Selector, SessionStats, Timeline, UniformSubset
from voco.timeline import clock

log = logging.getLogger(__name__)

LIBRARY_SEGMENTS = 64
"""Segments a question about the whole library reads when the model names no answer budget (`answer_segments`)."""

NO_ANSWER = "the model gave no answer"
ASKABLE = (VideoStatus.READY, VideoStatus.LIVE)
"""Videos a question can be about: ready ones, and live ones (what is stored so far)."""
"""Said (in the stats note, the chat and the API) when decoding ends with no text."""

USED_MARK = "▶ used · "
"""Starts the timeline caption of each segment the last answer used."""

__all__ = ["NO_ANSWER", "USED_MARK", "AnswerUpdate", "ChatService", "ServiceBusy", "ServiceError",
           "ServiceLimits", "TimeLink", "UploadJob"]


class ServiceBusy(ServiceError):
    """Every answering place and the line behind them are taken: the person should try again in a moment."""


def timeline_caption(segment, used: bool) -> str:
    """A thumbnail's caption: where its segment starts ("0:04", "1:02:05"), after the mark of an answer's segment.

    Short at any video length (the old "#1799 3598-3600 s" was cut off in a small cell); the number and whole span
    show under the timeline when the thumbnail is clicked (`app.lines.segment_line`)."""
    return f"{USED_MARK if used else ''}{clock(segment.start_s)}"


@dataclass(frozen=True)
class AnswerUpdate:
    text: str
    """The answer so far."""
    stats: SessionStats | None = None
    """Set on the last update."""
    times: tuple[TimeLink, ...] = ()
    """Set on the last update: each clock time in the answer and the segment of the video it falls in (a question
    about one video)."""
    sources: tuple[LibrarySource, ...] = ()
    """Set on the last update of a question about the whole library: the video and segment of each segment used."""
    queued: int | None = None
    """While the question waits for a place in the batch: its place in line (1: next); None once it is answered."""


@dataclass
class ServiceLimits:
    """Bounds that keep one app instance healthy."""

    cached_videos: int = 8
    """Videos whose caches stay loaded (LRU)."""
    max_upload_bytes: int = 512 * 1024 * 1024
    max_upload_seconds: float | None = 2 * 3600.0
    """Longest upload accepted; longer videos go through `python -m ingest` (None: no limit)."""
    concurrent_uploads: int = 1
    """Uploads ingesting at once (each runs the model beside the answers); the rest wait in line."""
    max_new_tokens: int = 256
    max_question_chars: int = 2000
    max_batch: int = 16
    """Answers decoded together, one LM forward per step for all of them (`voco.batching`); 1: one at a time.
    A bigger batch answers more people per second and each of them a little slower."""
    max_queue: int = 64
    """Questions waiting for a place in the batch (each is shown its place); one more is refused as busy."""
    row_tile: int | None = None
    """None: fastest. T: decode in T-row tiles, so an answer is bitwise the same whoever it is batched with (and
    the same as `AnswerSession(..., row_tile=T)` alone); a question alone then costs a T-row product per layer."""


@dataclass
class ChatService:
    store: Store
    model: VoCoModel
    model_name: str = "default"
    upload_dir: Path | None = None
    limits: ServiceLimits = field(default_factory=ServiceLimits)
    selector: Selector = field(default_factory=UniformSubset)
    """Which segments answer a question when they do not all fit (`voco.session`)."""
    relevance: Callable[[str, int, Timeline], Sequence[float]] | None = None
    """(question, video id, timeline) -> one relevance score per segment, for a selector that reads scores
    (`retrieved`), only when it must choose a subset; None: the moment-search index's scores (`moments`)."""

    def __post_init__(self) -> None:
        self._timelines = StoredTimelines(self.store, self.model.fingerprint, self.limits.cached_videos)
        self.engine = AnswerEngine(self.model, EngineConfig(self.limits.max_batch, self.limits.max_queue,
                                                            self.limits.row_tile))
        self._vision_tokens: int | None = None
        self._live: set[int] = set()  # live videos asked about: their timelines are keyed by segment count
        self.uploads = None if self.upload_dir is None else Uploads(
            self.store, self.model, self.model_name, self.upload_dir, self.limits.max_upload_bytes,
            self.limits.max_upload_seconds, self.limits.concurrent_uploads)

    # ---- library ---------------------------------------------------------------------------------

    def videos(self, query: str = "") -> list[VideoInfo]:
        """Ready and live videos of this model, newest first, filtered by a case-insensitive name search.

        Failed and unfinished videos cannot be asked about, so they are not listed (see `counts`); a live one
        (being followed: `python -m ingest --follow`) is answered from what is stored so far."""
        query = query.strip().lower()
        rows = [v for v in self._own_videos() if v.status in ASKABLE]
        rows = [v for v in rows if not query or any(query in self.name(p).lower() for p in [v.path, *v.paths])]
        return sorted(rows, key=lambda v: v.updated_at, reverse=True)

    def counts(self) -> Counter:
        """This model's videos by status (ready, failed, pending)."""
        return Counter(v.status for v in self._own_videos())

    def _own_videos(self) -> list[VideoInfo]:
        fingerprint = self.model.fingerprint  # a property that hashes settings: once, not per row
        return [v for v in self.store.list_videos() if v.fingerprint == fingerprint]

    def name(self, path: str) -> str:
        """A stored path as the person named the file (uploads keep their original name)."""
        return display_name(path, self.uploads.folder if self.uploads is not None else None)

    def video(self, video_id: object) -> VideoInfo:
        """The stored video, or `ServiceError` saying why it cannot be asked about."""
        video_id = checked_video_id(video_id)
        try:
            info = self.store.get_video(video_id)
        except NotFound as err:
            raise ServiceError(f"no video with id {video_id} (the /videos endpoint lists the ids)") from err
        if info.fingerprint != self.model.fingerprint:
            raise ServiceError(f"video {video_id} was ingested with another model ({info.model_name})")
        return info

    def timeline_segments(self, video_id: object) -> list[SegmentInfo]:
        """The segments the timeline shows, in its order: those with a thumbnail."""
        return [s for s in self.store.segments(self.video(video_id).id, thumbnails=True) if s.thumbnail]

    def timeline(self, video_id: object, used: Collection[int] = ()) -> list[tuple[bytes, str]]:
        """(JPEG bytes, caption) per segment: what the model 'saw'; segments in `used` (an answer's) are marked."""
        return [(s.thumbnail, timeline_caption(s, s.index in used)) for s in self.timeline_segments(video_id)]

    def timeline_position(self, video_id: object, segment_index: int) -> int | None:
        """Where segment `segment_index` is in `timeline`'s list (None: it has no thumbnail, so it is not shown)."""
        shown = [s.index for s in self.timeline_segments(video_id)]
        return shown.index(segment_index) if segment_index in shown else None

    def times(self, video_id: object, text: str) -> list[TimeLink]:
        """Each clock time in `text` with the video's segment it falls in (the nearest one in a gap or past the
        end), among all the video's segments: what the timeline shows, used by the answer or not."""
        return time_links(text, self.loaded(video_id).spans)

    def loaded(self, video_id: object) -> Timeline:
        """The video's caches and segment times, from the LRU or one memory-mapped read of the store."""
        video_id = checked_video_id(video_id)
        version = None
        if video_id not in self._timelines.lru or video_id in self._live:
            info = self.video(video_id)
            if info.status not in ASKABLE:
                raise ServiceError(self.public(f"video {video_id} is not ready ({info.status}"
                                               + (f": {info.error}" if info.error else "") + ")"))
            if info.status == VideoStatus.LIVE:  # growing: loaded again when it holds more segments
                self._live.add(video_id)
                version = info.num_segments
            else:
                self._live.discard(video_id)
        try:
            return self._timelines.get(video_id, version)
        except (StoreError, ValueError) as err:  # a damaged or missing pack: this video fails, the app goes on
            raise ServiceError(self.public(str(err))) from err

    def public(self, text: str) -> str:
        """`text` for an API caller: no server paths (`app.validation.public_text`)."""
        return public_text(text, self.store.home.root)

    def caches(self, video_id: object) -> list[SegmentCache]:
        """The video's caches (see `loaded`)."""
        return list(self.loaded(video_id).caches)

    # ---- answering -------------------------------------------------------------------------------

    def request(self, video_id: object, question: object, history: object = (), *, max_new_tokens: object = 64,
                temperature: object = 0.0, top_p: object = 1.0) -> AskRequest:
        """The checked request (types and ranges, see app/validation.py); `ServiceError` if any is wrong."""
        return ask_request(video_id, question, max_new_tokens=max_new_tokens, temperature=temperature,
                           top_p=top_p, history=history, max_new_tokens_limit=self.limits.max_new_tokens,
                           max_question_chars=self.limits.max_question_chars)

    def ask(self, video_id: object, question: object, history: object = (), *, max_new_tokens: object = 64,
            temperature: object = 0.0, top_p: object = 1.0) -> Iterator[AnswerUpdate]:
        """Stream the answer to a question about a stored video (video_id None: the whole library, `app.library`);
        the last update carries the stats.

        Every argument is checked first; a bad one raises `ServiceError` before anything runs."""
        req = self.request(video_id, question, history, max_new_tokens=max_new_tokens, temperature=temperature,
                           top_p=top_p)
        if req.video_id is None:
            return self._ask_library(req)
        timeline = self.loaded(req.video_id)
        live = (f"live video: answered from what was stored up to {clock(timeline.spans[-1].end_s)}"
                if req.video_id in self._live else "")
        return self._stream(req, timeline, lambda: self._relevance(req.question, req.video_id, timeline), live=live)

    def _ask_library(self, req: AskRequest) -> Iterator[AnswerUpdate]:
        """The segments moment search ranks highest across the library, as many as one answer reads."""
        budget = self.model.voco.answer_segments or LIBRARY_SEGMENTS
        try:
            hits = self.moments.search(req.question, top=budget)
            timeline, sources, scores = library_timeline(hits, self.loaded, lambda v: self.name(self.video(v).path))
        except StoreError as err:
            raise ServiceError(self.public(f"the library's search data cannot be read: {err}")) from err
        except ValueError as err:
            raise ServiceError(str(err)) from err
        return self._stream(req, timeline, lambda: scores, sources)

    @cached_property
    def moments(self) -> MomentSearch:
        """The library's moment search (faiss index of segment vectors): `/search`, and relevance by default."""
        return MomentSearch(self.store, self.model)

    def _relevance(self, question: str, video_id: int, timeline: Timeline) -> Sequence[float]:
        if self.relevance is not None:
            return self.relevance(question, video_id, timeline)
        if video_id in self._live:  # the vectors its follower has written so far (`ingest.vectors.LiveVectors`)
            return self.moments.live_scores(question, video_id, len(timeline.caches))
        return self.moments.scores_for(question, video_id)

    def _stream(self, req: AskRequest, timeline: Timeline, scores: Callable[[], Sequence[float]],
                sources: tuple[LibrarySource, ...] = (), live: str = "") -> Iterator[AnswerUpdate]:
        """Queue the question for the batch, and stream its place in line, then its answer.
        scores: called only by a selector that must choose a subset by relevance; live: the note of a live video."""
        session = AnswerSession(self.model, timeline, self.selector, self.limits.row_tile)
        job = session.job(req.question, scores, max_new_tokens=req.max_new_tokens, temperature=req.temperature,
                          top_p=req.top_p, history=req.history)
        try:
            ticket = self.engine.submit(job)
        except EngineBusy as err:
            raise ServiceBusy(f"the app is {err}") from err
        text = ""
        try:
            for event in ticket:
                if isinstance(event, Waiting):
                    if event.position:
                        yield AnswerUpdate(text, queued=event.position)
                elif event.stats is None:
                    text += event.text
                    yield AnswerUpdate(text)
                else:
                    text += event.text
                    stats = event.stats
        except ContextTooLong as err:
            raise ServiceError(f"the question is too long for the model's context: {err}") from err
        finally:
            ticket.cancel()  # a reader that stopped early (a closed page) frees its place; a no-op once answered
        text = text.strip()
        note = (f"video longer than the model's context: answered from {len(stats.segments_used)} of "
                f"{stats.segments_total} segments {self.selector.subset_note}" if stats.subset else "")
        note = " · ".join(n for n in (live, note) if n)
        if not text:
            note = f"{note} · {NO_ANSWER}" if note else NO_ANSWER
        answer_stats = dataclasses.replace(stats, note=note,
                                           vision_tokens=len(stats.segments_used) * self.vision_tokens_per_segment())
        if sources:  # times are per video: the sources say which video each used segment is of
            yield AnswerUpdate(text, answer_stats, sources=tuple(sources[i] for i in stats.positions))
        else:
            yield AnswerUpdate(text, answer_stats, tuple(time_links(text, timeline.spans)))

    def answer(self, video_id: object, question: object, **kwargs) -> tuple[str, SessionStats]:
        *_, last = self.ask(video_id, question, **kwargs)
        return last.text, last.stats

    def answer_dict(self, video_id: object, question: object, **kwargs) -> dict:
        """The `/ask` API's answer: {"answer", the stats (`SessionStats.to_dict`), "times": [{"text", "seconds",
        "segment": {"index", "start_s", "end_s"}}] for each clock time in the answer}."""
        *_, last = self.ask(video_id, question, **kwargs)
        out = {"answer": last.text, **last.stats.to_dict(), "times": [t.to_dict() for t in last.times]}
        if video_id is None:  # the whole library: which video each used segment is of
            out["sources"] = [source.to_dict() for source in last.sources]
        return out

    def vision_tokens_per_segment(self) -> int:
        if self._vision_tokens is None:
            size = self.model.config.vision_config.image_size
            blank = np.zeros((self.model.voco.frames_per_segment, size, size, 3), dtype=np.uint8)
            with torch.inference_mode():
                self._vision_tokens = int(self.model.embed_segment(blank).shape[0])
        return self._vision_tokens

    # ---- uploads (app/uploads.py) ----------------------------------------------------------------

    def _uploads(self) -> Uploads:
        if self.uploads is None:
            raise ServiceError("uploads are switched off")
        return self.uploads

    def upload(self, source: str | Path, name: str | None = None) -> UploadJob:
        """Copy an uploaded file into its own upload folder and ingest it in the background."""
        return self._uploads().start(source, name)

    def job(self, job_id: str) -> UploadJob:
        return self._uploads().job(job_id)

    def cancel_upload(self, job_id: str) -> UploadJob:
        return self._uploads().cancel(job_id)

    def sweep_uploads(self) -> list[Path]:
        """Delete what earlier runs left in the upload folder (failed, cancelled, duplicate uploads)."""
        return [] if self.uploads is None else self.uploads.sweep()
