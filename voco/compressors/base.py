"""The compressor protocol: what a segment's pass-1 sequence holds, which KV it keeps, and everything else that
depends on the compressor (its own weights, the single-pass reference's row, training, the model card).

A config name resolves to a class (`compressor_class("pool")`), as litgpt resolves model names; nothing outside
`voco/compressors/` (every compressor's module lives there) branches on the name. A new compressor is a subclass
with `name = "..."`, decorated with `@register`, in a module listed in `voco.compressors.MODULES`.

Hooks a compressor overrides (everything has a default that fits a dense, one-pass compressor):

- `layout(n)` and `sequence_embeds(model, vision)`: the pass-1 sequence and the kept window (dense compressors
  only need these two; `compress_batch` and `compress_for_training` run one plain LM pass over the sequence and
  keep `layout.kept_start .. + kept`).
- `options`: what `VoCoConfig.compressor_options` may set for this class (defaults; unknown keys fail).
- `build_module(k, text_config, options)`: the compressor's own trained weights (one `nn.Module`, or None).
  The model registers it under `module_name`: that is its state-dict prefix (so it is part of the model
  identity), its parameter group in training configs (`train: [lm, pool]`) and what
  `voco_compressor.safetensors` holds.
- `design_row(model, vision)`: the single-pass reference's row for one segment (`voco/reference.py`), written
  from the design, not from `sequence_embeds` (sharing it would hide a bug in it from the parity tests).
- **A compressor that runs its own per-layer loop inside the LM** (ATP prunes tokens between decoder layers):
  override `compress_batch(model, vision, fingerprint)` for inference (it may call the decoder layers one by
  one, as `model.lm.model.layers`, and return any `SegmentCache`-like objects) and `compress_for_training`
  for the differentiable pass (it returns a `Compressed` whose `aux` holds extra losses, e.g. a token budget,
  already weighted: `voco.train.forward.batch_loss` adds them to the loss and logs them).
  Its single-pass reference (`design_row`) can return a `reference.DesignSegment` extended with per-layer kept
  sets; `voco/reference.py`'s mask builder is where per-layer masks would go.
- **A compressor whose kept KV is ragged** (per-layer lengths, per-token canonical positions): override
  `compress_batch` to return the ragged cache type, `check_caches` for what a model accepts and
  `past_from_caches(model, caches, prefix_ids, starts)` for the move onto the timeline (each token shifted by its
  segment's delta); the default stacks dense caches and calls `VoCoModel.past_from_kv`. Set `dense_caches =
  False`: such caches cannot carry time labels (`PromptTemplate.segment_label`), which a config then refuses.
- `kept_tokens(n)` and `describe(n)`: counts and text for the model card, the table and the benches.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from voco.cache import SegmentCache, check_caches

WEIGHTS_FILE = "voco_compressor.safetensors"
"""A checkpoint's file of the compressor's own weights (the state dict of its module, unprefixed)."""


@dataclass(frozen=True)
class SegmentLayout:
    """Token layout of one segment's compression sequence."""

    length: int
    """Tokens in the pass-1 sequence, positions 0 .. length - 1."""
    kept_start: int
    """Canonical position of the first kept token."""
    kept: int
    """Number of kept tokens (the k of the cache)."""


@dataclass
class Compressed:
    """What the differentiable compress pass gives training: kept KV, its layout, and extra losses."""

    kv: torch.Tensor
    """[B, layers, 2, kv_heads, kept, head_dim]"""
    layout: SegmentLayout
    aux: dict[str, torch.Tensor] = field(default_factory=dict)
    """Named extra loss terms (already weighted), added to the training loss."""
    key_mask: torch.Tensor | None = None
    """[B, layers, kept] soft keep-mask of every kept token per layer (ATP), read by the question pass as a
    per-layer key bias log(mask); None: every kept token is read in every layer."""


REGISTRY: dict[str, type[Compressor]] = {}


def register(cls: type[Compressor]) -> type[Compressor]:
    """Class decorator: make `cls.name` resolve to `cls`."""
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"compressor name {cls.name!r} is taken by {REGISTRY[cls.name].__qualname__}")
    REGISTRY[cls.name] = cls
    return cls


