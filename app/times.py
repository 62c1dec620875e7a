"""Clock times in an answer ("From 0:04 to 0:10.", "At 1:02:05.") and the segments they fall in.

Times are written as `voco.timeline.clock` writes them: `m:ss` below one hour, `h:mm:ss` from one hour.
Only a two-digit part below 60 counts as minutes or seconds, so a ratio such as "3:2" is not a time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from voco.session import SegmentSpan

CLOCK = re.compile(r"(?<![\d.:])(?:(\d+):)?(\d+):([0-5]\d)(?!\d|:\d)")
"""[h:]m:ss, not inside a longer run of digits and colons (nor after a decimal point)."""


class AnswerTime(NamedTuple):
    """One time in a text: its character span `text[start:end]` and the seconds it says."""

    start: int
    end: int
    seconds: float


def answer_times(text: str) -> list[AnswerTime]:
    """Every clock time in `text`, in order (see `CLOCK`)."""
    return [found for match in CLOCK.finditer(text) if (found := _time_of(match)) is not None]


def _time_of(match: re.Match) -> AnswerTime | None:
    hours, minutes, seconds = match.groups()
    if hours is not None and (len(minutes) != 2 or int(minutes) >= 60):
        return None  # h:mm:ss needs two-digit minutes below 60
    total = int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)
    return AnswerTime(match.start(), match.end(), float(total))


def segment_at(spans: Sequence[SegmentSpan], seconds: float) -> SegmentSpan | None:
    """The span whose [start_s, end_s) holds `seconds`; else the nearest one (a time in a gap between spans, or
    before the first or past the last); None when no span has times. Ties go to the earlier span."""
    timed = [s for s in spans if s.start_s is not None and s.end_s is not None]
    return min(timed, key=lambda s: (_distance(s, seconds), s.start_s), default=None)


def _distance(span: SegmentSpan, seconds: float) -> float:
    """0 inside [start_s, end_s), else how far outside (a time at end_s is just past the span)."""
    if span.start_s <= seconds < span.end_s:
        return 0.0
    return max(span.start_s - seconds, seconds - span.end_s, 1e-9)


@dataclass(frozen=True)
class TimeLink:
    """A time in an answer and the segment it selects on the timeline."""

    text: str
    """The time as written ("0:04")."""
    seconds: float
    segment: SegmentSpan

    def to_dict(self) -> dict:
        return {"text": self.text, "seconds": self.seconds, "segment": self.segment.to_dict()}


def time_links(text: str, spans: Sequence[SegmentSpan]) -> list[TimeLink]:
    """Each time in `text` with its segment among `spans` (none when no span has times)."""
    links = []
    for found in answer_times(text):
        segment = segment_at(spans, found.seconds)
        if segment is not None:
            links.append(TimeLink(text[found.start:found.end], found.seconds, segment))
    return links
