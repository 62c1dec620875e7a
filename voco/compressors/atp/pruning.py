"""ATP-LLaVA (adaptive layer- and instance-wise token pruning) inside the LM's compress pass.

ATP modules sit between decoder layers. The module before decoder layer l scores every vision token still
kept by layer l's own attention (its RoPE'd queries and keys, computed anyway), predicts two
instance-adaptive thresholds with a small MLP, and drops tokens below them from layer l on:

    importance  s_i = 1/2 (self_i + cross_i) * n_kept        (1 = an average token)
      self_i  = attention mass token i receives from the kept vision tokens (vision -> vision, non-causal,
                softmax over the kept vision keys, mean over heads and kept queries)
      cross_i = the same from the segment's text tokens (text -> vision)
    z_i = log s_i standardised over the kept tokens (per segment)
    keep_i = kept_i and (z_i > theta_r  or  (grid_i and z_i > theta_s))
      theta_r: redundancy threshold; theta_s: spatial threshold, applied to a uniform 2-D grid sample of each
      frame's tokens (Spatial Augmented Pruning: coverage even where attention is low)
    (theta_r, theta_s) = prior_j + MLP_j(statistics of this segment's scores)   (instance-adaptive)

Training: soft masks m_i = m_prev * (1 - (1 - sig((z - theta_r)/tau)) (1 - grid * sig((z - theta_s)/tau))),
read as an additive key bias log(m) by every later layer and by the question (voco/key_bias.py), plus a
budget loss on the batch's kept fraction per module. Inference: hard masks (bias 0 / -inf); a pruned
token is then exactly absent from layer l on (its KV is not read, so it is not kept in the cache either).
Kept tokens keep their original positions.

Choices where the public text is silent (documented in docs/measured.md, "ATP-LLaVA"): placement (the unofficial
4/14/24 of 32, as fractions of depth: layers 0, 1, 3 of a 4-layer LM); scores from the layer's own q/k (so the
first module may sit before layer 0); non-causal scoring; log-score standardisation; the threshold MLP's inputs
(8 statistics) and its prior; tau = 0.1; budget targets falling with depth (1.5 : 1 : 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

ATP_DEPTHS = (4 / 32, 14 / 32, 24 / 32)
"""Where ATP modules sit, as fractions of depth (the unofficial reimplementation: layers 4, 14, 24 of 32)."""
DEPTH_WEIGHTS = (1.5, 1.0, 0.5)
"""Relative kept fraction per module (deeper modules keep fewer tokens: deeper layers are cheaper)."""
TAU = 0.1
"""Soft-mask temperature (in units of the standardised log score)."""
SPATIAL_OFFSET = 1.0
"""The spatial threshold's prior sits this far below the redundancy threshold's."""
FEATURES = 8
EPS = 1e-6


def atp_layers(num_layers: int) -> tuple[int, ...]:
    """Decoder layers with an ATP module in front: floor(f * L) for f in ATP_DEPTHS (4, 14, 24 for L = 32)."""
    return tuple(sorted({min(num_layers - 1, int(f * num_layers)) for f in ATP_DEPTHS}))


def module_targets(num_layers: int, budget: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per module: (target kept fraction of the segment's vision tokens, share of the layers it covers).

    The layer-weighted kept fraction sum_j cover_j * target_j (+ the layers before the first module, which keep
    everything) equals `budget`: the share of vision-token KV (and of the pass's per-token work) kept.
    """
    layers = atp_layers(num_layers)
    bounds = (*layers, num_layers)
    cover = torch.tensor([(bounds[j + 1] - bounds[j]) / num_layers for j in range(len(layers))])
    lead = layers[0] / num_layers
    weights = torch.tensor(DEPTH_WEIGHTS[: len(layers)])
    if budget <= lead:
        raise ValueError(f"ATP budget {budget:.2f} is below the {lead:.2f} share of layers before the first "
                         f"module (layer {layers[0]}): raise the budget")
    targets = ((budget - lead) / float((cover * weights).sum()) * weights).clamp(max=1.0)
    return targets, cover


