"""DDP through torchrun: two CPU processes (gloo) train on different videos and end with the same weights."""

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

# Runs `python -m voco.train` in each process and saves, at the end, the weights that process's DDP wrapper
# trained (rank 0 alone writes the checkpoint, so this is how rank 1's weights become visible).
RECORD_RANK_WEIGHTS = """
import os, sys
from torch import nn
from safetensors.torch import save_file

wrapped = []
class RecordingDDP(nn.parallel.DistributedDataParallel):
    def __init__(self, module, *args, **kwargs):
        super().__init__(module, *args, **kwargs)
        wrapped.append(module)

nn.parallel.DistributedDataParallel = RecordingDDP
from voco.train.__main__ import main

code = main(sys.argv[1:])
assert wrapped, "training never wrapped its module in DistributedDataParallel"
state = {k: v.detach().cpu().clone().contiguous() for k, v in wrapped[-1].state_dict().items()}
save_file(state, os.path.join(os.environ["RANK_WEIGHTS"], f"rank{os.environ['RANK']}.safetensors"))
sys.exit(code)
"""


@pytest.mark.slow
def test_torchrun_two_processes_end_with_identical_weights(tmp_path):
    data = tiny_dict(tmp_path, threads=1, device="cpu")
    data["stages"][0]["steps"] = 2
    config = tmp_path / "ddp.yaml"
    config.write_text("# torchrun --nproc_per_node 2 -m voco.train --config ddp.yaml\n" + yaml.safe_dump(data))
    script = tmp_path / "record_rank_weights.py"
    script.write_text(RECORD_RANK_WEIGHTS)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), "--config", str(config), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "RANK_WEIGHTS": str(tmp_path)}
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]

    ranks = [load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys() and ranks[0]
    for name in ranks[0]:
        assert torch.equal(ranks[0][name], ranks[1][name]), f"{name} differs between the ranks"
    # the checkpoint rank 0 wrote holds those weights, and they moved away from the initial ones
    saved = load_file(Path(data["output_dir"]) / "final" / "model.safetensors")
    initial = build_model(config_from_dict(data).model, seed=data["seed"]).state_dict()
    trained = {name[len("model."):]: t for name, t in ranks[0].items() if name.startswith("model.")}
    common = saved.keys() & trained.keys()
    assert common and all(torch.equal(saved[n], trained[n]) for n in common)
    assert any(not torch.equal(initial[n], trained[n]) for n in common if n in initial)
