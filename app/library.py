"""Questions about the whole library: the segments moment search ranks highest, across every video, on one timeline.

    timeline, sources, scores = library_timeline(hits, loaded, names)

VoCo caches are position-free, so segments of different videos can share one context: the best hits (at most the
model's answer budget) are grouped by video, videos in the order of their best hit, each video's segments in time
order, each followed by its own start time as the model is trained to read it. `sources` says, for each place on
that timeline, which video and segment it is, so an answer can name the videos and times it used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from voco.session import SegmentSpan, Timeline


@dataclass(frozen=True)
class LibrarySource:
    """One place of a library timeline: the video and its segment."""

    video_id: int
    name: str
    span: SegmentSpan

    def to_dict(self) -> dict:
        return {"video_id": self.video_id, "name": self.name, **self.span.to_dict()}


def library_timeline(hits: Sequence[dict], loaded: Callable[[int], Timeline], name: Callable[[int], str]
                     ) -> tuple[Timeline, tuple[LibrarySource, ...], list[float]]:
    """The timeline of the hits (`MomentSearch.search` rows, best first), its sources and each place's score."""
    if not hits:
        raise ValueError("no segment of the library matches the question (is any video ingested and indexed?)")
    best: dict[int, dict[int, float]] = {}  # video -> segment -> score, videos in the order of their best hit
    for hit in hits:
        best.setdefault(hit["video_id"], {}).setdefault(hit["segment"], hit["score"])
    caches, spans, sources, scores = [], [], [], []
    for video_id, segments in best.items():
        timeline = loaded(video_id)
        where = {span.index: i for i, span in enumerate(timeline.spans)}
        for segment in sorted(s for s in segments if s in where):
            i = where[segment]
            caches.append(timeline.caches[i])
            spans.append(timeline.spans[i])
            sources.append(LibrarySource(video_id, name(video_id), timeline.spans[i]))
            scores.append(segments[segment])
    return Timeline(tuple(caches), tuple(spans)), tuple(sources), scores
