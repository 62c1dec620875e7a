"""The chat service behind the app: stored videos, cached answers, uploads. No Gradio in here.

A question is answered from the video's VoCo caches in the store (loaded once, kept in a bounded
LRU), so asking again about the same video costs only the question. A video whose caches do not
fit the model's context is answered from a uniform subset of its segments, and the answer says so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from app.uploads import UploadJob, Uploads, display_name
from app.validation import AskRequest, ServiceError, ask_request
from app.validation import video_id as checked_video_id
from store import NotFound, Store, StoreError, VideoInfo
from store.models import READY
from voco.cache import SegmentCache
from voco.generation import GenerationConfig, StopText, generate_tokens, stop_strings
from voco.model import VoCoModel

log = logging.getLogger(__name__)

NO_ANSWER = "the model gave no answer"
"""Said (in the stats note, the chat and the API) when decoding ends with no text."""

__all__ = ["NO_ANSWER", "AnswerStats", "AnswerUpdate", "ChatService", "ServiceError", "ServiceLimits", "UploadJob"]


@dataclass(frozen=True)
class AnswerStats:
    """What an answer cost and used."""

    segments_used: int
    segments_total: int
    cache_tokens: int
    vision_tokens: int
    """Vision tokens the used segments stand for."""
    ttft_ms: float
    tokens: int
    tokens_per_s: float
    note: str = ""
    """What the person should know: a uniform subset of a long video, or that the model gave no answer."""

    @property
    def compression(self) -> float:
        return self.vision_tokens / max(1, self.cache_tokens)

    def summary(self) -> str:
        speed = f" at {self.tokens_per_s:.1f} tok/s" if self.tokens > 1 else ""
        text = (f"{self.segments_used}/{self.segments_total} segments · {self.cache_tokens} cache tokens for "
                f"{self.vision_tokens} vision tokens ({self.compression:.0f}x) · first token "
                f"{self.ttft_ms:.0f} ms · {self.tokens} token{'s' if self.tokens != 1 else ''}{speed}")
        return f"{text} · {self.note}" if self.note else text

    def to_dict(self) -> dict:
        return {**asdict(self), "ttft_ms": round(self.ttft_ms, 1), "tokens_per_s": round(self.tokens_per_s, 2)}


@dataclass(frozen=True)
class AnswerUpdate:
    text: str
    """The answer so far."""
    stats: AnswerStats | None = None
    """Set on the last update."""


@dataclass
class ServiceLimits:
    """Bounds that keep one app instance healthy."""

    cached_videos: int = 8
    """Videos whose caches stay loaded (LRU)."""
    max_upload_bytes: int = 512 * 1024 * 1024
    max_new_tokens: int = 256
    max_question_chars: int = 2000


@dataclass
class ChatService:
    store: Store
    model: VoCoModel
    model_name: str = "default"
    upload_dir: Path | None = None
    limits: ServiceLimits = field(default_factory=ServiceLimits)

    def __post_init__(self) -> None:
        self._caches: OrderedDict[int, list[SegmentCache]] = OrderedDict()
        self._model_lock = threading.Lock()  # one answer decodes at a time; others wait their turn
        self._vision_tokens: int | None = None
        self.uploads = None if self.upload_dir is None else Uploads(
            self.store, self.model, self.model_name, self.upload_dir, self.limits.max_upload_bytes)

    # ---- library ---------------------------------------------------------------------------------

    def videos(self, query: str = "") -> list[VideoInfo]:
        """Ready videos of this model, newest first, filtered by a case-insensitive name search.

        Failed and unfinished videos cannot be asked about, so they are not listed (see `counts`)."""
        query = query.strip().lower()
        rows = [v for v in self._own_videos() if v.status == READY]
        rows = [v for v in rows if not query or any(query in self.name(p).lower() for p in [v.path, *v.paths])]
        return sorted(rows, key=lambda v: v.updated_at, reverse=True)

    def counts(self) -> Counter:
        """This model's videos by status (ready, failed, pending)."""
        return Counter(v.status for v in self._own_videos())

    def _own_videos(self) -> list[VideoInfo]:
        return [v for v in self.store.list_videos() if v.fingerprint == self.model.fingerprint]

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

    def timeline(self, video_id: object) -> list[tuple[bytes, str]]:
        """(JPEG bytes, caption) per segment: what the model 'saw'."""
        return [(s.thumbnail, f"#{s.index} {s.start_s:.0f}-{s.end_s:.0f} s")
                for s in self.store.segments(self.video(video_id).id) if s.thumbnail]

    def caches(self, video_id: object) -> list[SegmentCache]:
        """The video's caches, from the LRU or one memory-mapped read of the store."""
        video_id = checked_video_id(video_id)
        if video_id in self._caches:
            self._caches.move_to_end(video_id)
            return self._caches[video_id]
        info = self.video(video_id)
        if info.status != READY:
            raise ServiceError(f"video {video_id} is not ready ({info.status}"
                               + (f": {info.error}" if info.error else "") + ")")
        try:
            caches = self.store.load_caches(video_id, self.model.fingerprint)
        except StoreError as err:  # a damaged or missing pack: this video fails, the app goes on
            raise ServiceError(str(err)) from err
        self._caches[video_id] = caches
        while len(self._caches) > self.limits.cached_videos:
            self._caches.popitem(last=False)
        return caches

    # ---- answering -------------------------------------------------------------------------------

    def fit_context(self, count: int, extra_tokens: int) -> tuple[list[int], str]:
        """Indices of the segments to use; a uniform subset when all would overflow the context."""
        limit = self.model.config.text_config.max_position_embeddings
        per_segment = self._kept_per_segment()
        room = (limit - extra_tokens) // per_segment
        if room < 1:
            raise ServiceError("the question is too long for the model's context")
        if count <= room:
            return list(range(count)), ""
        picked = sorted({int(round(x)) for x in np.linspace(0, count - 1, room)})
        return picked, (f"video longer than the model's context: answered from {len(picked)} of {count} "
                        "segments sampled uniformly")

    def request(self, video_id: object, question: object, history: object = (), *, max_new_tokens: object = 64,
                temperature: object = 0.0, top_p: object = 1.0) -> AskRequest:
        """The checked request (types and ranges, see app/validation.py); `ServiceError` if any is wrong."""
        return ask_request(video_id, question, max_new_tokens=max_new_tokens, temperature=temperature,
                           top_p=top_p, history=history, max_new_tokens_limit=self.limits.max_new_tokens,
                           max_question_chars=self.limits.max_question_chars)

    def ask(self, video_id: object, question: object, history: object = (), *, max_new_tokens: object = 64,
            temperature: object = 0.0, top_p: object = 1.0) -> Iterator[AnswerUpdate]:
        """Stream the answer to a question about a stored video; the last update carries the stats.

        Every argument is checked first; a bad one raises `ServiceError` before anything runs."""
        req = self.request(video_id, question, history, max_new_tokens=max_new_tokens, temperature=temperature,
                           top_p=top_p)
        caches = self.caches(req.video_id)
        return self._decode(req, caches)

    def _decode(self, req: AskRequest, caches: list[SegmentCache]) -> Iterator[AnswerUpdate]:
        cfg = GenerationConfig(max_new_tokens=req.max_new_tokens, temperature=req.temperature, top_p=req.top_p,
                               history=req.history)
        prefix, suffix = self.model.prompt_ids(req.question, cfg.history)
        used, note = self.fit_context(len(caches), len(prefix) + len(suffix) + req.max_new_tokens)
        chosen = [caches[i] for i in used]
        stopper = StopText(self.model.tokenizer, stop_strings(self.model, cfg))
        text, ids, start, first = "", [], time.perf_counter(), None
        with self._model_lock:
            for token in generate_tokens(self.model, req.question, chosen, cfg):
                first = first or time.perf_counter()
                ids.append(token)
                piece = stopper.feed(ids)
                if piece:
                    text += piece
                    yield AnswerUpdate(text)
                if stopper.stopped:
                    break
            text += stopper.feed(ids, final=True) if not stopper.stopped else ""
        end = time.perf_counter()
        first = first or end
        text = text.strip()
        if not text:
            note = f"{note} · {NO_ANSWER}" if note else NO_ANSWER
        stats = AnswerStats(
            segments_used=len(chosen), segments_total=len(caches), cache_tokens=sum(c.k for c in chosen),
            vision_tokens=len(chosen) * self.vision_tokens_per_segment(), ttft_ms=(first - start) * 1000,
            tokens=len(ids), tokens_per_s=(len(ids) - 1) / (end - first) if len(ids) > 1 and end > first else 0.0,
            note=note)
        yield AnswerUpdate(text, stats)

    def answer(self, video_id: object, question: object, **kwargs) -> tuple[str, AnswerStats]:
        *_, last = self.ask(video_id, question, **kwargs)
        return last.text, last.stats

    def vision_tokens_per_segment(self) -> int:
        if self._vision_tokens is None:
            size = self.model.config.vision_config.image_size
            blank = np.zeros((self.model.voco.frames_per_segment, size, size, 3), dtype=np.uint8)
            with torch.inference_mode():
                self._vision_tokens = int(self.model.embed_segment(blank).shape[0])
        return self._vision_tokens

    def _kept_per_segment(self) -> int:
        return self.vision_tokens_per_segment() if self.model.voco.compressor == "full" else self.model.k

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
