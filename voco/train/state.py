"""The resumable training state: trainer state (step, RNG states, history), atomic saves, what to resume from.

A resumable folder (`output_dir/last`) is a model checkpoint folder plus::

    optimizer.pt        the optimizer state (tensors only: torch.load(weights_only=True)); FSDP writes it whole
    aux_heads.pt        a stage's auxiliary heads, while that stage is in progress
    trainer_state.json  stage, step, global step, RNG states, history, validation, engine kind
"""

from __future__ import annotations

import base64
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from voco.train.config import TrainConfig

STATE_JSON = "trainer_state.json"
OPTIMIZER = "optimizer.pt"
AUX_HEADS = "aux_heads.pt"
KV_TEACHER = "kv_teacher.pt"


@dataclass
class TrainerState:
    stage: int = 0
    """Index of the stage in progress (== len(stages) when training is done)."""
    step: int = 0
    """Steps done in the stage in progress (the learning-rate schedule and the data position are functions of it)."""
    global_step: int = 0
    elapsed_s: float = 0.0
    rng: dict | str = ""
    """RNG states (torch CPU, CUDA, numpy, python `random`), as `rng_states` gives them."""
    history: list = field(default_factory=list)
    validation: list = field(default_factory=list)
    engine: str = "single"
    """engine.kind that wrote the state (the optimizer state's layout depends on it)."""

    def save(self, folder: Path) -> None:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        (folder / STATE_JSON).write_text(json.dumps(data, indent=1))

    @classmethod
    def load(cls, folder: Path) -> TrainerState:
        return cls(**json.loads((folder / STATE_JSON).read_text()))


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.numpy().tobytes()).decode()


def _tensor(text: str) -> torch.Tensor:
    import numpy as np

    return torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype=np.uint8).copy())


def rng_states() -> dict:
    """Every RNG a step may draw from: torch (CPU and each CUDA device), numpy's global, python's `random`."""
    import random

    import numpy as np

    np_state = np.random.get_state()
    return {"torch": _b64(torch.get_rng_state()),
            "cuda": [_b64(s) for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
            "numpy": [np_state[0], _b64(torch.from_numpy(np_state[1].astype(np.uint32).view(np.uint8))),
                      *np_state[2:]],
            "python": repr(random.getstate())}


def set_rng_states(states: dict | str) -> None:
    import ast
    import random

    import numpy as np

    if isinstance(states, str):  # a state written before RNG states became a dict: torch's only
        if states:
            torch.set_rng_state(_tensor(states))
        return
    torch.set_rng_state(_tensor(states["torch"]))
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_tensor(s) for s in states["cuda"]])
    kind, keys, *rest = states["numpy"]
    np.random.set_state((kind, _tensor(keys).numpy().view(np.uint32), *rest))
    random.setstate(ast.literal_eval(states["python"]))


def _atomic_replace_dir(tmp: Path, final: Path) -> None:
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def save_state(folder: Path, model, optimizer_state: dict | None, state: TrainerState,
               heads: nn.Module | None = None, kv_teacher=None) -> None:
    """Write model + optimizer + state to `folder` atomically (a crash mid-write keeps the previous one)."""
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    if optimizer_state is not None:
        torch.save(optimizer_state, tmp / OPTIMIZER)
        if heads is not None:  # a stage with auxiliary heads in progress: they are part of the resumable state
            torch.save(heads.state_dict(), tmp / AUX_HEADS)
        if kv_teacher is not None:  # a frozen KV-distillation teacher: the stage-start weights, resumable too
            torch.save(kv_teacher.state_dict(), tmp / KV_TEACHER)
    state.rng = rng_states()
    state.save(tmp)
    _atomic_replace_dir(tmp, folder)


def resume_from(config: TrainConfig, allowed: bool = True) -> Path | None:
    """The resumable state `config.resume` names: `auto` -> output_dir/last if it holds one; a folder; null."""
    if not allowed or config.resume is None:
        return None
    if config.resume == "auto":
        last = Path(config.output_dir) / "last"
        return last if (last / STATE_JSON).is_file() else None
    folder = Path(config.resume).expanduser()
    if not (folder / STATE_JSON).is_file():
        raise FileNotFoundError(f"resume: {folder} holds no resumable state ({STATE_JSON}); give a run's "
                                "`last` folder, `auto`, or null to start over")
    return folder
