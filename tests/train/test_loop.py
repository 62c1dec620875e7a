"""Training loop: the loss goes down, resume is exact, stages freeze what they should, 7B-path stand-in runs."""

import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import LlavaForConditionalGeneration

from voco.tiny import tiny_config as tiny_llava_config
from voco.tiny import tiny_tokenizer
from voco.train.build import build_model
from voco.train.config import load_config
from voco.train.data import TrainStream, encode, load_video
from voco.train.forward import batch_loss
from voco.train.loop import train
from voco.train.schedule import lr_at, mask_row_grads, set_trainable

REPO = Path(__file__).resolve().parents[2]


def test_a_few_steps_reduce_the_loss(tiny_config):
    config = tiny_config()
    model = build_model(config.model)
    world = config.data.world_config()
    examples = [load_video("train", i, world=world, base_seed=0, questions_per_video=3, frames_per_segment=2,
                           segment_seconds=2.0) for i in range(2)]
    batch = encode(model, examples)
    groups = set_trainable(model, ["vision", "projector", "lm"])
    for g in groups:
        if g["weight_decay"] is None:
            g["weight_decay"] = 0.0
    optimizer = torch.optim.AdamW(groups, lr=3e-3)
    losses = []
    for _ in range(6):
        loss, _ = batch_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses


def test_loop_trains_saves_curve_and_metrics(tiny_config, tmp_path):
    command = "python -m voco.train --config configs/tiny-test.yaml"
    config = tiny_config(eval_every=3, export_dir=str(tmp_path / "export"), command=command)
    metrics = train(config, resume=False, progress=False, log=lambda *_: None)
    out = Path(config.output_dir)
    history = json.loads((out / "last" / "trainer_state.json").read_text())["history"]
    assert [h["step"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["loss"] < history[0]["loss"]
    assert (out / "curves.png").stat().st_size > 1000 and (out / "final" / "metrics.json").is_file()
    assert set(metrics["test"]["accuracy"]) <= set(metrics["test"]["count"])
    card = (tmp_path / "export" / "MODEL_CARD.md").read_text()
    assert f"\n    {command}\n" in card  # the card's "Reproduce" block gives the command the config serves


def _weights(folder: Path) -> dict:
    return load_file(folder / "model.safetensors")


def test_resume_is_exact(tiny_config, tmp_path):
    straight = tiny_config(output_dir=str(tmp_path / "a"), save_every=2)
    train(straight, resume=False, progress=False, log=lambda *_: None)
    halves = tiny_config(output_dir=str(tmp_path / "b"), save_every=2)
    assert train(halves, resume=False, progress=False, max_steps=2, log=lambda *_: None) == {}
    assert (tmp_path / "b" / "last" / "optimizer.pt").is_file()
    train(halves, resume=True, progress=False, log=lambda *_: None)
    a, b = _weights(tmp_path / "a" / "final"), _weights(tmp_path / "b" / "final")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_train_stream_is_a_function_of_the_step():
    s = TrainStream(num_videos=10, videos_per_batch=3, seed=1)
    first = [s.indices(i) for i in range(8)]
    again = TrainStream(num_videos=10, videos_per_batch=3, seed=1)
    assert [again.indices(i) for i in reversed(range(8))][::-1] == first
    assert sorted(sum(first[:4], [])[:10]) == list(range(10))  # an epoch visits every video once
    ranks = [TrainStream(num_videos=100, videos_per_batch=2, seed=1, rank=r, world_size=2).indices(0) for r in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1])


def test_schedule_warms_up_then_decays(tiny_config):
    stage = tiny_config().stages[0]
    stage.steps, stage.warmup_steps, stage.lr, stage.min_lr_ratio = 100, 10, 1.0, 0.1
    lrs = [lr_at(stage, s) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False)) and lrs[-1] >= 0.1


def test_stage_groups_freeze_the_rest(tiny_config):
    config = tiny_config()
    model = build_model(config.model)
    world = config.data.world_config()
    batch = encode(model, [load_video("train", 0, world=world, base_seed=0, questions_per_video=2,
                                      frames_per_segment=2, segment_seconds=2.0)])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    groups = set_trainable(model, ["projector", "voco_embedding"])
    for g in groups:
        if g["weight_decay"] is None:
            g["weight_decay"] = 0.01
    optimizer = torch.optim.AdamW(groups, lr=1e-2)
    loss, _ = batch_loss(model, batch)
    loss.backward()
    mask_row_grads(model)
    optimizer.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("projector.") or "embed_tokens" in k for k in changed), changed
    emb = [k for k in changed if "embed_tokens" in k][0]
    rows = (before[emb] != after[emb]).any(dim=1).nonzero().flatten().tolist()
    assert set(rows) <= {model.voco_token_id, model.segment_start_id} and model.voco_token_id in rows


def test_llava7b_config_runs_a_step_on_a_tiny_stand_in(tmp_path):
    """configs/llava7b.yaml as shipped (one process instead of fsdp), pointed at a tiny plain LLaVA folder: bf16
    autocast over fp32 weights + transformers' gradient checkpointing."""
    folder = tmp_path / "tiny-llava"
    torch.manual_seed(0)
    LlavaForConditionalGeneration(tiny_llava_config()).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    config = load_config(REPO / "configs" / "llava7b.yaml")
    assert config.engine.precision == "bf16" and config.engine.gradient_checkpointing
    config.model.path = str(folder)
    config.output_dir = str(tmp_path / "run")
    config.device = "cpu"
    assert config.engine.kind == "fsdp"
    config.engine.kind = "single"  # fsdp needs torchrun: tests/train/test_ddp.py runs it on two processes
    config.data.world = {"size": 32, "min_seconds": 2.0, "max_seconds": 3.0}
    config.data.videos_per_batch, config.data.val_videos, config.data.test_videos = 1, 1, 1
    config.data.workers = 0
    config.segment_chunk = 1
    for stage in config.stages:
        stage.steps, stage.warmup_steps = 1, 0
        stage.world = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "plain LLaVA checkpoint that has not been VoCo-tuned"
        train(config, resume=False, progress=False, log=lambda *_: None)
    state = json.loads((tmp_path / "run" / "last" / "trainer_state.json").read_text())
    assert [h["stage"] for h in state["history"]] == ["alignment", "voco_instruct", "video"]
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in state["history"])
    weights = _weights(tmp_path / "run" / "final")
    assert all(v.dtype == torch.float32 for v in weights.values())  # master weights; bf16 is the autocast
    voco = json.loads((tmp_path / "run" / "final" / "voco.json").read_text())
    assert voco["k"] == 1 and voco["voco_tuned"]
