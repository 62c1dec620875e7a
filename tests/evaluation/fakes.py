"""Answerers for tests: no model, deterministic, optionally slow (for the kill-and-resume test).

Used through the CLI as `--answerer tests.evaluation.fakes:make` (run from the repository root).
"""

from __future__ import annotations

import os
import time
from pathlib import Path


class FakeAnswerer:
    """Answers "yes" to everything; raises for videos named in `fail`."""

    def __init__(self, delay: float = 0.0, fail: tuple[str, ...] = ()):
        self.delay = delay
        self.fail = set(fail)
        self.calls: list[tuple[str, str]] = []
        self.last_timings: dict = {}

    def answer(self, video_path: Path, question: str) -> str:
        self.calls.append((Path(video_path).name, question))
        if self.delay:
            time.sleep(self.delay)
        if Path(video_path).stem in self.fail:
            raise RuntimeError(f"{video_path}: cannot decode (test)")
        self.last_timings = {"answer_s": self.delay}
        return "yes"

    def describe(self) -> dict:
        return {"answerer": "fake"}


def make(args) -> FakeAnswerer:
    fail = tuple(v for v in os.environ.get("EVAL_FAKE_FAIL", "").split(",") if v)
    return FakeAnswerer(delay=float(os.environ.get("EVAL_FAKE_DELAY", "0")), fail=fail)


def make_other(args) -> FakeAnswerer:
    """Another answerer (a resume into the same --out must refuse it)."""
    return FakeAnswerer()
