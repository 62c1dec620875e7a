"""A small library for the app tests: a tiny random model, three synthetic videos, ingested."""

from __future__ import annotations

import pytest

from ingest.run import ingest_paths
from store import Store
from voco import VoCoModel
from voco.data.synthetic import write_dataset
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