def grid_sample(frames: int, n: int, budget: float, device=None) -> torch.Tensor:
    """Spatial Augmented Pruning's uniform 2-D sample: bool [n], every s-th row and column of each frame's
    square token grid (s = ceil(1 / sqrt(budget)), centred), frames stacked as the vision tokens are."""
    per = n // frames
    side = math.isqrt(per)
    if side * side != per or per * frames != n:
        raise ValueError(f"ATP's spatial sample needs square frame grids: {n} tokens over {frames} frames")
    stride = max(1, math.ceil(1 / math.sqrt(budget)))
    line = torch.arange(side, device=device) % stride == stride // 2
    return (line[:, None] & line[None, :]).reshape(-1).repeat(frames)


class ThresholdMLP(nn.Module):
    """Score statistics [G, FEATURES] -> threshold corrections [G, 2] (redundancy, spatial); starts at 0."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.fc = nn.Linear(FEATURES, width)
        self.out = nn.Linear(width, 2)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(self.fc(features)))


class AtpPruner(nn.Module):
    """The trained part of ATP: one threshold MLP per module (up to len(ATP_DEPTHS))."""

    def __init__(self):
        super().__init__()
        self.mlps = nn.ModuleList(ThresholdMLP() for _ in ATP_DEPTHS)


@dataclass(frozen=True)
class Groups:
    """Where each segment's tokens sit in the batch being run: G segments, n vision and m text tokens each."""

    row: torch.Tensor  # [G] batch row
    vision: torch.Tensor  # [G, n] sequence indices of the vision tokens
    text: torch.Tensor  # [G, m] sequence indices of the text stand-in (<voco> tokens, instruction, question)

    @classmethod
    def one_per_row(cls, batch: int, n: int, m: int, device=None) -> Groups:
        """The compress pass: row b is [<seg>, V_1 .. V_n, text_1 .. text_m]."""
        return cls(torch.arange(batch, device=device), (1 + torch.arange(n, device=device)).expand(batch, n),
                   (1 + n + torch.arange(m, device=device)).expand(batch, m))


