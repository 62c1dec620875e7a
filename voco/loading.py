"""The one model loader of the CLIs, the app, the demo and the benches."""

from __future__ import annotations

from pathlib import Path

import torch

from voco.model import VoCoModel
from voco.tiny import tiny_config, tiny_model


def load_model(name_or_path: str | Path = "default", device: str | torch.device = "cpu",
               dtype: str | torch.dtype | None = None, compressor: str | None = None,
               k: int | None = None) -> VoCoModel:
    """The one model loader of the CLIs, the app, the demo and the benches: `VoCoModel.from_pretrained` in eval mode on
    `device` in `dtype` (a torch dtype or its name, e.g. "bfloat16"; None: the checkpoint's), with `compressor` and
    `k` replacing the checkpoint's (None: its own). "tiny" is a tiny random model (demos, benches).
    FileNotFoundError (with its message) when there is no such model, ValueError for an unknown compressor."""
    if str(name_or_path) == "tiny":
        return tiny_model("llama", config=tiny_config(image_size=64, patch_size=8), k=1).to(device).eval()
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    overrides = {key: value for key, value in (("compressor", compressor), ("k", k)) if value is not None}
    return VoCoModel.from_pretrained(name_or_path, device=device, dtype=dtype, **overrides).eval()
