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


def load_model(name: str, device: str = "cpu", dtype: torch.dtype | None = None):
    """`tiny` (random, 64 px frames, 64 tokens per frame), `smolvlm256m` (random weights, SmolVLM-256M's shapes),
    `llava7b` (random weights, LLaVA-1.5-7B shapes, bf16: for a GPU), `default` (bundled), or a checkpoint folder."""
    from voco import VoCoModel

    if name == "tiny":
        from voco.tiny import tiny_config, tiny_model

        return tiny_model("llama", config=tiny_config(image_size=64, patch_size=8), k=1).to(device)
    if name == "smolvlm256m":  # configs/smolvlm_voco.yaml's model at its real shapes, random weights
        from voco.checkpoint import new_model
        from voco.config import PromptTemplate, VoCoConfig
        from voco.tiny import smolvlm_256m_config, tiny_tokenizer

        voco = VoCoConfig(k=2, frames_per_segment=1, prompt=PromptTemplate())
        return new_model(smolvlm_256m_config(), tiny_tokenizer(), voco, seed=0).to(device, dtype or torch.float32)
    if name.startswith("llava7b"):  # llava7b or llava7b:LAYERS (a shallower stand-in to check the path)
        from voco.tiny import llava7b_model

        layers = int(name.split(":")[1]) if ":" in name else 32
        return llava7b_model(layers, device=device, dtype=dtype or torch.bfloat16)
    return VoCoModel.from_pretrained(name, device=device, dtype=dtype)


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
