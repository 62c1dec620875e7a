"""Distil each segment's kept `<voco>` KV toward the KV its summary tokens have in the full view.

Why: the assembled default's LM (135M, LoRA) learns within ~60 steps to answer from every class-name token
(the full view), yet from one `<voco>` cache per segment it kept answering a prior name ("a broliant") after
60 more steps of answer loss + KL to the full view: the answer loss alone is too weak a signal for the
compress pass to learn what to write. So this loss gives the compress pass an exact target: the KV that the
segment's summary tokens (the projector names them; for class evidence, the top class name's tokens ending at
its last) have in the full view, each computed in its own context, keys rotated from their own positions to
the `<voco>` positions. A copy of the same tokens appended after the evidence is not a usable target: placed
in the `<voco>` slot it gave no names even to a model that named from the full view (issue 11 notes), while
the in-context KV of the top name's 4 tokens alone kept 0.54 of its 0.58 accuracy. The teacher runs without
gradients; the loss is the relative squared error of K and V per layer, averaged.

Two stage options (issue 30's evidence experiment): with the live teacher (the current weights) the LoRA adapters
being trained also move the targets, and they moved them together: targets of different photos ended 7-8% apart
(20-22% with the adapters off) and caches 1.5%, so every cache answered alike. `kv_distill_frozen_teacher`
computes the targets with the trainable weights as they were when the stage began (`FrozenTeacher`);
`kv_distill_spread` divides the error by the targets' spread around their batch mean instead of their norm, so a
cache that ignores its frame scores 1 rather than the spread's share of the norm (~0.005 there).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from voco.compressors import Compressed
from voco.compressors.dense import FullCompressor
from voco.rope import shift_keys
from voco.train.vision_inputs import segment_features


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


def summary_view(model, segments: Sequence) -> Compressed:
    """The `summary` training view: each segment's k summary tokens' KV from the full view (each token in its own
    context, differentiable), keys rotated to the k kept positions of the model's compressor, so the answer pass
    reads them where it will read the `<voco>` caches. Kept KV [B, layers, 2, kv_heads, k, head_dim]."""
    vision, index = summary_vision(model, segments, model.k)  # [B, n, hidden], [B, k]
    kept = model.compressor.layout(vision.shape[1])
    if kept.kept != model.k:
        raise ValueError(f"the summary view needs a compressor that keeps k = {model.k} tokens per segment (as "
                         f"<voco> does); {model.compressor.name!r} keeps {kept.kept}")
    full = FullCompressor(model.k)
    kv = full.compress_for_training(model, vision).kv  # [B, layers, 2, H, n, D]
    B, k = index.shape
    gather = index[:, None, None, None, :, None].expand(-1, *kv.shape[1:4], -1, kv.shape[-1])
    target = kv.gather(4, gather)  # [B, layers, 2, H, k, D]
    # token index i sits at full.kept_start + i in the full view; kept token j at kept.kept_start + j
    source = full.layout(vision.shape[1]).kept_start + index  # [B, k]
    delta = kept.kept_start + torch.arange(k, device=index.device)[None] - source
    keys = target[:, :, 0].permute(0, 3, 1, 2, 4).flatten(0, 1)  # [B*k, layers, H, D]
    keys = shift_keys(keys, delta.flatten(), model.inv_freq).unflatten(0, (B, k)).permute(0, 2, 3, 1, 4)
    return Compressed(torch.stack([keys, target[:, :, 1]], dim=2), kept)


class FrozenTeacher:
    """The model's trainable weights as a KV-distillation stage began: its targets are computed with them, so the
    weights being trained cannot move the targets (`kv_distill_frozen_teacher`). Built after the stage's groups
    are set trainable; resumable (`state_dict`)."""

    def __init__(self, model):
        self.weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        if not self.weights:
            raise ValueError("a frozen KV-distillation teacher needs the stage's trainable weights set first")

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.weights

    def load_state_dict(self, weights: dict[str, torch.Tensor]) -> None:
        if weights.keys() != self.weights.keys():
            raise ValueError(f"the saved KV-distillation teacher holds {sorted(weights)[:3]}..., this stage trains "
                             f"{sorted(self.weights)[:3]}...: was the stage's `train` list changed?")
        self.weights = {n: w.to(self.weights[n].device) for n, w in weights.items()}

    @contextmanager
    def applied(self, model) -> Iterator[None]:
        """The model with the stage-start weights in place (restored after, also on error). The tensors are swapped,
        not copied: no copy of the trained weights (the whole input embedding among them) per step."""
        params = dict(model.named_parameters())
        current = {n: params[n].data for n in self.weights}
        for n, w in self.weights.items():
            params[n].data = w
        try:
            yield
        finally:
            for n, data in current.items():
                params[n].data = data


@torch.no_grad()
def teacher_kv(model, segments: Sequence, teacher: FrozenTeacher | None = None) -> torch.Tensor:
    """[B, layers, 2, kv_heads, k, head_dim]: the summary view's KV (`summary_view`), without gradients, with the
    current weights or a frozen teacher's."""
    if teacher is None:
        return summary_view(model, segments).kv
    with teacher.applied(model):
        return summary_view(model, segments).kv


def kv_distill_loss(kv: torch.Tensor, target: torch.Tensor, *, spread: bool = False) -> tuple[torch.Tensor, dict]:
    """Mean over layers and K/V of |kv - target|^2 / |target|^2 (or / |target - batch mean|^2 with `spread`);
    kv, target (`teacher_kv`, computed before the pass that made kv: a frozen teacher swaps weights in place):
    [B, layers, 2, kv_heads, k, head_dim]. Stats: the loss and `cache_spread`, how far the caches sit from their
    batch mean relative to how far the targets do (near 0: every segment gets the same cache)."""
    target = target.to(kv.dtype)
    dims = (0, 3, 4, 5)
    error = (kv - target).pow(2).sum(dim=dims)  # [layers, 2]
    centred = target - target.mean(0, keepdim=True)
    scale = (centred if spread else target).pow(2).sum(dim=dims).clamp_min(1e-12)
    loss = (error / scale).mean()
    with torch.no_grad():
        moved = (kv - kv.mean(0, keepdim=True)).norm() / centred.norm().clamp_min(1e-12)
    return loss, {"kv_distill": float(loss.detach()), "cache_spread": float(moved)}
