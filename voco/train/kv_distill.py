"""Distil each segment's kept `<voco>` KV toward the KV its summary token has in the same place.

Why: the assembled default's LM (135M, LoRA) learns within ~60 steps to answer from every class-name token
(the full view), yet from one `<voco>` cache per segment it kept answering a prior name ("a broliant") after
60 more steps of answer loss + KL to the full view: the answer loss alone is too weak a signal for the
compress pass to learn what to write. The answer pass already reads name tokens, so this loss teaches the
compress pass to make `<voco>` look like one: the teacher is the same compress pass with the `<voco>` slot
holding a copy of the segment's summary token (the projector names it; for class evidence, the last token of
the top class's name, where the LM represents the whole word), run without gradients through the current
weights. The loss is the relative squared error of K and V, per layer, averaged over layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from voco.train.forward import segment_features


def summary_vision(model, segments: Sequence, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Vision tokens [B, n, hidden] of B segments and the indices [B, k] of each one's k summary tokens (in its
    last frame). Segments are frames (uint8 [F, H, W, 3]) or precomputed vision features (float [F, p, d])."""
    summary_index = getattr(model.projector, "summary_index", None)
    if summary_index is None:
        raise ValueError(f"kv_distill_weight needs a projector that names each frame's summary token (the "
                         f"class-evidence projector of an assembled model); {type(model.projector).__name__} "
                         "does not: set kv_distill_weight: 0")
    feats = segment_features(model, segments)  # [B*F, p, d]
    B = len(segments)
    frames = feats.shape[0] // B
    embeds = model.projector(feats)  # [B*F, tokens, hidden]
    per_frame = embeds.shape[1]
    last = feats.reshape(B, frames, *feats.shape[1:])[:, -1]  # [B, p, d]
    index = (frames - 1) * per_frame + summary_index(last, k)  # [B, k]
    return embeds.reshape(B, frames * per_frame, -1), index


def teacher_kv(model, segments: Sequence) -> torch.Tensor:
    """[B, layers, 2, kv_heads, k, head_dim]: the compress pass with the k `<voco>` slots holding copies of the
    segment's k summary tokens (no gradients)."""
    compressor = model.compressor
    vision, index = summary_vision(model, segments, model.k)
    layout = compressor.layout(vision.shape[1])
    embeds = compressor.sequence_embeds(model, vision)  # [B, L, hidden]
    s, e = layout.kept_start, layout.kept_start + layout.kept
    if e != embeds.shape[1]:
        raise ValueError(f"kv_distill_weight needs a compressor whose kept tokens end the segment sequence (as "
                         f"<voco> does); {compressor.name!r} keeps {s}..{e} of {embeds.shape[1]}")
    summary = vision[torch.arange(len(segments), device=vision.device)[:, None], index]  # [B, k, hidden]
    embeds = torch.cat([embeds[:, :s], summary], dim=1)
    with torch.no_grad():
        return model.compress_embeds(embeds, layout)


def kv_distill_loss(model, segments: Sequence, kv: torch.Tensor) -> torch.Tensor:
    """Mean over layers and K/V of |kv - teacher|^2 / |teacher|^2; kv: [B, layers, 2, kv_heads, k, head_dim]."""
    target = teacher_kv(model, segments).to(kv.dtype)
    error = (kv - target).pow(2).sum(dim=(0, 3, 4, 5))  # [layers, 2]
    scale = target.pow(2).sum(dim=(0, 3, 4, 5)).clamp_min(1e-12)
    return (error / scale).mean()
