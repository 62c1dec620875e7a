"""Who answers the questions: the small `Answerer` protocol, and its model and store implementations.

The runner only needs `answer(video_path, question) -> str`. Optional extras it uses when present:

- `prepare(video_paths) -> dict[Path, str]`: called once before the questions with every video this run
  will ask about (e.g. to ingest them as one batch); returns {video: reason} for videos that cannot be
  used (their questions are recorded as answer errors without calling `answer`).
- `last_timings: dict[str, float | bool]`: read after each `answer` and stored with the prediction.
- `describe() -> dict`: what produced the answers (kept in OUT/run.json; a resume with a different
  description is refused).
- `close()`.

`ModelAnswerer` decodes each video with `ingest`'s decoder (`voco.video.frames`) and compresses it in memory
with `voco` (caches kept in a small LRU, and the runner asks a video's questions one after another).
`StoreAnswerer` takes caches from the store, ingesting the videos it lacks first (`ingest.run.ingest_paths`,
`store.timelines.load_timeline`). Both answer through `voco.session.AnswerSession` with the app's segment
selection by default (`segments="retrieved"`: all segments when they fit, else those most relevant to the
question; `uniform`; `all`, which records a video too long for the context as that question's error), and keep
their videos in `store.timelines.TimelineLRU`, the app's LRU. Relevance is the app's: `voco.search.video_scores`
over the model's own search vectors (`StoreAnswerer`: `ingest.search.MomentSearch.scores_for`, the stored vectors;
`ModelAnswerer`: computed beside the caches when a video is compressed).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Answerer(Protocol):
    def answer(self, video_path: Path, question: str) -> str: ...


def _key(path: Path) -> str:
    return str(Path(path).resolve())


class _VocoAnswerer:
    """What both answerers share: an `AnswerSession` over a video's timeline with the run's segment selection
    (greedy, as `model.answer`), timed, and the run's description."""

    kind: str
    model: Any
    max_new_tokens: int
    selector: Any
    last_timings: dict[str, float | bool | list]

    def _init_selection(self, segments: str, max_segments: int | None) -> None:
        from voco.session import make_selector

        self.selector = make_selector(segments, **({"max_segments": max_segments} if max_segments else {}))

    @property
    def retrieves(self) -> bool:
        from voco.session import RetrievedSegments

        return isinstance(self.selector, RetrievedSegments)

    def _answer(self, question: str, timeline, timings: dict, scores=None) -> str:
        from voco.session import AnswerSession

        t0 = time.perf_counter()
        text, stats = AnswerSession(self.model, timeline, self.selector).answer(
            question, scores, max_new_tokens=self.max_new_tokens)
        timings["answer_s"] = round(time.perf_counter() - t0, 4)
        timings["ttft_s"] = round(stats.ttft_ms / 1000, 4)
        timings["segments_used"] = [s.index for s in stats.segments_used]
        timings["subset"] = stats.subset
        self.last_timings = timings
        return text

    def describe(self) -> dict:
        voco = self.model.voco
        return {"answerer": self.kind, "model_fingerprint": self.model.fingerprint, "k": voco.k,
                "compressor": voco.compressor, "segment_seconds": voco.segment_seconds,
                "frames_per_segment": voco.frames_per_segment, "max_new_tokens": self.max_new_tokens,
                "segments": self.selector.name, "max_segments": getattr(self.selector, "max_segments", None)}


class ModelAnswerer(_VocoAnswerer):
    """`voco` directly: decode and split by timestamp (`voco.video.frames`), `model.compress` once per video,
    `model.answer`. A file that cannot be decoded raises `voco.video.probe.VideoError` naming it."""

    kind = "model"

    def __init__(self, model, *, max_new_tokens: int = 32, lru_videos: int = 4, batch_size: int = 8,
                 decode_max_side: int | None = None, segments: str = "retrieved", max_segments: int | None = None):
        from store.timelines import TimelineLRU
        from voco.video.frames import decode_side_cap

        self.model = model
        self._init_selection(segments, max_segments)
        self.embedder = None  # the model's search vectors, made on the first video when the selection retrieves
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.decode_max_side = decode_side_cap(int(model.config.vision_config.image_size), decode_max_side)
        self.timelines = TimelineLRU(max(1, lru_videos))
        self.last_timings: dict[str, float | bool] = {}

    def video_caches(self, video_path: Path):
        """((timeline, search vectors or None), timings) of a video, compressed now or taken from the LRU."""
        key = _key(video_path)
        timings: dict[str, float | bool] = {"decode_s": 0.0, "compress_s": 0.0, "cached": key in self.timelines}
        loaded = self.timelines.get(key, lambda: self._compress(video_path, timings))
        timings["segments"] = len(loaded[0])
        return loaded, timings

    def _compress(self, video_path: Path, timings: dict[str, float | bool]):
        from voco.session import Timeline
        from voco.video.frames import decode_video_segments

        voco = self.model.voco
        t0 = time.perf_counter()
        segments = decode_video_segments(video_path, segment_seconds=voco.segment_seconds,
                                         frames_per_segment=voco.frames_per_segment, max_side=self.decode_max_side)
        t1 = time.perf_counter()
        caches = self.model.compress(segments, batch_size=self.batch_size)
        timings.update(decode_s=round(t1 - t0, 4), compress_s=round(time.perf_counter() - t1, 4))
        vectors = None
        if self.retrieves:  # beside the caches, as ingest writes them (frames are at hand only now)
            from voco.search import embedder_for

            self.embedder = self.embedder or embedder_for(self.model)
            vectors = self.embedder.segment_vectors(caches, frames=segments)
        return Timeline.of(caches), vectors

    def answer(self, video_path: Path, question: str) -> str:
        (timeline, vectors), timings = self.video_caches(Path(video_path))
        scores = None
        if vectors is not None:
            from voco.search import video_scores

            def scores():  # only when the selection must choose a subset (as the app)
                embedder = self.embedder
                return video_scores(vectors, embedder.query_vector(question), embedder.novelty_weight)
        return self._answer(question, timeline, timings, scores)


