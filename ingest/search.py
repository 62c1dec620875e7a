"""Question-time search over the library: text -> ranked moments, and a video's segments scored for a question.

    search = MomentSearch(store, model)
    search.search("a cat", top=10)
    search.scores_for("what colour is the car?", video_id)

What the app and the evaluation read; it needs the store and the model's embedder, so it lives with ingest (the
lowest room that may use both), apart from the worker: importing it loads no decoder or pipeline. The vectors it
reads are written at ingest (`ingest.vectors`).
"""

from __future__ import annotations

import logging

import numpy as np

from ingest.vectors import index_for, store_video_vectors
from store import NotFound, Store, StoreError, VideoStatus
from store.index import Hit
from store.search_vectors import read_vectors
from voco import VoCoModel
from voco.search import make_embedder, video_scores

log = logging.getLogger(__name__)


class MomentSearch:
    """Text -> ranked moments across the library, and per-segment scores of one video for a question.

        search = MomentSearch(store, model)
        search.search("a cat", top=10)   # [{"video_id", "path", "segment", "start_s", "end_s", "score"}]
        search.scores_for("what colour is the car?", video_id)   # float32 [T], for Selector.select
    """

    def __init__(self, store: Store, model: VoCoModel, embedder_name: str | None = None,
                 novelty_weight: float | None = None):
        if novelty_weight is not None and novelty_weight < 0:
            raise ValueError(f"novelty_weight must be >= 0, got {novelty_weight}")
        self.store, self.model = store, model
        self.embedder = make_embedder(embedder_name, model)
        # within one video only (scores_for); search() ranks raw scores. None: the embedder's own choice
        self.novelty_weight = self.embedder.novelty_weight if novelty_weight is None else novelty_weight
        self.index = index_for(store, model, self.embedder)

    def search(self, text: str, top: int = 10) -> list[dict]:
        if not isinstance(text, str) or not text.strip():
            raise ValueError("the search text is empty: describe what the moment shows, e.g. 'a cat'")
        if not 1 <= top <= 1000:
            raise ValueError(f"top must be 1 .. 1000, got {top}")
        query = self.embedder.query_vector(text)
        hits = sorted(self.index.search(query, top) + self.live_hits(query, top), key=lambda h: -h.score)[:top]
        if self.index.missing:
            log.warning("%d ready videos have no search vectors yet: run python -m ingest --rebuild-index",
                        len(self.index.missing))
        spans: dict[int, tuple[str, dict[int, tuple[float, float]]]] = {}
        for vid in {h.video_id for h in hits}:
            try:
                info = self.store.get_video(vid)
            except NotFound:  # removed since the index was read: its hits are dropped below
                continue
            spans[vid] = (info.path, {s.index: (s.start_s, s.end_s) for s in self.store.segments(vid)})
        return [{"video_id": h.video_id, "path": spans[h.video_id][0], "segment": h.segment,
                 "start_s": spans[h.video_id][1][h.segment][0], "end_s": spans[h.video_id][1][h.segment][1],
                 "score": round(h.score, 4)} for h in hits
                if h.video_id in spans and h.segment in spans[h.video_id][1]]

    def scores_for(self, question: str, video_id: int):
        """Relevance of each of a ready video's segments to `question`: float32 [T] (higher: more relevant).

        The question score standardised within the video plus `novelty_weight` times the standardised
        distance of each segment from the video's mean (voco.search.video_scores).
        """
        info = self.store.get_video(video_id)
        vectors = read_vectors(self.store, info.uid, self.model.fingerprint, self.embedder.name)
        if vectors is None or len(vectors) != info.num_segments:  # an old video, or a live one's file it outgrew
            vectors = store_video_vectors(self.store, self.embedder, self.model.fingerprint, video_id)
        return video_scores(vectors, self.embedder.query_vector(question), self.novelty_weight)

    def live_scores(self, question: str, video_id: int, segments: int) -> np.ndarray:
        """`scores_for` of a live video's first `segments` segments, from the vectors its follower has written so
        far; segments past them (the last few seconds) score 0, the average of the standardised scores."""
        info = self.store.get_video(video_id)
        scores = np.zeros(segments, np.float32)
        vectors = read_vectors(self.store, info.uid, self.model.fingerprint, self.embedder.name)
        if vectors is not None and len(vectors):
            rows = min(len(vectors), segments)
            scores[:rows] = video_scores(vectors[:rows], self.embedder.query_vector(question), self.novelty_weight)
        return scores

    def live_hits(self, query: np.ndarray, top: int) -> list[Hit]:
        """The best `top` segments of each live video of this model (read from their vector files)."""
        hits = []
        for video in self.store.list_videos(status=VideoStatus.LIVE):
            if video.fingerprint != self.model.fingerprint:
                continue
            try:
                vectors = read_vectors(self.store, video.uid, self.model.fingerprint, self.embedder.name)
            except StoreError as err:
                log.warning("live video %d: its search vectors cannot be read (%s)", video.id, err)
                continue
            if vectors is None:
                continue
            scores = vectors @ query.astype(np.float32)  # [T]: the index's inner product
            hits += [Hit(video.id, int(i), float(scores[i])) for i in np.argsort(-scores, kind="stable")[:top]]
        return hits
