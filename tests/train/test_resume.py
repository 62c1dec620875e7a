"""Resumable checkpoints: N steps straight == N/2 + resume + N/2 (bf16 autocast, gradient checkpointing, a probe
stage's heads), from `resume: auto` and from a PATH; RNG states round trip; a bad resume PATH fails loudly."""

import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from voco.train.loop import train
from voco.train.state import STATE_JSON, TrainerState, resume_from, rng_states, set_rng_states

QUIET = {"progress": False, "log": lambda *_: None}
ENGINE = {"kind": "single", "precision": "bf16", "gradient_checkpointing": True}


def _weights(run: Path) -> dict:
    return load_file(run / "final" / "model.safetensors")


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_half_then_resume_equals_straight_with_bf16_and_checkpointing(tiny_config, tmp_path):
    straight = tiny_config(output_dir=str(tmp_path / "a"), engine=ENGINE)
    train(straight, **QUIET)
    halves = tiny_config(output_dir=str(tmp_path / "b"), engine=ENGINE)
    assert train(halves, max_steps=2, **QUIET) == {}
    state = TrainerState.load(tmp_path / "b" / "last")
    assert (state.step, state.engine) == (2, "single") and set(state.rng) == {"torch", "cuda", "numpy", "python"}
    train(halves, **QUIET)  # resume: auto
    _assert_same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    history = TrainerState.load(tmp_path / "b" / "final").history
    assert [h["step"] for h in history] == [1, 2, 3, 4] and all(h["tokens"] > 0 for h in history)


def test_resume_from_a_path_into_a_new_output_dir(tiny_config, tmp_path):
    straight = tiny_config(output_dir=str(tmp_path / "a"))
    train(straight, **QUIET)
    first = tiny_config(output_dir=str(tmp_path / "b"))
    train(first, max_steps=2, **QUIET)
    shutil.copytree(tmp_path / "b" / "last", tmp_path / "saved")
    second = tiny_config(output_dir=str(tmp_path / "c"), resume=str(tmp_path / "saved"))
    train(second, **QUIET)
    _assert_same(_weights(tmp_path / "a"), _weights(tmp_path / "c"))


def test_resume_settings(tiny_config, tmp_path):
    config = tiny_config(output_dir=str(tmp_path / "run"))
    assert resume_from(config) is None  # auto, nothing there yet
    (tmp_path / "run" / "last").mkdir(parents=True)
    (tmp_path / "run" / "last" / STATE_JSON).write_text("{}")
    assert resume_from(config) == tmp_path / "run" / "last"
    assert resume_from(config, allowed=False) is None
    assert resume_from(tiny_config(resume=None)) is None
    with pytest.raises(FileNotFoundError, match="holds no resumable state"):
        resume_from(tiny_config(resume=str(tmp_path / "nowhere")))


def test_rng_states_round_trip():
    states = rng_states()
    drawn = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_states(states)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(drawn[0], again[0]) and np.array_equal(drawn[1], again[1]) and drawn[2] == again[2]


TWO_STAGES = [{"name": "first", "steps": 4, "lr": 3e-3, "train": ["projector", "lm"]},
              {"name": "second", "steps": 2, "lr": 1e-3, "train": ["projector"]}]


def test_a_stage_shortened_to_the_saved_step_counts_as_finished(tiny_config, tmp_path):
    """Saved mid-stage at step 2, then the stage's config cut to 2 steps: resuming goes on to the next stage
    (whose parameter groups differ) instead of loading the old stage's optimizer into it."""
    train(tiny_config(stages=TWO_STAGES), max_steps=2, **QUIET)
    shortened = [{**TWO_STAGES[0], "steps": 2}, TWO_STAGES[1]]
    lines = []
    train(tiny_config(stages=shortened), progress=False, log=lines.append)
    assert any("counts as finished" in line for line in lines)
    history = TrainerState.load(tmp_path / "run" / "final").history
    assert [(h["step"], h["stage"]) for h in history] == [(1, "first"), (2, "first"), (3, "second"), (4, "second")]


def test_a_changed_train_list_mid_stage_fails_with_the_reason(tiny_config, tmp_path):
    train(tiny_config(stages=TWO_STAGES), max_steps=2, **QUIET)
    changed = [{**TWO_STAGES[0], "train": ["projector"]}, TWO_STAGES[1]]
    with pytest.raises(ValueError, match="saved in the middle of stage 'first'.*was the stage's `train` list changed"):
        train(tiny_config(stages=changed), **QUIET)
