"""DDP through torchrun: two CPU processes (gloo) train the same weights."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from tests.train.conftest import tiny_dict

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    data = tiny_dict(tmp_path, threads=1, device="cpu")
    data["stages"][0]["steps"] = 2
    config = tmp_path / "ddp.yaml"
    config.write_text("# torchrun --nproc_per_node 2 -m voco.train --config ddp.yaml\n" + yaml.safe_dump(data))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "voco.train", "--config", str(config), "--no-progress"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    weights = load_file(Path(data["output_dir"]) / "final" / "model.safetensors")
    assert weights