def _weighted_stats(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of x [G, n] under weights w [G, n] (per row)."""
    total = w.sum(-1, keepdim=True).clamp_min(EPS)
    mean = (w * x).sum(-1, keepdim=True) / total
    var = (w * (x - mean) ** 2).sum(-1, keepdim=True) / total
    return mean, var.clamp_min(EPS).sqrt()


class AtpRun:
    """One pass's ATP state, used as the `key_bias` of voco/key_bias.py: at an ATP layer it scores, thresholds
    and prunes, and every layer reads the kept tokens' bias (0 / -inf hard, log m soft).

    masks[l]: [G, n] the mask layer l used (1 before the first module).
    """

    def __init__(self, pruner: AtpPruner, num_layers: int, budget: float, groups: Groups, grid: torch.Tensor,
                 *, soft: bool):
        self.pruner, self.groups, self.grid, self.soft = pruner, groups, grid.float(), soft
        self.layers = atp_layers(num_layers)
        self.targets, self.cover = module_targets(num_layers, budget)
        G, n = groups.vision.shape
        self.mask = torch.ones(G, n, device=groups.vision.device)
        self.masks: list[torch.Tensor] = []
        self.kept: list[torch.Tensor] = []  # per module: [G] kept fraction (soft or hard)

    def __call__(self, layer: int, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        if layer in self.layers:
            self.prune(self.layers.index(layer), query, key)
        self.masks.append(self.mask)
        B, kv = query.shape[0], key.shape[2]
        g = self.groups
        if self.soft:
            values = self.mask.clamp_min(EPS).log()
        else:
            values = torch.zeros_like(self.mask).masked_fill(self.mask < 0.5, torch.finfo(query.dtype).min)
        bias = torch.zeros(B, kv, dtype=values.dtype, device=query.device)
        return bias.index_put((g.row[:, None].expand_as(g.vision), g.vision), values)

    def scores(self, query: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(self, cross) importance [G, n] from the layer's queries [B, Hq, q, D] and keys [B, Hkv, kv, D]."""
        g = self.groups
        key = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)  # GQA: [B, Hq, kv, D]
        qv = query[g.row[:, None], :, g.vision].transpose(1, 2).float()  # [G, H, n, D]
        qt = query[g.row[:, None], :, g.text].transpose(1, 2).float()  # [G, H, m, D]
        kv = key[g.row[:, None], :, g.vision].transpose(1, 2).float()  # [G, H, n, D]
        key_bias = self.mask.clamp_min(EPS).log()[:, None, None, :]  # [G, 1, 1, n]
        scale = query.shape[-1] ** -0.5
        a_self = torch.softmax(qv @ kv.transpose(-1, -2) * scale + key_bias, dim=-1)  # [G, H, n, n]
        a_cross = torch.softmax(qt @ kv.transpose(-1, -2) * scale + key_bias, dim=-1)  # [G, H, m, n]
        w = self.mask[:, None, :, None]  # kept vision queries only
        self_score = (a_self * w).sum((1, 2)) / (a_self.shape[1] * self.mask.sum(-1, keepdim=True).clamp_min(EPS))
        cross_score = a_cross.mean((1, 2))
        n_kept = self.mask.sum(-1, keepdim=True)
        return self_score * n_kept, cross_score * n_kept

    def prune(self, j: int, query: torch.Tensor, key: torch.Tensor) -> None:
        s_self, s_cross = self.scores(query, key)
        log_s = (0.5 * (s_self + s_cross)).clamp_min(EPS).log()  # [G, n]
        mean, std = _weighted_stats(log_s, self.mask)
        z = (log_s - mean) / std
        theta = self.thresholds(j, s_self, s_cross, z)  # [G, 2]
        theta_r, theta_s = theta[:, :1], theta[:, 1:]
        if self.soft:
            keep_r = torch.sigmoid((z - theta_r) / TAU)
            keep_s = self.grid * torch.sigmoid((z - theta_s) / TAU)
            mask = self.mask * (1 - (1 - keep_r) * (1 - keep_s))
        else:
            keep = (z > theta_r) | ((self.grid > 0) & (z > theta_s))
            keep = keep & (self.mask > 0.5)
            best = z.masked_fill(self.mask < 0.5, float("-inf")).argmax(-1)  # never an empty layer
            keep[torch.arange(keep.shape[0]), best] = True
            mask = keep.float()
        self.mask = mask
        self.kept.append(mask.mean(-1))

    def thresholds(self, j: int, s_self, s_cross, z) -> torch.Tensor:
        """Prior (the standard-normal quantile of the module's target keep rate) + the MLP's correction."""
        w = self.mask
        previous = self.targets[j - 1] if j else torch.tensor(1.0)
        rate = float((self.targets[j] / previous).clamp(EPS, 1 - EPS))
        prior_r = math.sqrt(2) * torch.erfinv(torch.tensor(1 - 2 * rate)).item()
        with torch.no_grad():
            m_self, d_self = _weighted_stats(s_self.clamp_min(EPS).log(), w)
            m_cross, d_cross = _weighted_stats(s_cross.clamp_min(EPS).log(), w)
            total = w.sum(-1, keepdim=True).clamp_min(EPS)
            skew = (w * z**3).sum(-1, keepdim=True) / total
            kurt = (w * z**4).sum(-1, keepdim=True) / total - 3
            frac = w.mean(-1, keepdim=True)
            feats = torch.cat([m_self, d_self, m_cross, d_cross, skew, kurt, frac,
                               torch.full_like(frac, float(self.targets[j]))], dim=-1)
        prior = torch.tensor([prior_r, prior_r - SPATIAL_OFFSET], device=z.device)
        return prior + self.pruner.mlps[j](feats.to(self.pruner.mlps[j].fc.weight.dtype)).float()

    def budget_loss(self) -> torch.Tensor:
        """sum_j cover_j * ((batch-mean kept_j - target_j) / target_j)^2 (relative, so every budget weighs alike)."""
        kept = torch.stack([k.mean() for k in self.kept])
        targets, cover = self.targets.to(kept.device), self.cover.to(kept.device)
        return (cover * ((kept - targets) / targets) ** 2).sum()

    def layer_masks(self) -> torch.Tensor:
        """[G, layers, n]: the mask each layer used (record of one pass)."""
        return torch.stack(self.masks, dim=1)
