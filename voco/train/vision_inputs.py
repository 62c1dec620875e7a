"""Training segments as the model's vision inputs: frames (uint8) through the vision tower, or features a dataset
precomputed (the class-mixture and scene-bank worlds store features, not pixels)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def segment_features(model, segments: Sequence) -> torch.Tensor:
    """[B*F, p, d] vision features of B segments given as frames (uint8 [F, H, W, 3], through the vision tower)
    or as precomputed features (float [F, p, d], what `VoCoModel.vision_features` gives per frame)."""
    if torch.as_tensor(segments[0]).dtype == torch.uint8:
        return model.vision_features(segments)
    feats = torch.stack([torch.as_tensor(s) for s in segments]).to(model.device, model.dtype)  # [B, F, p, d]
    return feats.flatten(0, 1)


def segment_vision_embeds(model, segments: Sequence) -> torch.Tensor:
    """[B, n, hidden] projected vision tokens of B segments (frames or features, as `segment_features`)."""
    return model.segment_tokens(model.projector(segment_features(model, segments)), len(segments))
