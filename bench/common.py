"""Shared bits of the benchmarks: the machine description, model choice, timing."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable

import torch


def machine() -> dict:
    info = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def bench_model(name: str, device: str = "cpu", dtype: torch.dtype | None = None):
    """A model for a bench: `smolvlm256m` (SmolVLM-256M's shapes) or `llava7b` / `llava7b:LAYERS` (LLaVA-1.5-7B's,
    bf16: for a GPU), random weights at real shapes; anything else through `voco.load_model` (a bundled name,
    `tiny`, or a checkpoint folder)."""
    from voco import load_model

    if name == "smolvlm256m":  # configs/smolvlm_voco.yaml's model at its real shapes, random weights
        from voco.config import PromptTemplate, VoCoConfig
        from voco.model import VoCoModel
        from voco.tiny import smolvlm_256m_config, tiny_tokenizer

        voco = VoCoConfig(k=2, frames_per_segment=1, prompt=PromptTemplate())
        model = VoCoModel.from_config(smolvlm_256m_config(), tiny_tokenizer(), voco, seed=0)
        return model.to(device, dtype or torch.float32)
    if name.startswith("llava7b"):  # llava7b or llava7b:LAYERS (a shallower stand-in to check the path)
        from voco.tiny import llava7b_model

        layers = int(name.split(":")[1]) if ":" in name else 32
        return llava7b_model(layers, device=device, dtype=dtype or torch.bfloat16)
    return load_model(name, device=device, dtype=dtype)


def best_time(fn: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None) -> float:
    """Best wall time of `repeats` runs after one warm-up, in seconds."""
    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best
