"""Config loading: the shipped configs load; mistakes fail early with the offending key named."""

from pathlib import Path

import pytest

from tests.train.conftest import tiny_dict
from voco.train.__main__ import main
from voco.train.config import ConfigError, config_from_dict, load_config

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load_and_name_their_command(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and ("python " in first or "torchrun " in first), first
    if "voco.train" in first:
        config = load_config(path)
        assert config.command == first[2:].strip()


def _error(tmp_path, **changes) -> str:
    data = tiny_dict(tmp_path)
    for dotted, value in changes.items():
        target = data
        *parents, leaf = dotted.split("__")
        for p in parents:
            target = target[int(p)] if isinstance(target, list) else target[p]
        target[leaf] = value
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    return str(info.value)


def test_errors_name_the_key(tmp_path):
    assert "model.hiden" in _error(tmp_path, model__hiden=64) or "hiden" in _error(tmp_path, model__hiden=64)
    assert "model.layers" in _error(tmp_path, model__layers="two")
    assert "data.videos_per_batch" in _error(tmp_path, data__videos_per_batch=0)
    assert "train must list" in _error(tmp_path, stages__0__train=["everything"])
    assert "compressor" in _error(tmp_path, model__voco={"compressor": "bogus"})
    assert "data.world" in _error(tmp_path, data__world={"size": 33})
    assert "model.path is required" in _error(tmp_path, model__init="pretrained")
    assert "warmup_steps" in _error(tmp_path, stages__0__warmup_steps=99)


def test_cli_reports_a_bad_config_clearly(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("# python -m voco.train --config bad.yaml\nmodel: {}\ndata: {}\nstages: []\n")
    assert main(["--config", str(bad)]) == 2
    assert "stages" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
