"""Checkpoint families: which transformers class holds a checkpoint, and its per-frame (video) path.

A family is chosen by the checkpoint's `config.model_type` (a registered class per type, never a name
substring). Every family is a vision tower, a projector and a decoder LM (`Family.parts`: under the attribute
names LLaVA uses, `model.vision_tower`, `model.multi_modal_projector`, `model.language_model`, `lm_head`, or the
family's own); they differ in what turns one frame's vision features into LM embeddings, and VoCo follows each
model's own *video* path, since segments are video frames:

- `llava` (LLaVA-1.5): the projector.
- `llava_onevision` (LLaVA-OneVision, SigLIP + Qwen2): the projector, then 2x2 bilinear pooling of the
  token grid (`LlavaOnevisionModel.apply_pooling`: 729 -> 196 tokens per 384 px frame); a segment's frames
  end with one `image_newline`, as its video path ends a video's.
- `llava_next_video` (LLaVA-NeXT-Video): the spatial pooler (`vision_resampler`), then the projector.
- `idefics3` and `smolvlm` (Idefics3, SmolVLM / SmolVLM2: SigLIP + Llama): the encoder's post-layernorm
  patch states, then the connector (pixel shuffle by `scale_factor`, then a linear): each frame read as one
  global image at the encoder's side, as their processors read video frames (no tile splitting).

`pool_frames` caches pool each frame's token grid further by the family's own pooling (`Family.pool_grid`:
averaging; OneVision: bilinear).

The family's frame path is one `nn.Module` (`VoCoModel.projector`), so the model code has no family
branches; its parts go back into the family's transformers class on save. Parameters the video path
does not read (NeXT-Video's `image_newline`) are carried along so a save writes them back.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from transformers import (
    Idefics3ForConditionalGeneration,
    LlavaForConditionalGeneration,
    LlavaNextVideoForConditionalGeneration,
    LlavaOnevisionForConditionalGeneration,
    PreTrainedModel,
    SmolVLMForConditionalGeneration,
)


class Family:
    """The `llava` family; subclasses change the frame path and what else a save must write back."""

    model_type = "llava"
    model_class: type[PreTrainedModel] = LlavaForConditionalGeneration

    def parts(self, model: PreTrainedModel) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
        """(vision tower, projector, decoder LM, LM head) of a loaded family model."""
        inner = model.model
        return inner.vision_tower, inner.multi_modal_projector, inner.language_model, model.lm_head

    def vision_features(self, config, vision_tower: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels [frames, 3, S, S] -> the features the frame path reads [frames, p, vision]: LLaVA's
        feature layer(s), CLS dropped under the "default" selection."""
        out = vision_tower(pixel_values=pixels, output_hidden_states=True)
        layer = config.vision_feature_layer
        layers = [layer] if isinstance(layer, int) else list(layer)
        feats = torch.cat([out.hidden_states[i] for i in layers], dim=-1)  # [frames, p(+1), vision]
        return feats[:, 1:] if config.vision_feature_select_strategy == "default" else feats

    def frame_path(self, model: PreTrainedModel, projector: nn.Module) -> nn.Module:
        """The module VoCo runs on a frame's selected vision features [frames, p, vision] -> [frames, n, hidden]."""
        return projector

    segment_tail: str | None = None
    """What the family's video path adds after a segment's frames (None: nothing); part of the model identity
    (`voco.identity`), since it changes every cache of the family."""

    def segment_tokens(self, frame_path: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        """A segment's frame tokens [B, F * n, hidden] -> its vision sequence (the family's video path)."""
        return tokens

    def projector_of(self, frame_path: nn.Module) -> nn.Module:
        return frame_path

    def pool_grid(self, tokens: torch.Tensor, side: int) -> torch.Tensor:
        """Frame tokens [frames, g * g, hidden] (a row-major g x g grid) -> [frames, side * side, hidden] by the
        family's own spatial pooling (`pool_frames` caches): averaging, as LLaVA-NeXT-Video's pooler does."""
        grid = square_side(tokens.shape[1], "the frame path's tokens per frame")
        if not 1 <= side <= grid:
            raise ValueError(f"a frame's {grid} x {grid} token grid cannot be pooled to {side} x {side}")
        frames, _, dim = tokens.shape
        x = tokens.reshape(frames, grid, grid, dim).permute(0, 3, 1, 2)  # [frames, hidden, g, g]
        x = self.pool_2d(x, side)  # [frames, hidden, side, side]
        return x.permute(0, 2, 3, 1).reshape(frames, side * side, dim)

    @staticmethod
    def pool_2d(x: torch.Tensor, side: int) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, side)

    def restore(self, model: PreTrainedModel, frame_path: nn.Module) -> None:
        """Put what `frame_path` carries besides the projector back into a family model being saved."""

    def assemble(self, config, vision_tower: nn.Module, frame_path: nn.Module, language_model: nn.Module,
                 lm_head: nn.Module) -> PreTrainedModel:
        """The family's transformers model around existing parts (no new weights), for save_pretrained."""
        with torch.device("meta"):
            model = self.model_class(config)
        self.put(model, vision_tower, self.projector_of(frame_path), language_model, lm_head)
        self.restore(model, frame_path)
        return model

    def put(self, model: PreTrainedModel, vision_tower, projector, language_model, lm_head) -> None:
        """The inverse of `parts`."""
        model.model.vision_tower, model.model.multi_modal_projector = vision_tower, projector
        model.model.language_model, model.lm_head = language_model, lm_head


