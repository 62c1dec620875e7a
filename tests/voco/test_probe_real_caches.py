"""scripts/probe_real_caches.py on the tiny assembled stand-in: the cache check tells classes apart exactly when
the caches differ, and reports chance when they cannot."""

import importlib.util
from pathlib import Path

import pytest
import torch

from voco.tiny import tiny_assembled_model
from voco.train.class_mixture import ClassMixtureSpec, ClassMixtureWorld

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def probe():
    spec = importlib.util.spec_from_file_location("probe_real_caches", REPO / "scripts" / "probe_real_caches.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def model(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tiny_assembled_model(tmp_path).eval()
    torch.set_num_threads(before)


def test_noise_free_frames_of_distinct_classes_are_retrieved_exactly(probe, model):
    # sharp, noise-free frames: both frames of a class are the same, so each cache finds its twin
    world = ClassMixtureWorld.for_model(model, ClassMixtureSpec(sharpness=(30.0, 30.0), noise=(0.0, 0.0),
                                                                second_object=0.0))
    result = probe.retrieval(model, world, classes=4, seed=0)
    assert result["all_layers"] == 1.0 and result["chance"] == 0.25
    assert len(result["per_layer"]) == model.lm.config.num_hidden_layers


def test_caches_that_cannot_differ_score_no_better_than_a_fixed_guess(probe, model):
    # a projector that writes the same tokens for every class: every cache is the same, nothing is retrievable
    with torch.no_grad():
        for p in model.projector.parameters():
            p.zero_()
    world = ClassMixtureWorld.for_model(model, ClassMixtureSpec())
    result = probe.retrieval(model, world, classes=4, seed=0)
    assert result["all_layers"] <= 0.25
