"""Search vectors at ingest: computed from a finished video's caches, stored beside its pack, indexed.

    store_video_vectors(store, embedder, fingerprint, video_id)   # after the video's pack is final
    rebuild_index(store, model)                                    # python -m ingest --rebuild-index
"""

from __future__ import annotations

import logging

import numpy as np

from store import Store
from store.index import SegmentIndex, read_vectors, write_vectors
from store.models import READY
from voco import VoCoModel
from voco.search import DEFAULT_EMBEDDER, DEFAULT_NOVELTY_WEIGHT, SegmentEmbedder, make_embedder, video_scores

log = logging.getLogger(__name__)


def store_video_vectors(store: Store, embedder: SegmentEmbedder, fingerprint: str, video_id: int) -> np.ndarray:
    """Compute a ready video's search vectors [T, dim] from its stored caches, write them beside its pack,
    and return them."""
    info = store.get_video(video_id)
    vectors = embedder.segment_vectors(store.load_caches(video_id, fingerprint))
    write_vectors(store, info.uid, fingerprint, embedder.name, vectors)
    return vectors


def index_for(store: Store, model: VoCoModel, embedder: SegmentEmbedder) -> SegmentIndex:
    return SegmentIndex(store, model.fingerprint, embedder.name, embedder.dim)


def rebuild_index(store: Store, model: VoCoModel, embedder_name: str = DEFAULT_EMBEDDER) -> dict[str, int]:
    """Write the missing vector files of this model's videos, then rebuild the index."""
    embedder = make_embedder(embedder_name, model)
    computed = 0
    for video in store.list_videos(status=READY):
        if video.fingerprint != model.fingerprint:
            continue
        if read_vectors(store, video.uid, model.fingerprint, embedder.name) is None:  # missing or damaged
            store_video_vectors(store, embedder, model.fingerprint, video.id)
            computed += 1
    report = index_for(store, model, embedder).sync(rebuild=True)
    return {**report, "vectors_computed": computed}


class MomentSearch:
    """Text -> ranked moments across the library, and per-segment scores of one video for a question.

        search = MomentSearch(store, model)
        search.search("a red circle", top=10)   # [{"video_id", "path", "segment", "start_s", "end_s", "score"}]
        search.scores_for("what colour is the car?", video_id)   # float32 [T], for Selector.select
    """

    def __init__(self, store: Store, model: VoCoModel, embedder_name: str = DEFAULT_EMBEDDER,
                 novelty_weight: float = DEFAULT_NOVELTY_WEIGHT):
        if novelty_weight < 0:
            raise ValueError(f"novelty_weight must be >= 0, got {novelty_weight}")
        self.store, self.model = store, model
        self.novelty_weight = novelty_weight  # within one video only (scores_for); search() ranks raw scores
        self.embedder = make_embedder(embedder_name, model)
        self.index = index_for(store, model, self.embedder)

    def search(self, text: str, top: int = 10) -> list[dict]:
        if not isinstance(text, str) or not text.strip():
            raise ValueError("the search text is empty: describe what the moment shows, e.g. 'a red circle'")
        if not 1 <= top <= 1000:
            raise ValueError(f"top must be 1 .. 1000, got {top}")
        hits = self.index.search(self.embedder.query_vector(text), top)
        if self.index.missing:
            log.warning("%d ready videos have no search vectors yet: run python -m ingest --rebuild-index",
                        len(self.index.missing))
        spans: dict[int, tuple[str, dict[int, tuple[float, float]]]] = {}
        for vid in {h.video_id for h in hits}:
            spans[vid] = (self.store.get_video(vid).path,
                          {s.index: (s.start_s, s.end_s) for s in self.store.segments(vid)})
        return [{"video_id": h.video_id, "path": spans[h.video_id][0], "segment": h.segment,
                 "start_s": spans[h.video_id][1][h.segment][0], "end_s": spans[h.video_id][1][h.segment][1],
                 "score": round(h.score, 4)} for h in hits]

    def scores_for(self, question: str, video_id: int):
        """Relevance of each of a ready video's segments to `question`: float32 [T] (higher: more relevant).

        The question score standardised within the video plus `novelty_weight` times the standardised
        distance of each segment from the video's mean (voco.search.video_scores).
        """
        info = self.store.get_video(video_id)
        vectors = read_vectors(self.store, info.uid, self.model.fingerprint, self.embedder.name)
        if vectors is None:  # an old video: compute from its caches (and keep them for next time)
            vectors = store_video_vectors(self.store, self.embedder, self.model.fingerprint, video_id)
        return video_scores(vectors, self.embedder.query_vector(question), self.novelty_weight)
