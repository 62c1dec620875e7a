"""What a caller may send the service, checked in one place before anything runs.

The API hands over whatever JSON it was given (gradio does not enforce the type hints of a `gr.api`
function): a string id, 1.5, `true`, a number as the question. Every request is turned into a typed
`AskRequest` here, or refused with a `ServiceError` that names the field, what it got and what it
takes. Nothing is coerced silently: 1.5 is not video 1, 0 new tokens is not 1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class ServiceError(ValueError):
    """A request the service cannot serve; the message is meant for the person asking."""


ABSOLUTE_PATH = re.compile(r"(?<![\w.~])/(?:[^\s/:'\"()]+/)*[^\s/:'\"(),]+")
"""An absolute POSIX path in a message (up to a space, colon, quote or bracket: what our messages put after one)."""


def public_text(text: str, home: str | Path) -> str:
    """A message for an API caller without the server's paths: those in the home relative to it
    (`uploads/3f2a/cat.mp4`), any other by its file name (`cat.mp4`)."""
    root = str(home).rstrip("/") + "/"

    def shown(match: re.Match) -> str:
        path = match.group(0)
        return path[len(root):] if path.startswith(root) else Path(path).name or path

    return ABSOLUTE_PATH.sub(shown, text)


@dataclass(frozen=True)
class AskRequest:
    """A validated question about a stored video."""

    video_id: int | None
    """None: a question about the whole library (`app.library`)."""
    question: str
    max_new_tokens: int
    temperature: float
    top_p: float
    history: tuple[tuple[str, str], ...] = ()


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def whole_number(name: str, value: object, *, low: int, high: int | None = None) -> int:
    """An int in [low, high]; a float is taken only when it is whole (JSON clients may send 2.0)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ServiceError(f"{name} must be a whole number, got {type(value).__name__} {_shown(value)}")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise ServiceError(f"{name} must be a whole number, got {_shown(value)}")
    number = int(value)
    if number < low or (high is not None and number > high):
        bounds = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise ServiceError(f"{name} must be {bounds}, got {number}")
    return number


def real_number(name: str, value: object, *, low: float, high: float, low_open: bool = False) -> float:
    """A finite number in [low, high] (or (low, high] with `low_open`)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ServiceError(f"{name} must be a number, got {type(value).__name__} {_shown(value)}")
    if value > high or value < low or (low_open and value == low):
        raise ServiceError(f"{name} must be {'above' if low_open else 'from'} {low:g} to {high:g}, got {value:g}")
    return float(value)


MAX_ID = 2**63 - 1
"""The largest id a database integer holds (a larger one would overflow in the query, not be "not found")."""


def video_id(value: object) -> int:
    """A video id as the store numbers them (1, 2, ...)."""
    return whole_number("video_id", value, low=1, high=MAX_ID)


def question_text(value: object, *, max_chars: int, name: str = "question",
                  empty: str = "ask a question first (the question is empty)") -> str:
    """Non-empty text of at most `max_chars` characters, stripped; `name` is the field the caller sees, `empty`
    what an empty one is told."""
    if not isinstance(value, str):
        raise ServiceError(f"{name} must be text, got {type(value).__name__} {_shown(value)}")
    text = value.strip()
    if not text:
        raise ServiceError(empty)
    if len(text) > max_chars:
        raise ServiceError(f"{name} longer than {max_chars} characters ({len(text)})")
    return text


def search_request(query: object, top: object, *, max_top: int = 1000, max_chars: int = 500) -> tuple[str, int]:
    """The text and hit count of a moment search; `ServiceError` naming the bad field (top=1.9 is refused, not 1)."""
    return (question_text(query, max_chars=max_chars, name="query", empty="query is empty"),
            whole_number("top", top, low=1, high=max_top))


def history_turns(value: object) -> tuple[tuple[str, str], ...]:
    """Earlier (question, answer) turns: a sequence of pairs of text."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise ServiceError(f"history must be a list of [question, answer] pairs, got {type(value).__name__}")
    turns = []
    for i, turn in enumerate(value):
        if (not isinstance(turn, Sequence) or isinstance(turn, str) or len(turn) != 2
                or not all(isinstance(part, str) for part in turn)):
            raise ServiceError(f"history[{i}] must be a [question, answer] pair of text, got {_shown(turn)}")
        turns.append((turn[0], turn[1]))
    return tuple(turns)


def ask_request(video: object, question: object, *, max_new_tokens: object = 64, temperature: object = 0.0,
                top_p: object = 1.0, history: object = (), max_new_tokens_limit: int,
                max_question_chars: int) -> AskRequest:
    """Check every field of a question; `ServiceError` naming the first bad one. No video: the whole library."""
    return AskRequest(
        video_id=None if video is None else video_id(video),
        question=question_text(question, max_chars=max_question_chars),
        max_new_tokens=whole_number("max_new_tokens", max_new_tokens, low=1, high=max_new_tokens_limit),
        temperature=real_number("temperature", temperature, low=0.0, high=2.0),
        top_p=real_number("top_p", top_p, low=0.0, high=1.0, low_open=True),
        history=history_turns(history),
    )