class Compressor:
    """One compressor (see the module docstring for the protocol). Instances are cheap and hold `k` and the
    compressor's module (if any); `VoCoModel.compressor` is the model's."""

    name: ClassVar[str]
    uses_k: ClassVar[bool] = True
    """Whether `k` sets the tokens kept per segment (False: the count follows the segment, as for `full`)."""
    keeps_all_vision: ClassVar[bool] = False
    """True for the uncompressed reference row (`full`): the table's retention is against it, and no cache
    probe is added to it."""
    reads_voco_token: ClassVar[bool] = False
    """Whether its segment sequence holds `<voco>` tokens (a plain checkpoint's new, untrained one: poor caches
    until tuned); False: a stock checkpoint's caches are its own (`full`, `pool`), zero-shot."""
    module_name: ClassVar[str | None] = None
    """Attribute, state-dict prefix and training parameter group of the compressor's module."""
    dense_caches: ClassVar[bool] = True
    """Whether its caches keep the same tokens in every layer (`SegmentCache`); False for ragged caches, which
    cannot carry time labels between them (`PromptTemplate.segment_label`)."""

    options: ClassVar[dict] = {}
    """The options (`VoCoConfig.compressor_options`) the class takes, with their defaults."""

    def __init__(self, k: int, module: nn.Module | None = None, options: dict | None = None):
        if self.uses_k and k < 1:
            raise ValueError(f"k (tokens kept per segment) must be >= 1 for the {self.name!r} compressor, got {k}")
        self.check_options(options or {})
        self.k = k
        self.module = module
        self.opts = {**self.options, **(options or {})}

    @classmethod
    def check_options(cls, options: dict) -> None:
        unknown = sorted(set(options) - set(cls.options))
        if unknown:
            raise ValueError(f"compressor_options {unknown} are not options of the {cls.name!r} compressor "
                             f"(it takes {sorted(cls.options) or 'none'})")

    @classmethod
    def for_model(cls, k: int, text_config, options: dict | None = None) -> Compressor:
        """The compressor for an LM of this `text_config` (transformers config), with a fresh module."""
        return cls(k, cls.build_module(k, text_config, {**cls.options, **(options or {})}), options)

    @classmethod
    def build_module(cls, k: int, text_config, options: dict) -> nn.Module | None:
        """The compressor's own trained weights, fresh (None: it has none)."""
        return None

    # ---- pass 1 ------------------------------------------------------------------------------------------

    def frame_tokens(self, model, tokens: torch.Tensor) -> torch.Tensor:
        """Each frame's projected tokens [frames, p, hidden] -> the tokens of it a segment's sequence holds
        (all of them; `pool_frames` pools each frame's grid first)."""
        return tokens

    def layout(self, n_vision: int) -> SegmentLayout:
        raise NotImplementedError

    def sequence_embeds(self, model, vision: torch.Tensor) -> torch.Tensor:
        """Vision embeddings [B, n, hidden] -> pass-1 input [B, L_seg, hidden]."""
        raise NotImplementedError

    def compress_for_training(self, model, vision: torch.Tensor) -> Compressed:
        """Differentiable pass 1 over B segments' vision embeddings [B, n, hidden]."""
        layout = self.layout(vision.shape[1])
        return Compressed(model.compress_embeds(self.sequence_embeds(model, vision), layout), layout)

    def compress_batch(self, model, vision: torch.Tensor, fingerprint: str) -> list[SegmentCache]:
        """Inference pass 1: B segments' vision embeddings [B, n, hidden] -> B position-free caches."""
        layout = self.layout(vision.shape[1])
        kv = model.compress_embeds(self.sequence_embeds(model, vision), layout)  # [B, L, 2, H, kept, D]
        return [SegmentCache(seg_kv.clone(), layout.kept_start, fingerprint, self.name) for seg_kv in kv.cpu()]

    def kept_tokens(self, n_vision: int) -> int:
        return self.layout(n_vision).kept

    def describe(self, n_vision: int) -> str:
        """What a segment's cache holds, in words (model card)."""
        raise NotImplementedError

    # ---- pass 2 ------------------------------------------------------------------------------------------

    def check_caches(self, caches: Sequence[SegmentCache], fingerprint: str) -> None:
        """Fail loudly when caches do not belong to a model with this compressor."""
        check_caches(caches, fingerprint=fingerprint, compressor=self.name, k=self.k if self.uses_k else None)

    def past_from_caches(self, model, caches: Sequence[SegmentCache], prefix_ids: list[int],
                         starts: Sequence[float] | None = None):
        """[prefix KV, caches on the timeline (each followed by its time label when the model has them)] as the
        LM's cache, and the next position; starts: each segment's start seconds (None: index * segment_seconds)."""
        kv = torch.stack([c.kv for c in caches])
        source = torch.tensor([c.source_position for c in caches])
        return model.past_from_kv(kv, source, prefix_ids, starts)

    # ---- the single-pass reference (voco/reference.py) ----------------------------------------------------

    def design_row(self, model, vision: torch.Tensor):
        """One segment's `reference.DesignSegment` from its vision embeddings [n, hidden], from the design."""
        raise NotImplementedError

    # ---- checkpoints -------------------------------------------------------------------------------------

    def save_weights(self, folder: Path) -> None:
        if self.module is not None:
            save_file({k: v.contiguous() for k, v in self.module.state_dict().items()}, folder / WEIGHTS_FILE)

    def load_weights(self, folder: Path, *, tuned: bool) -> None:
        """Load the module's weights from a checkpoint folder; warn when a tuned checkpoint lacks them."""
        if self.module is None:
            return
        weights = folder / WEIGHTS_FILE
        if weights.is_file():
            self.module.load_state_dict(load_file(weights))
        elif tuned:
            warnings.warn(f"{folder} has no {WEIGHTS_FILE}: the {self.name} compressor's weights start "
                          f"{self.untrained_start()}", stacklevel=3)

    def untrained_start(self) -> str:
        return "untrained"


MODULES = ("voco.compressors.dense", "voco.compressors.qformer", "voco.compressors.atp.compressor")
"""Modules whose import registers compressors (imported on first lookup: they import this module)."""


def load_builtin() -> None:
    for module in MODULES:
        importlib.import_module(module)


def compressor_class(name: str) -> type[Compressor]:
    """The class a config's compressor name resolves to."""
    load_builtin()
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"compressor must be one of {sorted(REGISTRY)}, got {name!r}") from None


def module_names() -> set[str]:
    """Every compressor's module name (training parameter groups that belong to one compressor)."""
    load_builtin()
    return {cls.module_name for cls in REGISTRY.values() if cls.module_name}


class LinearProjector(nn.Module):
    """A single linear vision-to-LM projector; `linear_1` matches LLaVA's key name on disk."""

    def __init__(self, vision_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.linear_1 = nn.Linear(vision_size, hidden_size, bias=bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_1(features)
