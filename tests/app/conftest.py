"""A small library for the app tests: a tiny random model, three synthetic videos, ingested."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
import torch

from ingest.run import ingest_paths
from store import Store
from tests.fixtures.videos import pattern_frames, write_video
from voco import VoCoModel
from voco.data.synthetic import write_dataset
from voco.generation import GenerationConfig
from voco.session import AnswerJob, AnswerPiece, AnswerSession
from voco.tiny import tiny_model


@pytest.fixture(scope="session")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("app_library")
    tiny_model("llama", k=1).save_pretrained(root / "model")
    write_dataset(root / "data", 3, base_seed=0, split="test")
    model = VoCoModel.from_pretrained(root / "model", segment_seconds=1.0)
    summary = ingest_paths([root / "data" / "videos"], home=root / "home", model=model, model_name="tiny")
    assert summary.count("ingested") == 3
    return root, model


@pytest.fixture
def store(library):
    root, _ = library
    s = Store.open(root / "home")
    yield s
    s.close()


@pytest.fixture(scope="session")
def silent_library(tmp_path_factory):
    """A real model that never says anything (its final norm is zero, so every step picks <unk>), one video."""
    root = tmp_path_factory.mktemp("silent_library")
    model = tiny_model("llama", k=1)
    with torch.no_grad():
        model.lm.model.norm.weight.zero_()
    model.save_pretrained(root / "model")
    write_dataset(root / "data", 1, base_seed=7, split="test")
    model = VoCoModel.from_pretrained(root / "model", segment_seconds=1.0)
    summary = ingest_paths([root / "data" / "videos"], home=root / "home", model=model, model_name="silent")
    assert summary.count("ingested") == 1
    return root, model


@pytest.fixture
def own_home(library, tmp_path):
    """A private copy of the library's home (3 ready videos), for tests that add or remove videos."""
    root, _ = library
    shutil.copytree(root / "home", tmp_path / "home")
    s = Store.open(tmp_path / "home")
    yield s
    s.close()


def new_video(path: Path, seconds: int, seed: int) -> Path:
    """A 10 fps video of `seconds` one-second segments whose bytes no other test has ingested."""
    return write_video(path, pattern_frames(10 * seconds, seed=seed), fps=10)


@pytest.fixture
def scripted_answer(monkeypatch):
    """`scripted_answer(text)`: the service's answers say `text` (word by word, as if streamed), with the stats of
    a real decoding; a random tiny model never writes clock times itself."""

    def script(text: str) -> None:
        class ScriptedJob(AnswerJob):
            def take(self, logits):
                out, self.out = self.out, lambda event: None  # the model decodes; its own words are dropped
                try:
                    return super().take(logits)
                finally:
                    self.out = out

            def finish(self):
                real: list[AnswerPiece] = []
                out, self.out = self.out, real.append
                try:
                    super().finish()
                finally:
                    self.out = out
                for word in text.split(" "):
                    self.out(AnswerPiece(f"{word} "))
                self.out(AnswerPiece("", real[-1].stats))

        class Scripted(AnswerSession):
            def job(self, question, scores=None, **kwargs):
                return ScriptedJob(self, question, scores, GenerationConfig(**kwargs))

        monkeypatch.setattr("app.service.AnswerSession", Scripted)

    return script


@pytest.fixture
def held_answers(monkeypatch):
    """The service's answers wait at `.gate` (a threading.Event) before their prompt pass, holding the batch, and
    release `.reached` (a semaphore) when they get there."""
    gate, reached = threading.Event(), threading.Semaphore(0)

    class Held(AnswerSession):
        def job(self, question, scores=None, **kwargs):
            job = super().job(question, scores, **kwargs)
            place = job.place

            def held():
                reached.release()
                assert gate.wait(60)
                return place()

            job.place = held
            return job

    monkeypatch.setattr("app.service.AnswerSession", Held)
    Held.gate, Held.reached = gate, reached
    yield Held
    gate.set()  # nothing stays held after the test