class StoreAnswerer(_VocoAnswerer):
    """Caches from the store, ingesting the videos it lacks first (same answers as `ModelAnswerer`).

    `prepare` ingests every video of the run as one batch (`ingest.run.ingest_paths` on this answerer's open
    store; videos already stored for this model are reused, not compressed again); `answer` reads a video's
    caches once (`Store.load_caches`) and keeps the last few in an LRU.
    """

    kind = "store"

    def __init__(self, model, home, *, db_url: str | None = None, model_name: str = "default",
                 max_new_tokens: int = 32, lru_videos: int = 4, show_progress: bool = True,
                 segments: str = "retrieved", max_segments: int | None = None):
        from store import Store
        from store.timelines import TimelineLRU

        self.model = model
        self._init_selection(segments, max_segments)
        self._moments = None  # ingest.search.MomentSearch, made when a selection first needs relevance
        self.home = home
        self.db_url = db_url
        self.model_name = model_name
        self.max_new_tokens = max_new_tokens
        self.show_progress = show_progress
        self.store = Store.open(home, db_url)
        self.video_ids: dict[str, int] = {}
        self.timelines = TimelineLRU(max(1, lru_videos))
        self.last_timings: dict[str, float | bool] = {}
        self.ingest_s = 0.0

    def prepare(self, video_paths: Sequence[Path]) -> dict[Path, str]:
        from ingest.results import FileStatus
        from ingest.run import ingest_paths

        if not video_paths:
            return {}
        t0 = time.perf_counter()
        summary = ingest_paths([str(p) for p in video_paths], home=self.home, db_url=self.db_url, model=self.model,
                               model_name=self.model_name, store=self.store, show_progress=self.show_progress)
        self.ingest_s = time.perf_counter() - t0
        failed: dict[Path, str] = {}
        by_key = {_key(Path(f.path)): f for f in summary.files}
        for path in video_paths:
            result = by_key.get(_key(path))
            if result is None or result.video_id is None or result.status == FileStatus.FAILED:
                failed[Path(path)] = (result.error if result is not None and result.error
                                      else "ingest did not store it")
            else:
                self.video_ids[_key(path)] = int(result.video_id)
        return failed

    def answer(self, video_path: Path, question: str) -> str:
        key = _key(Path(video_path))
        timings: dict[str, float | bool] = {"cached": key in self.timelines}
        timeline = self.timelines.get(key, lambda: self._load(Path(video_path), timings))
        timings["segments"] = len(timeline)
        video_id = self.video_ids[key]

        def scores():  # only when the selection must choose a subset: the app's relevance, stored vectors
            if self._moments is None:
                from ingest.search import MomentSearch

                self._moments = MomentSearch(self.store, self.model)
            return self._moments.scores_for(question, video_id)
        return self._answer(question, timeline, timings, scores)

    def _load(self, video_path: Path, timings: dict[str, float | bool]):
        from store.timelines import load_timeline

        key = _key(video_path)
        if key not in self.video_ids:
            self.prepare([video_path])
        if key not in self.video_ids:
            raise RuntimeError(f"{video_path}: not in the store and ingest could not store it")
        t0 = time.perf_counter()
        timeline = load_timeline(self.store, self.video_ids[key], self.model.fingerprint)
        timings["load_s"] = round(time.perf_counter() - t0, 4)
        return timeline

    def close(self) -> None:
        self.store.close()


def load_factory(spec: str):
    """`module:callable` -> the callable (for --answerer)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"--answerer must look like module.path:callable, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"--answerer {spec}: cannot import {module_name} ({err})") from err
    factory = getattr(module, attr, None)
    if factory is None:
        raise ValueError(f"--answerer {spec}: {module_name} has no {attr}")
    return factory
