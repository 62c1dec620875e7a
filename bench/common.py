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


def llava15_7b_config(layers: int = 32):
    """LLaVA-1.5-7B's shapes: CLIP ViT-L/14 at 336 px (576 tokens per frame) + a Llama-2-7B decoder."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=336, patch_size=14, projection_dim=768)
    text = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=layers, num_attention_heads=32,
                       num_key_value_heads=32, vocab_size=32064, max_position_embeddings=4096)
    return LlavaConfig(vision_config=vision, text_config=text, vision_feature_layer=-2,
                       vision_feature_select_strategy="default", image_token_index=32000)


def load_model(name: str, device: str = "cpu", dtype: torch.dtype | None = None):
    """`tiny` (random, 64 px frames, 64 tokens per frame), `llava7b` (random weights, LLaVA-1.5-7B shapes,
    bf16: for a GPU), `default` (bundled), or a checkpoint folder."""
    from voco import VoCoModel

    if name == "tiny":
        from voco.tiny import tiny_config, tiny_model

        return tiny_model("llama", config=tiny_config(image_size=64, patch_size=8), k=1).to(device)
    if name.startswith("llava7b"):  # llava7b or llava7b:LAYERS (a shallower stand-in to check the path)
        from voco.checkpoint import new_model
        from voco.config import VoCoConfig
        from voco.tiny import tiny_tokenizer

        layers = int(name.split(":")[1]) if ":" in name else 32
        default = torch.get_default_dtype()
        torch.set_default_dtype(dtype or torch.bfloat16)
        try:
            with torch.device(device):
                model = new_model(llava15_7b_config(layers), tiny_tokenizer(), VoCoConfig(k=1, frames_per_segment=1))
        finally:
            torch.set_default_dtype(default)
        return model.eval()
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