def square_side(count: int, what: str) -> int:
    side = math.isqrt(count)
    if side * side != count:
        raise ValueError(f"{what} ({count}) are not a square grid: pool them with the `pool` compressor instead")
    return side


def bilinear(x: torch.Tensor, side: int) -> torch.Tensor:
    """[frames, hidden, g, g] -> [frames, hidden, side, side], LLaVA-OneVision's pooling (`apply_pooling`)."""
    return F.interpolate(x, size=[side, side], mode="bilinear")


class OnevisionFramePath(nn.Module):
    """LLaVA-OneVision's video path: projector, then bilinear 2x2 pooling of the token grid."""

    def __init__(self, projector: nn.Module, image_newline: nn.Parameter, grid: int):
        super().__init__()
        self.projector = projector
        self.image_newline = image_newline  # after a segment's frames (OnevisionFamily.segment_tokens), not per frame
        self.grid = grid

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.projector(features)  # [frames, grid * grid, hidden]
        frames, _, dim = x.shape
        x = x.view(frames, self.grid, self.grid, dim).permute(0, 3, 1, 2)
        x = bilinear(x, math.ceil(self.grid / 2))  # as apply_pooling
        return x.permute(0, 2, 3, 1).reshape(frames, -1, dim)


class NextVideoFramePath(nn.Module):
    """LLaVA-NeXT-Video's video path: the spatial pooler, then the projector."""

    def __init__(self, resampler: nn.Module, projector: nn.Module, image_newline: nn.Parameter):
        super().__init__()
        self.resampler = resampler
        self.projector = projector
        self.image_newline = image_newline

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.projector(self.resampler(features))


class OnevisionFamily(Family):
    model_type = "llava_onevision"
    model_class = LlavaOnevisionForConditionalGeneration
    segment_tail = "image_newline"

    def segment_tokens(self, frame_path, tokens):
        """OneVision's video path ends a video's frames with one `image_newline` (`get_video_features`)."""
        newline = frame_path.image_newline.to(tokens.dtype).expand(tokens.shape[0], 1, -1)  # [B, 1, hidden]
        return torch.cat([tokens, newline], dim=1)

    def frame_path(self, model, projector):
        vision = model.config.vision_config
        return OnevisionFramePath(projector, model.model.image_newline, vision.image_size // vision.patch_size)

    def projector_of(self, frame_path):
        return frame_path.projector

    def restore(self, model, frame_path):
        model.model.image_newline = frame_path.image_newline

    pool_2d = staticmethod(bilinear)  # its own pooling, pooled further


class NextVideoFamily(Family):
    model_type = "llava_next_video"
    model_class = LlavaNextVideoForConditionalGeneration

    def frame_path(self, model, projector):
        return NextVideoFramePath(model.model.vision_resampler, projector, model.model.image_newline)

    def projector_of(self, frame_path):
        return frame_path.projector

    def restore(self, model, frame_path):
        model.model.vision_resampler = frame_path.resampler
        model.model.image_newline = frame_path.image_newline


class Idefics3Family(Family):
    """Idefics3 / SmolVLM: `model.vision_model`, `model.connector`, `model.text_model`; the connector is the frame
    path (pixel shuffle + linear), so a `linear` VoCo projector does not apply."""

    model_type = "idefics3"
    model_class = Idefics3ForConditionalGeneration

    def parts(self, model):
        inner = model.model
        return inner.vision_model, inner.connector, inner.text_model, model.lm_head

    def put(self, model, vision_tower, projector, language_model, lm_head):
        model.model.vision_model, model.model.connector = vision_tower, projector
        model.model.text_model, model.lm_head = language_model, lm_head

    def vision_features(self, config, vision_tower, pixels):
        return vision_tower(pixel_values=pixels).last_hidden_state  # [frames, p, vision], post-layernorm


class SmolVLMFamily(Idefics3Family):
    model_type = "smolvlm"
    model_class = SmolVLMForConditionalGeneration


FAMILIES: dict[str, Family] = {f.model_type: f for f in (Family(), OnevisionFamily(), NextVideoFamily(),
                                                          Idefics3Family(), SmolVLMFamily())}


def family_of(config, where: str = "the checkpoint") -> Family:
    """The family of a transformers config, by its `model_type`; a clear error for any other type."""
    family = FAMILIES.get(getattr(config, "model_type", None))
    if family is None:
        raise ValueError(
            f"{where} holds a {type(config).__name__} ({getattr(config, 'model_type', None)!r}); VoCo needs a "
            f"LLaVA-family or SmolVLM checkpoint (vision tower + projector + decoder LM): model_type one of "
            f"{sorted(FAMILIES)}")
    return family
