"""Training VoCo models: `python -m voco.train --config configs/<name>.yaml` (see voco/train/loop.py)."""

from voco.train.config import ConfigError, TrainConfig, load_config

__all__ = ["ConfigError", "TrainConfig", "load_config", "train"]


def train(config, **kwargs):
    from voco.train.loop import train as _train

    return _train(config, **kwargs)
