"""Search vectors at ingest: computed from a finished video's caches, stored beside its pack, indexed.

    store_video_vectors(store, embedder, fingerprint, video_id)   # after the video's pack is final
    rebuild_index(store, model)                                    # python -m ingest --rebuild-index
    LiveVectors(store, embedder, fingerprint, video_id)            # a live video's, written as it grows

A live video (`python -m ingest --follow`) is not in the faiss index until it is finished; its follower writes the
vectors of its stored segments to the same file as they come (`LiveVectors`), and `ingest.search.MomentSearch`
reads the files of live videos beside the index, so search and relevance see a recording while it grows.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from store import Store, StoreError, VideoStatus
from store.index import SegmentIndex
from store.search_vectors import read_vectors, write_vectors
from voco import VoCoModel
from voco.search import SegmentEmbedder, make_embedder

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


def _vectors_usable(store: Store, video, fingerprint: str, embedder: str) -> bool:
    """The video's vector file is there, one vector per segment (a live video's file stops short), checksum good."""
    try:
        vectors = read_vectors(store, video.uid, fingerprint, embedder)
    except StoreError:
        return False
    return vectors is not None and len(vectors) == video.num_segments


def rebuild_index(store: Store, model: VoCoModel, embedder_name: str | None = None) -> dict[str, int]:
    """Write the missing vector files of this model's videos, then rebuild the index (embedder_name None:
    the model's own, `voco.search.embedder_for`)."""
    embedder = make_embedder(embedder_name, model)
    computed = 0
    for video in store.list_videos(status=VideoStatus.READY):
        if video.fingerprint != model.fingerprint:
            continue
        if not _vectors_usable(store, video, model.fingerprint, embedder.name):
            store_video_vectors(store, embedder, model.fingerprint, video.id)
            computed += 1
    report = index_for(store, model, embedder).sync(rebuild=True)
    return {**report, "vectors_computed": computed}
