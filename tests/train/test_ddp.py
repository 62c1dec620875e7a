"""Two processes under torchrun (gloo, CPU): DDP and FSDP2 train on different videos and end with the same weights.

Every rank hashes its own weights at the end (`Engine.rank_digests`, inside `full_model`) and rank 0 records the
digests in final/metrics.json; FSDP's weights must also match DDP's (same videos, same steps) to fp32 rounding.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.train.conftest import tiny_dict
from voco.train.build import build_model
from voco.train.config import config_from_dict

REPO = Path(__file__).resolve().parents[2]


def torchrun(tmp_path: Path, kind: str, data: dict | None = None, args: tuple = ()) -> dict:
    """Train (by default the tiny config for 2 steps) on 2 CPU processes with engine.kind `kind`; its config."""
    if data is None:
        data = tiny_dict(tmp_path / kind, threads=1, device="cpu", engine={"kind": kind})
        data["stages"][0]["steps"] = 2
    data["data"]["val_videos"] = data["data"]["test_videos"] = 1
    config = tmp_path / f"{kind}.yaml"
    config.write_text(f"# torchrun --nproc_per_node 2 -m voco.train --config {kind}.yaml\n" + yaml.safe_dump(data))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "voco.train", "--config", str(config), "--no-progress", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    return data


def _final(data: dict) -> tuple[dict, dict]:
    final = Path(data["output_dir"]) / "final"
    return json.loads((final / "metrics.json").read_text()), load_file(final / "model.safetensors")


@pytest.mark.slow
def test_ddp_and_fsdp_ranks_end_with_identical_weights(tmp_path):
    runs = {kind: torchrun(tmp_path, kind) for kind in ("ddp", "fsdp")}
    weights = {}
    for kind, data in runs.items():
        metrics, weights[kind] = _final(data)
        digests = metrics["throughput"]["rank_digests"]
        assert len(digests) == 2 and digests[0] == digests[1], f"{kind}: ranks differ {digests}"
        assert metrics["throughput"]["processes"] == 2 and metrics["throughput"]["samples_per_s"] > 0
    initial = build_model(config_from_dict(runs["ddp"]).model, seed=0).state_dict()
    assert any(not torch.equal(initial[n], weights["ddp"][n]) for n in weights["ddp"] if n in initial)
    # FSDP computes what DDP computes: same videos per rank, averaged gradients, same clipping
    assert weights["ddp"].keys() == weights["fsdp"].keys()
    for name, t in weights["ddp"].items():
        torch.testing.assert_close(weights["fsdp"][name], t, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.slow
def test_fsdp_two_stages_bf16_checkpointing_resume_mid_stage_equals_straight(tmp_path):
    """FSDP across a stage change (projector only, then the LM), bf16 autocast + gradient checkpointing, saved
    every step: stopped mid-stage and resumed (sharded optimizer state gathered, saved, loaded) == straight."""
    def config(name: str) -> dict:
        data = tiny_dict(tmp_path / name, threads=1, device="cpu", save_every=1,
                         engine={"kind": "fsdp", "precision": "bf16", "gradient_checkpointing": True})
        data["stages"] = [{"name": "align", "steps": 1, "lr": 1e-3, "train": ["projector"], "view": "full"},
                          {"name": "voco", "steps": 3, "lr": 3e-3, "warmup_steps": 1,
                           "train": ["projector", "lm", "voco_embedding"]}]
        return data

    straight = torchrun(tmp_path / "a", "fsdp", config("straight"))
    halves = torchrun(tmp_path / "b", "fsdp", config("halves"), ("--max-steps", "3"))
    assert not (Path(halves["output_dir"]) / "final").exists()
    torchrun(tmp_path / "b", "fsdp", halves)
    a, b = _final(straight)[1], _final(halves)[1]
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
