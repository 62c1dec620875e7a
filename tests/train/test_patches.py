"""Patch supervision: labels follow the ground truth, the heads learn, a `patches` stage trains and resumes exactly."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from voco.data.world import BACKGROUND_COLORS, OBJECT_COLORS, REGIONS, SHAPES, BackgroundSpan, ObjectState, Video
from voco.train.build import build_model
from voco.train.config import ConfigError
from voco.train.loop import train
from voco.train.patches import IGNORE, TASKS, PatchHeads, feature_size, load_patch_example, patch_labels, patch_loss


def _video(states: list[ObjectState], background: str = "navy") -> Video:
    return Video(video_id="v", fps=4, size=32, num_frames=1, objects=[], events=[],
                 backgrounds=[BackgroundSpan(0, 1, background)], frame_states=[states])


def test_labels_mark_the_cells_an_object_covers():
    color, shape = list(OBJECT_COLORS)[1], "square"
    # a square of side ~0.85 * 16 = 13.6 px centred in cell (row 1, col 2) of a 4 x 4 grid of 8 px cells
    video = _video([ObjectState(0, shape, color, 22.0, 14.0, 16.0)], background=list(BACKGROUND_COLORS)[2])
    labels = patch_labels(video, 0, grid=4)  # [tasks, 16]
    assert labels.shape == (len(TASKS), 16)
    covered = labels[0].reshape(4, 4)
    assert covered[1, 2] == 1 and covered[3, 0] == 0 and covered[0, 0] == 0
    on = labels[0] == 1
    assert (labels[1][on] == list(OBJECT_COLORS).index(color)).all()
    assert (labels[2][on] == SHAPES.index(shape)).all()
    assert (labels[1][~on] == IGNORE).all() and (labels[2][~on] == IGNORE).all()
    assert (labels[3] == 2).all()
    assert (labels[4][on] == REGIONS.index("right")).all() and (labels[4][~on] == IGNORE).all()  # centre (22, 14)


def test_labels_of_an_empty_frame_are_background_only():
    labels = patch_labels(_video([]), 0, grid=4)
    assert (labels[0] == 0).all() and (labels[1] == IGNORE).all()
    assert (labels[3] == list(BACKGROUND_COLORS).index("navy")).all()


def test_grid_must_divide_the_frame():
    with pytest.raises(ValueError, match="multiple of the patch grid"):
        patch_labels(_video([]), 0, grid=5)


def test_heads_learn_the_labels(tiny_config):
    config = tiny_config()
    model = build_model(config.model)
    examples = [load_patch_example(i, world=config.data.world_config(), base_seed=0, frames_per_segment=2, grid=4)
                for i in range(3)]
    assert examples[0].frames.shape[1:] == (32, 32, 3) and examples[0].labels.shape[1:] == (len(TASKS), 16)
    heads = PatchHeads(feature_size(model))
    params = list(model.vision_tower.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=3e-3)
    losses = []
    for _ in range(15):
        loss, stats = patch_loss(model, heads, examples)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses
    assert stats["acc_background"] > 0.9


def _two_stage(tiny_config, out: Path, **top):
    stages = [{"name": "vision", "steps": 3, "lr": 3e-3, "objective": "patches", "train": ["vision"]},
              {"name": "voco", "steps": 2, "lr": 3e-3, "train": ["lm"]}]
    return tiny_config(output_dir=str(out), stages=stages, save_every=2, **top)


def test_patches_stage_trains_only_the_vision_tower_and_resumes_exactly(tiny_config, tmp_path):
    straight = _two_stage(tiny_config, tmp_path / "a")
    before = build_model(straight.model).state_dict()
    train(straight, resume=False, progress=False, log=lambda *_: None)
    a = load_file(tmp_path / "a" / "final" / "model.safetensors")
    vision = [n for n in a if n.startswith("vision_tower.")]
    projector = [n for n in a if n.startswith("projector.")]
    assert any(not torch.equal(a[n], before[n]) for n in vision)
    assert all(torch.equal(a[n], before[n]) for n in projector)
    # stop inside the patches stage (its heads and optimizer are saved), then resume
    halves = _two_stage(tiny_config, tmp_path / "b")
    assert train(halves, resume=False, progress=False, max_steps=2, log=lambda *_: None) == {}
    assert (tmp_path / "b" / "last" / "aux_heads.pt").is_file()
    train(halves, resume=True, progress=False, log=lambda *_: None)
    b = load_file(tmp_path / "b" / "final" / "model.safetensors")
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_patches_stage_must_train_only_vision(tiny_config):
    with pytest.raises(ConfigError, match="trains only the vision tower"):
        tiny_config(stages=[{"name": "v", "steps": 2, "objective": "patches", "train": ["vision", "lm"]}])
    with pytest.raises(ConfigError, match="objective must be one of"):
        tiny_config(stages=[{"name": "v", "steps": 2, "objective": "pixels", "train": ["vision"]}])
