"""The chat service behind the app: stored videos, cached answers, uploads. No Gradio in here.

A question is answered from the video's VoCo caches in the store (loaded once, kept in a bounded
LRU), so asking again about the same video costs only the question. A video whose caches do not
fit the model's context is answered from a uniform subset of its segments, and the answer says so.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ingest.progress import ProgressEvent
from ingest.run import ingest_paths
from store import Store, VideoInfo
from voco.cache import SegmentCache
from voco.generation import GenerationConfig, StopText, generate_tokens, stop_strings
from voco.model import VoCoModel

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")


class ServiceError(ValueError):
    """A request the service cannot serve; the message is meant for the person asking."""


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

    @property
    def compression(self) -> float:
        return self.vision_tokens / max(1, self.cache_tokens)

    def summary(self) -> str:
        speed = f" at {self.tokens_per_s:.1f} tok/s" if self.tokens > 1 else ""
        text = (f"{self.segments_used}/{self.segments_total} segments · {self.cache_tokens} cache tokens for "
                f"{self.vision_tokens} vision tokens ({self.compression:.0f}x) · first token "
                f"{self.ttft_ms:.0f} ms · {self.tokens} token{'s' if self.tokens != 1 else ''}{speed}")
        return f"{text} · {self.note}" if self.note else text


@dataclass(frozen=True)
class AnswerUpdate:
    text: str
    """The answer so far."""
    stats: AnswerStats | None = None
    """Set on the last update."""


@dataclass
class UploadJob:
    id: str
    path: Path
    status: str = "queued"  # queued | ingesting | ready | failed
    progress: float = 0.0
    message: str = ""
    video_id: int | None = None


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
        self._jobs: dict[str, UploadJob] = {}
        self._vision_tokens: int | None = None

    # ---- library ---------------------------------------------------------------------------------

    def videos(self, query: str = "") -> list[VideoInfo]:
        """Videos stored for this model, newest first, filtered by a case-insensitive name search."""
        query = query.strip().lower()
        rows = [v for v in self.store.list_videos() if v.fingerprint == self.model.fingerprint]
        rows = [v for v in rows if not query or any(query in Path(p).name.lower() for p in [v.path, *v.paths])]
        return sorted(rows, key=lambda v: v.updated_at, reverse=True)

    def video(self, video_id: int) -> VideoInfo:
        info = self.store.get_video(int(video_id))
        if info.fingerprint != self.model.fingerprint:
            raise ServiceError(f"video {video_id} was ingested with another model ({info.model_name})")
        return info

    def timeline(self, video_id: int) -> list[tuple[bytes, str]]:
        """(JPEG bytes, caption) per segment: what the model 'saw'."""
        return [(s.thumbnail, f"#{s.index} {s.start_s:.0f}-{s.end_s:.0f} s")
                for s in self.store.segments(int(video_id)) if s.thumbnail]

    def caches(self, video_id: int) -> list[SegmentCache]:
        """The video's caches, from the LRU or one memory-mapped read of the store."""
        video_id = int(video_id)
        if video_id in self._caches:
            self._caches.move_to_end(video_id)
            return self._caches[video_id]
        info = self.video(video_id)
        if info.status != "ready":
            raise ServiceError(f"video {video_id} is not ready yet ({info.status}"
                               + (f": {info.error}" if info.error else "") + ")")
        caches = self.store.load_caches(video_id, self.model.fingerprint)
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

    def ask(self, video_id: int, question: str, history: Sequence[tuple[str, str]] = (), *,
            max_new_tokens: int = 64, temperature: float = 0.0, top_p: float = 1.0) -> Iterator[AnswerUpdate]:
        """Stream the answer to a question about a stored video; the last update carries the stats."""
        question = question.strip()
        if not question:
            raise ServiceError("ask a question first")
        if len(question) > self.limits.max_question_chars:
            raise ServiceError(f"question longer than {self.limits.max_question_chars} characters")
        max_new_tokens = max(1, min(int(max_new_tokens), self.limits.max_new_tokens))
        cfg = GenerationConfig(max_new_tokens=max_new_tokens, temperature=float(temperature), top_p=float(top_p),
                               history=tuple(history))
        caches = self.caches(video_id)
        prefix, suffix = self.model.prompt_ids(question, cfg.history)
        used, note = self.fit_context(len(caches), len(prefix) + len(suffix) + max_new_tokens)
        chosen = [caches[i] for i in used]
        stopper = StopText(self.model.tokenizer, stop_strings(self.model, cfg))
        text, ids, start, first = "", [], time.perf_counter(), None
        with self._model_lock:
            for token in generate_tokens(self.model, question, chosen, cfg):
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
        stats = AnswerStats(
            segments_used=len(chosen), segments_total=len(caches), cache_tokens=sum(c.k for c in chosen),
            vision_tokens=len(chosen) * self.vision_tokens_per_segment(), ttft_ms=(first - start) * 1000,
            tokens=len(ids), tokens_per_s=(len(ids) - 1) / (end - first) if len(ids) > 1 and end > first else 0.0,
            note=note)
        yield AnswerUpdate(text.strip(), stats)

    def answer(self, video_id: int, question: str, **kwargs) -> tuple[str, AnswerStats]:
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

    # ---- uploads ---------------------------------------------------------------------------------

    def upload(self, source: str | Path, name: str | None = None) -> UploadJob:
        """Copy an uploaded file into the upload folder and ingest it in the background."""
        if self.upload_dir is None:
            raise ServiceError("uploads are switched off")
        source = Path(source)
        name = Path(name or source.name).name
        if Path(name).suffix.lower() not in VIDEO_SUFFIXES:
            raise ServiceError(f"{name}: not a video file name (expected one of {', '.join(VIDEO_SUFFIXES)})")
        size = source.stat().st_size
        if size > self.limits.max_upload_bytes:
            raise ServiceError(f"{name}: {size / 2**20:.0f} MiB is over the upload limit of "
                               f"{self.limits.max_upload_bytes / 2**20:.0f} MiB")
        job = UploadJob(id=uuid.uuid4().hex[:12], path=self.upload_dir / f"{uuid.uuid4().hex[:8]}_{name}")
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, job.path)
        self._jobs[job.id] = job
        threading.Thread(target=self._ingest, args=(job,), daemon=True, name=f"upload-{job.id}").start()
        return job

    def job(self, job_id: str) -> UploadJob:
        if job_id not in self._jobs:
            raise ServiceError(f"no upload {job_id!r}")
        return self._jobs[job_id]

    def _ingest(self, job: UploadJob) -> None:
        def progress(event: ProgressEvent) -> None:
            if event.segments_total:
                job.progress = event.segments_done / event.segments_total
            job.message = f"{event.segments_done}/{event.segments_total} segments"

        job.status = "ingesting"
        try:
            # no model lock: compressing an upload and answering questions may interleave
            summary = ingest_paths([job.path], model=self.model, model_name=self.model_name, store=self.store,
                                   progress=progress)
            (result,) = summary.files
            if result.status == "failed":
                job.status, job.message = "failed", result.error or "ingest failed"
            else:
                job.status, job.progress, job.video_id = "ready", 1.0, result.video_id
                job.message = f"ready: video {result.video_id}, {result.segments} segments"
        except Exception as err:  # noqa: BLE001 - a failed upload must not take the app down
            job.status, job.message = "failed", f"{type(err).__name__}: {err}"
