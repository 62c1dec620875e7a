"""Cache probe: targets follow the ground truth, the probe reads kept KV, a probed stage trains and resumes."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from voco.data.world import BackgroundSpan, ObjectState, ObjectTrack, Video
from voco.train.build import build_model
from voco.train.config import ConfigError
from voco.train.data import encode, load_video
from voco.train.forward import batch_loss
from voco.train.loop import train
from voco.train.probe import _OFFSETS, TARGETS, CacheProbe, cache_numel, segment_targets


def _video() -> Video:
    track = ObjectTrack(0, "circle", "red", 10.0, 0, 2, 8.0, 16.0, 1.0, 0.0, "right", "left")
    states = [[ObjectState(0, "circle", "red", 8.0, 16.0, 10.0)], []]
    return Video("v", 4, 32, 2, [track], [], [BackgroundSpan(0, 2, "navy")], states)


def test_targets_name_what_the_frames_show():
    video = _video()
    both, empty = segment_targets(video, np.array([0, 1])), segment_targets(video, np.array([1, 1]))
    assert both.shape == (TARGETS,)
    # one object: one (colour, shape), one (colour, region), one (colour, direction) bit + the background
    assert [int(both[_OFFSETS[i]:_OFFSETS[i + 1]].sum()) for i in range(4)] == [1, 1, 1, 1]
    assert [int(empty[_OFFSETS[i]:_OFFSETS[i + 1]].sum()) for i in range(4)] == [0, 0, 0, 1]


def test_probe_reads_the_kept_cache_and_its_loss_joins_the_answer_loss(tiny_config):
    config = tiny_config()
    model = build_model(config.model)
    world = config.data.world_config()
    examples = [load_video("train", i, world=world, base_seed=0, questions_per_video=2, frames_per_segment=2,
                           segment_seconds=2.0, probe_targets=True) for i in range(2)]
    assert encode(model, [load_video("train", 0, world=world, base_seed=0, questions_per_video=2,
                                     frames_per_segment=2, segment_seconds=2.0)]).segment_targets is None
    batch = encode(model, examples)
    assert batch.segment_targets.shape == (len(batch.segments), TARGETS)
    probe = CacheProbe(cache_numel(model))
    with torch.no_grad():
        plain, _ = batch_loss(model, batch)
    probed, stats = batch_loss(model, batch, probe=probe, probe_weight=0.5)
    assert float(probed.detach()) > float(plain) and stats["probe"] > 0
    probed.backward()
    assert probe.linear.weight.grad.abs().sum() > 0
    assert model.lm.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0  # through the caches


def test_probed_stage_trains_and_resumes_exactly(tiny_config, tmp_path):
    stages = [{"name": "voco", "steps": 4, "lr": 3e-3, "train": ["lm"], "probe_weight": 1.0}]
    straight = tiny_config(output_dir=str(tmp_path / "a"), stages=stages, save_every=2)
    train(straight, resume=False, progress=False, log=lambda *_: None)
    halves = tiny_config(output_dir=str(tmp_path / "b"), stages=stages, save_every=2)
    assert train(halves, resume=False, progress=False, max_steps=2, log=lambda *_: None) == {}
    assert (tmp_path / "b" / "last" / "aux_heads.pt").is_file()
    train(halves, resume=True, progress=False, log=lambda *_: None)
    a = load_file(tmp_path / "a" / "final" / "model.safetensors")
    b = load_file(tmp_path / "b" / "final" / "model.safetensors")
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_probe_needs_the_cache_view(tiny_config):
    with pytest.raises(ConfigError, match="probe_weight"):
        tiny_config(stages=[{"name": "s", "steps": 2, "view": "full", "probe_weight": 1.0, "train": ["lm"]}])
