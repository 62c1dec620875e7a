"""Request checking (app/validation.py): every field typed and bounded, nothing coerced silently."""

import math

import pytest

from app.validation import ServiceError, ask_request, history_turns, real_number, whole_number

LIMITS = {"max_new_tokens_limit": 256, "max_question_chars": 100}


def test_a_good_request_is_typed():
    req = ask_request(3, "  what shape?  ", max_new_tokens=8.0, temperature=0, top_p=1, history=[["q", "a"]],
                      **LIMITS)
    assert (req.video_id, req.question, req.max_new_tokens, req.temperature, req.history) == (
        3, "what shape?", 8, 0.0, (("q", "a"),))
    assert type(req.max_new_tokens) is int and type(req.temperature) is float


@pytest.mark.parametrize(("video", "reason"), [
    (999_999_999_999, None), (0, "video_id must be from 1 to 9223372036854775807, got 0"),
    (-1, "video_id must be from 1 to 9223372036854775807, got -1"),
    ("3", "video_id must be a whole number, got str '3'"), ("abc", "got str 'abc'"),
    (1.5, "video_id must be a whole number, got 1.5"), (True, "got bool True"), (None, None),
    (math.nan, "got nan"), (math.inf, "got inf"), ([1], "got list"), (2**63 - 1, None),
    (2**63, f"video_id must be from 1 to {2**63 - 1}, got {2**63}"),  # was: OverflowError in the database query
])
def test_video_ids_are_whole_positive_numbers(video, reason):
    if reason is None:  # large but well-formed: the store says if it exists; None: the whole library
        assert ask_request(video, "q", **LIMITS).video_id == video
        return
    with pytest.raises(ServiceError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        ask_request(video, "q", **LIMITS)


@pytest.mark.parametrize(("question", "reason"), [
    (5, "question must be text, got int 5"), (None, "question must be text"), (["q"], "question must be text"),
    ("   ", "ask a question first"), ("x" * 101, "question longer than 100 characters"),
])
def test_questions_are_non_empty_bounded_text(question, reason):
    with pytest.raises(ServiceError, match=reason):
        ask_request(1, question, **LIMITS)


@pytest.mark.parametrize(("tokens", "reason"), [
    (0, "max_new_tokens must be from 1 to 256, got 0"), (257, "from 1 to 256, got 257"),
    ("x", "max_new_tokens must be a whole number, got str 'x'"), (2.5, "got 2.5"),
])
def test_max_new_tokens_is_refused_outside_its_range_not_clamped(tokens, reason):
    with pytest.raises(ServiceError, match=reason):
        ask_request(1, "q", max_new_tokens=tokens, **LIMITS)


def test_sampling_settings_and_history_are_checked():
    with pytest.raises(ServiceError, match="temperature must be from 0 to 2, got -1"):
        ask_request(1, "q", temperature=-1, **LIMITS)
    with pytest.raises(ServiceError, match="top_p must be above 0 to 1, got 0"):
        ask_request(1, "q", top_p=0, **LIMITS)
    with pytest.raises(ServiceError, match="temperature must be a number, got str"):
        real_number("temperature", "hot", low=0, high=2)
    with pytest.raises(ServiceError, match=r"history\[1\] must be a \[question, answer\] pair"):
        history_turns([("q", "a"), ("q only",)])
    with pytest.raises(ServiceError, match="history must be a list"):
        history_turns("q: a")
    assert whole_number("n", 7, low=1, high=7) == 7


@pytest.mark.parametrize(("query", "top", "reason"), [
    ("a cat", 10, None), ("  a cat ", 1000, None), ("", 10, "query is empty"), (3, 10, "query must be text"),
    ("a cat", None, "top must be a whole number, got NoneType"), ("a cat", 1.9, "top must be a whole number, got 1.9"),
    ("a cat", 2.0, None), ("a cat", 1001, "top must be from 1 to 1000, got 1001"), ("a cat", True, "got bool"),
])
def test_search_requests_are_checked_not_coerced(query, top, reason):
    from app.validation import search_request

    if reason is None:
        assert search_request(query, top) == ("a cat", int(top))
        return
    with pytest.raises(ServiceError, match=reason):
        search_request(query, top)
