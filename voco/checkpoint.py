"""Loading and saving VoCo checkpoints: transformers LLaVA folders plus `voco.json`.

A checkpoint folder holds what the family's transformers class (`LlavaForConditionalGeneration`,
`LlavaOnevisionForConditionalGeneration`, `LlavaNextVideoForConditionalGeneration`: voco/families.py,
chosen by `config.model_type`) writes with `save_pretrained` (config, safetensors), the tokenizer
files, `voco.json`, and for a compressor with its own weights (`pool`, `qformer`) `voco_compressor.safetensors`
(`voco.compressors.WEIGHTS_FILE`: the state dict of the compressor's module). A plain LLaVA
checkpoint (no `voco.json`) loads too: the `<voco>` token is added and the embeddings grow with the
mean of the existing rows.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlavaConfig
from transformers.utils import logging as hf_logging

from voco.assembly import load_assembled, save_assembled
from voco.compressors import LinearProjector
from voco.config import VOCO_JSON, VoCoConfig
from voco.families import family_of
from voco.folders import is_assembled, resolve_checkpoint
from voco.identity import COMPRESSION_FIELDS, remember_source
from voco.preprocess import llava_preprocessing
from voco.tokens import add_special_tokens

# the model class these build is passed in (VoCoModel's classmethods pass `cls`): typed generically, as
# voco/model.py imports this module
Model = TypeVar("Model", bound=nn.Module)

log = logging.getLogger(__name__)


def load_checkpoint(
    model_class: type[Model],
    name_or_path: str | Path = "default",
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    **overrides,
) -> Model:
    """Load a VoCo or plain LLaVA checkpoint; `overrides` replace `voco.json` fields (e.g. k=2)."""
    path = resolve_checkpoint(name_or_path)
    if is_assembled(path):  # pretrained parts from packages + trained parts in the folder (voco.assembly)
        return load_assembled(model_class, path, dtype=dtype, device=device, **overrides)
    config = AutoConfig.from_pretrained(path)
    family = family_of(config, str(path))  # by config.model_type: llava, llava_onevision, llava_next_video
    has_voco = (path / VOCO_JSON).is_file()
    if has_voco:
        voco = dataclasses.replace(VoCoConfig.load(path), **overrides)
    else:
        # a plain LLaVA checkpoint: frames are prepared as its own processor prepares images
        preprocessing = llava_preprocessing(path, config.vision_config.image_size)
        voco = VoCoConfig(voco_tuned=False, **{**preprocessing, **overrides})
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise FileNotFoundError(
            f"{path}: cannot load the tokenizer ({err}); a checkpoint needs its tokenizer files"
        ) from err

    # LLaVA's own projector is mlp2x_gelu; a linear one is saved as `linear_1` only, so silence the
    # missing-`linear_2` report that loading it through LLaVA's class gives.
    quiet = voco.projector == "linear"
    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    if quiet:
        hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # a per-tensor bar is noise for a small local checkpoint
    try:
        llava = family.model_class.from_pretrained(path, dtype=dtype or torch.float32)
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
    model = from_llava(model_class, llava, tokenizer, voco, add_tokens=not has_voco)
    model.compressor.load_weights(path, tuned=voco.voco_tuned)  # its own weights (pool, qformer), if any
    if not has_voco and model.compressor.reads_voco_token:  # full / pool read the checkpoint's own tokens
        warnings.warn(
            f"{path} is a plain LLaVA checkpoint that has not been VoCo-tuned: it has a new, untrained "
            f"{voco.voco_token} token, so answers from its caches will be poor until it is trained "
            "(python -m voco.train).",
            stacklevel=2,
        )
    model = model.to(device).eval()
    # the weights are now exactly what these files give: their digest may come from the digest cache
    remember_source(model, path, {"dtype": str(dtype or torch.float32), "add_tokens": not has_voco,
                                  "compression": {f: getattr(voco, f) for f in COMPRESSION_FIELDS},
                                  "tokens": [voco.voco_token, voco.segment_start_token]})
    return model


def from_llava(model_class: type[Model], llava, tokenizer, voco: VoCoConfig, *, add_tokens: bool) -> Model:
    """Take a transformers LLaVA-family model apart into a `VoCoModel` (same weights, no copies)."""
    config = llava.config
    family = family_of(config)
    vision_tower, projector, language_model, lm_head = family.parts(llava)
    lm = build_lm(config.text_config, language_model, lm_head)
    if add_tokens:
        add_special_tokens(lm, tokenizer, voco)
        config.text_config.vocab_size = lm.get_input_embeddings().num_embeddings
    if voco.projector != "mlp2x_gelu" and not hasattr(projector, "linear_1"):
        raise ValueError(f"projector {voco.projector!r} replaces LLaVA's projector; a {config.model_type} "
                         "checkpoint's own connector is its frame path: leave voco.json projector at mlp2x_gelu")
    frame_path = family.frame_path(llava, make_projector(config, voco.projector, projector))
    return model_class(config, voco, vision_tower, frame_path, lm, tokenizer)


def new_model(model_class: type[Model], config: LlavaConfig, tokenizer, voco: VoCoConfig, *,
              seed: int = 0) -> Model:
    """A randomly initialised model (tests, benchmarks, training from scratch)."""
    torch.manual_seed(seed)
    llava = family_of(config).model_class(config).eval()
    return from_llava(model_class, llava, tokenizer, voco, add_tokens=True)


def save_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Write `model` as a transformers LLaVA folder + tokenizer + voco.json (+ the compressor's own weights)."""
    if getattr(model, "assembly", None) is not None:
        save_assembled(model, path)
        return
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    llava = family_of(model.config).assemble(model.config, model.vision_tower, model.projector, model.lm.model,
                                             model.lm.lm_head)
    llava.save_pretrained(path)
    model.tokenizer.save_pretrained(path)
    model.voco.save(path)
    model.compressor.save_weights(path)


def build_lm(text_config, language_model: nn.Module, lm_head: nn.Module) -> nn.Module:
    """The transformers causal LM around an existing decoder and head (no new weights allocated)."""
    with torch.device("meta"):
        lm = AutoModelForCausalLM.from_config(text_config)
    lm.model = language_model
    lm.lm_head = lm_head
    return lm


def make_projector(config: LlavaConfig, kind: str, llava_projector: nn.Module) -> nn.Module:
    """LLaVA's own mlp2x_gelu projector, or a linear one taking over its first layer."""
    if kind == "mlp2x_gelu":
        return llava_projector
    first = llava_projector.linear_1
    linear = LinearProjector(first.in_features, first.out_features, bias=first.bias is not None)
    linear.linear_1 = first
    return linear
