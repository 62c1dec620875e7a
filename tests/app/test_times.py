"""Clock times in answers (app/times.py): parsing and the segment each one selects."""

import pytest

from app.times import AnswerTime, answer_times, segment_at, time_links
from voco.session import SegmentSpan
from voco.timeline import clock


def written(text: str) -> list[tuple[str, float]]:
    return [(text[t.start:t.end], t.seconds) for t in answer_times(text)]


@pytest.mark.parametrize(("text", "times"), [
    ("From 0:04 to 0:10.", [("0:04", 4.0), ("0:10", 10.0)]),
    ("At 1:02:05.", [("1:02:05", 3725.0)]),
    ("From 0:02 to 0:04 and at 0:10.", [("0:02", 2.0), ("0:04", 4.0), ("0:10", 10.0)]),
    ("At 12:59, then 10:00:00", [("12:59", 779.0), ("10:00:00", 36000.0)]),
    ("A red circle.", []),
    ("", []),
])
def test_times_as_the_model_writes_them(text, times):
    assert written(text) == times


def test_spans_are_character_offsets():
    assert answer_times("At 1:02:05.") == [AnswerTime(3, 10, 3725.0)]
    (found,) = answer_times("from 0:04.")
    assert (found.start, found.end, found.seconds) == (5, 9, 4.0)


@pytest.mark.parametrize("text", ["a 3:2 ratio", "0:60", "1:75:00", "1:2:05", "0:045", "12:34:567", "1.5:30"])
def test_what_is_not_a_time(text):
    assert answer_times(text) == []


@pytest.mark.parametrize("seconds", [0, 4, 59, 60, 75.3, 3599, 3600, 3725, 36_000])
def test_every_clock_time_reads_back(seconds):
    assert written(f"At {clock(seconds)}.") == [(clock(seconds), float(int(seconds)))]


SPANS = (SegmentSpan(0, 0.0, 2.0), SegmentSpan(1, 2.0, 4.0), SegmentSpan(5, 10.0, 12.0), SegmentSpan(6, 12.0, 13.5))
"""A retrieved subset: segments 2-4 (4-10 s) were left out, so 4-10 s is a gap."""


@pytest.mark.parametrize(("seconds", "index"), [
    (0, 0), (1.9, 0), (2, 1), (3, 1),  # [start_s, end_s): a segment's end is the next one's start
    (4, 1), (6.9, 1), (7, 1), (8, 5), (10, 5),  # in the gap: the nearer side (a tie goes to the earlier one)
    (13, 6), (13.5, 6), (3725, 6),  # past the end: the last segment
])
def test_a_time_selects_the_segment_holding_it_or_the_nearest(seconds, index):
    assert segment_at(SPANS, seconds).index == index


def test_no_segment_without_times():
    assert segment_at([], 4) is None
    assert segment_at([SegmentSpan(0), SegmentSpan(1)], 4) is None
    assert time_links("At 0:04.", [SegmentSpan(0)]) == []


def test_time_links_carry_text_seconds_and_segment():
    links = time_links("From 0:02 to 0:04 and at 1:02:05.", SPANS)
    assert [link.to_dict() for link in links] == [
        {"text": "0:02", "seconds": 2.0, "segment": {"index": 1, "start_s": 2.0, "end_s": 4.0}},
        {"text": "0:04", "seconds": 4.0, "segment": {"index": 1, "start_s": 2.0, "end_s": 4.0}},
        {"text": "1:02:05", "seconds": 3725.0, "segment": {"index": 6, "start_s": 12.0, "end_s": 13.5}},
    ]
