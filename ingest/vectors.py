"""Search vectors at ingest: computed from a finished video's caches, stored beside its pack, indexed.

    store_video_vectors(store, embedder, fingerprint, video_id)   # after the video's pack is final
    rebuild_index(store, model)                                    # python -m ingest --rebuild-index
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from store import NotFound, Store, VideoStatus
from store.index import SegmentIndex, read_vectors, write_vectors
from voco import VoCoModel
from voco.search import SegmentEmbedder, make_embedder, video_scores

log = logging.getLogger(__name__)


def store_video_vectors(store: Store, embedder: SegmentEmbedder, fingerprint: str, video_id: int,
                        computed: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """Compute a ready video's search vectors [T, dim], write them beside its pack, and return them.

    From its stored caches; an embedder that reads frames takes the vectors ingest `computed` while it
    compressed ({segment index: vector}), and when some are missing (a resumed video, --rebuild-index)
    decodes the video's file again as ingest sampled it.
    """
    info = store.get_video(video_id)
    computed = computed or {}
    if not embedder.reads_frames:
        vectors = embedder.segment_vectors(store.load_caches(video_id, fingerprint))
    elif info.num_segments and all(i in computed for i in range(info.num_segments)):
        # what ingest computed while compressing: no need to read the pack back
        vectors = np.stack([computed[i] for i in range(info.num_segments)]).astype(np.float32)
    else:
        caches = store.load_caches(video_id, fingerprint)
        vectors = embedder.segment_vectors(caches, frames=stored_video_frames(info, len(caches)))
    write_vectors(store, info.uid, fingerprint, embedder.name, vectors)
    return vectors


def stored_video_frames(info, segments: int) -> list[np.ndarray]:
    """A stored video's segments decoded again from its file, sampled as ingest sampled them."""
    from voco.video.frames import decode_video_segments
    from voco.video.probe import VideoError

    path = next((p for p in [info.path, *info.paths] if Path(p).is_file()), None)
    if path is None:
        raise VideoError(f"{info.path}: the file is gone, so search vectors that read frames cannot be computed "
                         "for it; ingest it again from where it is now")
    frames = decode_video_segments(path, segment_seconds=info.segment_seconds,
                                   frames_per_segment=info.frames_per_segment, max_side=info.decode_max_side)
    if len(frames) != segments:
        raise VideoError(f"{path}: decodes to {len(frames)} segments, the store holds {segments}: the file changed")
    return frames


def index_for(store: Store, model: VoCoModel, embedder: SegmentEmbedder) -> SegmentIndex:
    return SegmentIndex(store, model.fingerprint, embedder.name, embedder.dim)


def rebuild_index(store: Store, model: VoCoModel, embedder_name: str | None = None) -> dict[str, int]:
    """Write the missing vector files of this model's videos, then rebuild the index (embedder_name None:
    the model's own, `voco.search.embedder_for`)."""
    embedder = make_embedder(embedder_name, model)
    computed = 0
    for video in store.list_videos(status=VideoStatus.READY):
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
        hits = self.index.search(self.embedder.query_vector(text), top)
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
        if vectors is None:  # an old video: compute from its caches (and keep them for next time)
            vectors = store_video_vectors(self.store, self.embedder, self.model.fingerprint, video_id)
        return video_scores(vectors, self.embedder.query_vector(question), self.novelty_weight)
