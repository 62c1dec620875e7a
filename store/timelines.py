"""Loaded videos for answering: one bounded LRU of `voco.session.Timeline`s (caches + segment times).

The app and the evaluation answerers keep their loaded caches here, so a video asked about again
costs only the question. `StoredTimelines` reads them from the store (one checked read of the
pack plus the segments' times); `TimelineLRU` takes any loader (e.g. compressing in memory).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

from store.store import Store
from voco.session import SegmentSpan, Timeline


class TimelineLRU:
    """The last `size` videos' timelines, by key."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"the cache LRU must hold at least 1 video, got {size}")
        self.size = size
        self.items: OrderedDict[Hashable, Timeline] = OrderedDict()

    def __contains__(self, key: Hashable) -> bool:
        return key in self.items

    def __len__(self) -> int:
        return len(self.items)

    def get(self, key: Hashable, load: Callable[[], Timeline]) -> Timeline:
        """The timeline under `key`, loading (and keeping) it on a miss; the oldest one leaves when full."""
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        timeline = load()
        self.items[key] = timeline
        while len(self.items) > self.size:
            self.items.popitem(last=False)
        return timeline


def load_timeline(store: Store, video_id: int, fingerprint: str) -> Timeline:
    """A ready video's caches from the store with each segment's start-end seconds."""
    caches = store.load_caches(video_id, fingerprint)
    segments = sorted(store.segments(video_id), key=lambda s: s.index)
    if len(segments) != len(caches):
        raise ValueError(f"video {video_id}: the store has {len(caches)} caches but {len(segments)} segment rows; "
                         "remove the video (python -m ingest --remove ID) and ingest it again")
    spans = tuple(SegmentSpan(s.index, float(s.start_s), float(s.end_s)) for s in segments)
    return Timeline(tuple(caches), spans)


class StoredTimelines:
    """Store-backed timelines of one model's videos, kept in a `TimelineLRU`."""

    def __init__(self, store: Store, fingerprint: str, size: int):
        self.store = store
        self.fingerprint = fingerprint
        self.lru = TimelineLRU(size)

    def get(self, video_id: int, version: int | None = None) -> Timeline:
        """The video's timeline; `version` (a live video's segment count) keys what it held when loaded."""
        key = video_id if version is None else (video_id, version)
        return self.lru.get(key, lambda: load_timeline(self.store, video_id, self.fingerprint))
