"""Search vectors at ingest: computed from a finished video's caches, stored beside its pack, indexed.

    store_video_vectors(store, embedder, fingerprint, video_id)   # after the video's pack is final
    rebuild_index(store, model)                                    # python -m ingest --rebuild-index
    LiveVectors(store, embedder, fingerprint, video_id)            # a live video's, written as it grows

A live video (`python -m ingest --follow`) is not in the faiss index until it is finished; its follower writes the
vectors of its stored segments to the same file as they come (`LiveVectors`), and `MomentSearch` reads the files
of live videos beside the index, so search and relevance see a recording while it grows.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from store import NotFound, Store, StoreError, VideoStatus
from store.index import Hit, SegmentIndex, read_vectors, write_vectors
from voco import VoCoModel
from voco.search import SegmentEmbedder, make_embedder, video_scores

log = logging.getLogger(__name__)


def store_video_vectors(store: Store, embedder: SegmentEmbedder, fingerprint: str, video_id: int,
                        computed: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """Compute a ready video's search vectors [T, dim], write them beside its pack, and return them.

    Ingest hands over the vectors it `computed` while it compressed ({segment index: vector}); when some are
    missing (a resumed video, --rebuild-index) they come from the stored caches, or, for an embedder that reads
    frames, from the video's file decoded again as ingest sampled it.
    """
    info = store.get_video(video_id)
    computed = computed or {}
    if info.num_segments and all(i in computed for i in range(info.num_segments)):
        # what ingest computed while compressing: no need to read the pack back
        vectors = np.stack([computed[i] for i in range(info.num_segments)]).astype(np.float32)
    elif not embedder.reads_frames:
        vectors = embedder.segment_vectors(store.load_caches(video_id, fingerprint))
    else:
        caches = store.load_caches(video_id, fingerprint)
        vectors = embedder.segment_vectors(caches, frames=stored_video_frames(info, len(caches)))
    write_vectors(store, info.uid, fingerprint, embedder.name, vectors)
    return vectors


def nearest_filled(vectors: dict[int, np.ndarray], segments: int) -> dict[int, np.ndarray]:
    """`vectors` with each missing segment of 0 .. segments - 1 (stored in the seconds before a kill, of a source
    that cannot be read again) given its nearest stored neighbour's vector: adjacent seconds, so search stays whole."""
    missing = [i for i in range(segments) if i not in vectors]
    if not vectors or not missing:
        return dict(vectors)
    log.warning("%d segments stored before a restart have no search vector; each takes its nearest neighbour's",
                len(missing))
    have = np.asarray(sorted(vectors))
    return {**vectors, **{i: vectors[int(have[np.abs(have - i).argmin()])] for i in missing}}


class LiveVectors:
    """A live video's search vectors: computed per stored batch, kept in memory, and written beside its chunks (the
    run from segment 0 on, whenever it has doubled or `every_s` seconds have passed), so that search sees the
    video while it grows and a restarted follower takes back those of segments it cannot read again (a pipe)."""

    def __init__(self, store: Store, embedder: SegmentEmbedder, fingerprint: str, video_id: int,
                 every_s: float = 5.0):
        self.store, self.embedder, self.fingerprint, self.every_s = store, embedder, fingerprint, every_s
        self.uid = store.get_video(video_id).uid
        self.vectors: dict[int, np.ndarray] = {}
        """segment index -> vector: what `store_video_vectors` takes as `computed` when the video is finished."""
        self._written, self._written_at = 0, float("-inf")

    def load(self, stored: set[int]) -> None:
        """Take back the vectors a previous run wrote for the segments stored before it stopped."""
        try:
            vectors = read_vectors(self.store, self.uid, self.fingerprint, self.embedder.name)
        except StoreError as err:  # a torn or foreign file: recomputed where frames allow, as for a finished video
            log.warning("a live video's search vectors cannot be read back (%s); continuing without them", err)
            return
        if vectors is not None:
            self.vectors.update({i: v for i, v in enumerate(vectors) if i in stored})
            self._written = len(vectors)

    def add(self, indices: list[int], caches: list, frames: list) -> None:
        """The vectors of one stored batch (its caches, and its frames for an embedder that reads frames)."""
        self.vectors.update(zip(indices, self.embedder.segment_vectors(caches, frames=frames), strict=True))
        self.flush()

    def filled(self, segments: int) -> dict[int, np.ndarray]:
        """The vectors of segments 0 .. segments - 1 (`nearest_filled`): for a source that cannot be read again."""
        return nearest_filled(self.vectors, segments)

    def flush(self) -> None:
        rows = 0
        while rows in self.vectors:
            rows += 1
        due = rows >= 2 * self._written or time.monotonic() - self._written_at >= self.every_s
        if rows == self._written or not due:  # doubling: a young video's search catches up at once
            return
        try:
            write_vectors(self.store, self.uid, self.fingerprint, self.embedder.name,
                          np.stack([self.vectors[i] for i in range(rows)]))
        except (OSError, ValueError) as err:  # search lags behind; the caches are stored all the same
            log.warning("could not write a live video's search vectors: %s", err)
            return
        self._written, self._written_at = rows, time.monotonic()


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
