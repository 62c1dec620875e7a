"""The batched, differentiable two-stage forward pass that training and validation use.

It is the inference path (DESIGN.md), batched:
  1. compress: all segments of all videos of a batch in one pass (equal lengths: no padding, no mask)
     -> the kept KV of every segment, with gradients (`VoCoModel.compress_embeds`);
  2. timeline: per video, [prefix KV, its segment caches rotated onto P, P+k, ...] (`place_on_timeline`),
     padded to the longest video with masked-out slots;
  3. questions: every question row (suffix + answer tokens) runs as one causal pass over its video's
     timeline, batched with a 4D additive mask (padding slots and padding tokens hidden) and per-row
     position ids continuing at P + T_v * k.
With time labels (`PromptTemplate.segment_label`, voco/timeline.py) each video's caches are placed with room for
their labels and one batched label pass (padding masked) appends every video's label KV before step 3; the
questions then continue after the last label.
tests/train/test_parity.py holds the loss of this path to the loss computed through
`VoCoModel.past_from_kv` + `forward_tokens` (the unbatched inference path) on the same example.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from voco.cache import place_on_timeline
from voco.compressors import Compressed, SegmentLayout
from voco.compressors.dense import FullCompressor
from voco.key_bias import StaticKeyBias
from voco.recompute import OnePassCache
from voco.timeline import Placement, append_labels, place
from voco.train import kv_distill
from voco.train.probe import probe_loss
from voco.train.vision_inputs import segment_vision_embeds


def compress_segments(model, segments: Sequence, *, view: str = "cache", chunk: int = 0,
                      checkpointing: bool = False) -> tuple[torch.Tensor, SegmentLayout]:
    """Kept KV [S, layers, 2, kv_heads, kept, head_dim] of S segments (differentiable) and their layout."""
    compressed = compress_with_aux(model, segments, view=view, chunk=chunk, checkpointing=checkpointing)
    return compressed.kv, compressed.layout


def compress_with_aux(model, segments: Sequence, *, view: str = "cache", chunk: int = 0,
                      checkpointing: bool = False) -> Compressed:
    """Kept KV [S, layers, 2, kv_heads, kept, head_dim] of S segments (differentiable), their layout, and the
    compressor's extra losses (`Compressed.aux`, averaged over chunks).

    view: one of `VIEWS`.
    chunk: segments per pass (0 = all at once); checkpointing: recompute each chunk in the backward pass.
    """
    compress_view = VIEWS[view]

    def run(part):
        return compress_view(model, part)

    size = chunk if chunk > 0 else len(segments)
    parts: list[Compressed] = []
    for i in range(0, len(segments), size):
        part = list(segments[i : i + size])
        if checkpointing and torch.is_grad_enabled():
            parts.append(checkpoint(run, part, use_reentrant=False))
        else:
            parts.append(run(part))
    aux = {name: sum(p.aux[name] for p in parts) / len(parts) for name in parts[0].aux}
    key_mask = None if parts[0].key_mask is None else torch.cat([p.key_mask for p in parts])
    return Compressed(torch.cat([p.kv for p in parts]), parts[0].layout, aux, key_mask)


def cache_view(model, segments: Sequence) -> Compressed:
    """What the model's compressor keeps (VoCo training)."""
    return model.compressor.compress_for_training(model, segment_vision_embeds(model, segments))


def full_view(model, segments: Sequence) -> Compressed:
    """Every vision token (alignment stage, or the teacher of the KL term)."""
    return FullCompressor(model.k).compress_for_training(model, segment_vision_embeds(model, segments))


VIEWS = {"cache": cache_view, "full": full_view, "summary": kv_distill.summary_view}
"""A stage's `view` -> what its questions read of each segment (differentiable, `Compressed`)."""


@dataclass
class Timeline:
    """Per video: prefix KV + rotated segment caches (+ their time labels' KV), padded to the longest video."""

    keys: list[torch.Tensor]  # per layer [V, kv_heads, P + Tmax (+ Lmax), head_dim]
    values: list[torch.Tensor]
    lengths: torch.Tensor  # [V] real cached tokens per video (P + T_v * kept + L_v): where its questions start
    prefix_len: int
    key_bias: list[torch.Tensor] | None = None  # per layer [V, P + Tmax] log(keep mask) (ATP), or None
    valid: torch.Tensor | None = None
    """[V, P + Tmax + Lmax] bool, the slots holding real KV, when time labels make them non-contiguous
    ([prefix, caches, pads, labels, pads]); None: the first `lengths[v]` slots."""


def build_timeline(model, kv: torch.Tensor, layout: SegmentLayout, counts: Sequence[int],
                   prefix_ids: list[int], key_mask: torch.Tensor | None = None,
                   starts: Sequence[Sequence[float] | None] | None = None) -> Timeline:
    """[prefix, caches of video v (each followed by its time label when the model has them)] for every video;
    kv: [sum(counts), layers, 2, H, kept, D]; key_mask: [sum(counts), layers, kept] soft keep-masks (ATP), read
    as per-layer key biases log(mask); starts: per video its segments' start seconds (None: index *
    segment_seconds), as `VoCoModel.past_from_kv` reads them."""
    P = len(prefix_ids)
    dev = model.device
    out = model.lm.model(input_ids=torch.tensor([prefix_ids], device=dev),
                         position_ids=torch.arange(P, device=dev)[None], cache=OnePassCache(), use_cache=True)
    prefix = [(lay.keys[0], lay.values[0]) for lay in out.cache.layers]  # [H, P, D] each
    placements = video_placements(model, counts, layout.kept, P, starts)
    if placements is not None and key_mask is not None:
        model.voco.check_segment_label()  # ragged (ATP) caches carry no labels: says so
    longest = max(counts) * layout.kept
    per_video_k, per_video_v, lengths = [], [], []
    start = 0
    for v, count in enumerate(counts):
        seg = kv[start : start + count].to(dev, model.dtype)
        start += count
        source = torch.full((count,), layout.kept_start)
        targets = None if placements is None else torch.tensor(placements[v].cache_targets)
        keys, values = place_on_timeline(seg, source, P, model.inv_freq, targets)  # [layers, H, count*kept, D]
        pad = longest - keys.shape[2]
        if pad:
            keys = F.pad(keys, (0, 0, 0, pad))
            values = F.pad(values, (0, 0, 0, pad))
        per_video_k.append(keys)
        per_video_v.append(values)
        lengths.append(P + count * layout.kept)
    stacked_k = torch.stack(per_video_k, dim=1)  # [layers, V, H, Tmax, D]
    stacked_v = torch.stack(per_video_v, dim=1)
    V = len(counts)
    keys = [torch.cat((pk.expand(V, -1, -1, -1), sk), dim=2) for (pk, _), sk in zip(prefix, stacked_k, strict=True)]
    values = [torch.cat((pv.expand(V, -1, -1, -1), sv), dim=2) for (_, pv), sv in zip(prefix, stacked_v, strict=True)]
    bias = None if key_mask is None else _timeline_key_bias(key_mask, counts, P, longest)
    if placements is None:
        return Timeline(keys, values, torch.tensor(lengths), P, bias)
    cache = OnePassCache(list(zip(keys, values, strict=True)))
    valid = append_labels(model, cache, placements, longest)  # one pass: every video's labels
    keys, values = [lay.keys for lay in cache.layers], [lay.values for lay in cache.layers]
    return Timeline(keys, values, torch.tensor([p.end for p in placements]), P, bias, valid)


def video_placements(model, counts: Sequence[int], kept: int, P: int,
                     starts: Sequence[Sequence[float] | None] | None) -> list[Placement] | None:
    """Each video's `voco.timeline.Placement` (caches and time labels), or None when the model has no labels."""
    if model.voco.prompt.segment_label is None:
        return None
    starts = starts or [None] * len(counts)  # None or an empty list: every video index * segment_seconds
    if len(starts) != len(counts):
        raise ValueError(f"{len(counts)} videos but start times for {len(starts)}")
    return [place(P, [kept] * count, model.segment_labels(count, video_starts))
            for count, video_starts in zip(counts, starts, strict=True)]


def _timeline_key_bias(key_mask: torch.Tensor, counts: Sequence[int], P: int, longest: int) -> list[torch.Tensor]:
    """Per layer [V, P + longest]: 0 on the prefix and pads, log(mask) on each video's segment tokens."""
    from voco.compressors.atp.pruning import EPS

    # [S, layers, kept]; a mask of exactly 0 (hard, eval mode) hides the token exactly
    log_mask = key_mask.clamp_min(EPS).log().masked_fill(key_mask == 0, torch.finfo(torch.float32).min)
    per_video, start = [], 0
    for count in counts:
        seg = log_mask[start : start + count].permute(1, 0, 2).reshape(log_mask.shape[1], -1)  # [layers, count*kept]
        start += count
        per_video.append(F.pad(seg, (P, longest - seg.shape[1])))
    return list(torch.stack(per_video, dim=1))  # layers x [V, P + longest]


def rows_logits(model, timeline: Timeline, row_video: Sequence[int], row_ids: Sequence[list[int]]) -> torch.Tensor:
    """Logits [R, Q, vocab] of every row's tokens (right-padded to Q) read against its video's timeline."""
    return model.lm.lm_head(rows_hidden(model, timeline, row_video, row_ids))


def rows_hidden(model, timeline: Timeline, row_video: Sequence[int], row_ids: Sequence[list[int]],
                waste: float = 0.2) -> torch.Tensor:
    """The decoder's last hidden states [R, Q, hidden] of every row (what the LM head reads; zeros past each row's
    end). Rows run in groups of similar length, each padded to its own longest, so that padding adds at most
    `waste` of a group's real tokens: one row with a chat history no longer makes every row of the batch as long."""
    order = sorted(range(len(row_ids)), key=lambda r: len(row_ids[r]))
    groups: list[list[int]] = []
    for r in order:
        group = groups[-1] if groups else None
        longest = len(row_ids[r])
        if group is not None and longest * (len(group) + 1) <= (1 + waste) * (sum(len(row_ids[g]) for g in group)
                                                                              + longest):
            group.append(r)
        else:
            groups.append([r])
    Q = max(len(r) for r in row_ids)
    out = None
    for group in groups:
        hidden = _padded_rows_hidden(model, timeline, [row_video[r] for r in group], [row_ids[r] for r in group])
        if out is None:
            out = hidden.new_zeros(len(row_ids), Q, hidden.shape[-1])
        padded = F.pad(hidden, (0, 0, 0, Q - hidden.shape[1]))
        out = out.index_copy(0, torch.tensor(group, device=hidden.device), padded)
    return out


def _padded_rows_hidden(model, timeline: Timeline, row_video: Sequence[int],
                        row_ids: Sequence[list[int]]) -> torch.Tensor:
    """Hidden states [R, Q, hidden] of rows padded to the longest, Q (one decoder pass)."""
    dev = model.device
    R = len(row_ids)
    Q = max(len(r) for r in row_ids)
    video = torch.tensor(row_video, device=dev)
    past_len = timeline.keys[0].shape[2]
    lengths = timeline.lengths.to(dev)[video]  # [R]: where each row's positions start
    ids = torch.full((R, Q), model.tokenizer.pad_token_id or 0, dtype=torch.long, device=dev)
    for r, row in enumerate(row_ids):
        ids[r, : len(row)] = torch.tensor(row, device=dev)
    # positions continue after each row's own timeline: P + T_v * kept (+ L_v label tokens) + 0 .. Q - 1
    positions = lengths[:, None] + torch.arange(Q, device=dev)[None]
    if timeline.valid is None:
        allowed_past = torch.arange(past_len, device=dev)[None, :] < lengths[:, None]  # [R, past]
    else:
        allowed_past = timeline.valid.to(dev)[video]  # [R, past]
    causal = torch.ones(Q, Q, dtype=torch.bool, device=dev).tril()
    allowed = torch.cat([allowed_past[:, None, :].expand(R, Q, past_len), causal[None].expand(R, Q, Q)], dim=2)
    dtype = timeline.keys[0].dtype
    mask = torch.zeros(allowed.shape, dtype=dtype, device=dev).masked_fill(~allowed, torch.finfo(dtype).min)
    layers = [(k[video], v[video]) for k, v in zip(timeline.keys, timeline.values, strict=True)]
    extra = {} if timeline.key_bias is None else {"key_bias": StaticKeyBias([b[video] for b in timeline.key_bias])}
    out = model.lm.model(input_ids=ids, attention_mask=mask[:, None], position_ids=positions,
                         cache=OnePassCache(layers), use_cache=True, **extra)
    return out.last_hidden_state


def answer_targets(row_ids: Sequence[list[int]], answer_spans: Sequence[list[tuple[int, int]]], Q: int) -> torch.Tensor:
    """Next-token targets [R, Q]: position i predicts token i+1 when that token is an answer token (inside one of
    the row's [start, end) answer spans), else -100."""
    targets = torch.full((len(row_ids), Q), -100, dtype=torch.long)
    for r, (row, spans) in enumerate(zip(row_ids, answer_spans, strict=True)):
        for a, end in spans:
            targets[r, a - 1 : end - 1] = torch.tensor(row[a:end])
    return targets


def batch_loss(model, batch, *, view: str = "cache", kl_weight: float = 0.0, kl_temperature: float = 1.0,
               chunk: int = 0, checkpointing: bool = False, probe=None, probe_weight: float = 0.0,
               kv_distill_weight: float = 0.0, kv_teacher=None, kv_distill_spread: bool = False
               ) -> tuple[torch.Tensor, dict]:
    """Mean cross-entropy over answer tokens of a `data.Batch`, + optional KL to the full-view teacher,
    + optional cache-probe loss (`voco.train.probe`) on the kept KV, + optional KV distillation toward each
    segment's summary token (`voco.train.kv_distill`; `kv_teacher` a `FrozenTeacher` or None for the current
    weights, `kv_distill_spread` its scale), + the compressor's own losses."""
    if kv_distill_weight > 0:  # first: a frozen teacher swaps weights in place, which a built graph forbids
        distill_target = kv_distill.teacher_kv(model, batch.segments, kv_teacher)
    compressed = compress_with_aux(model, batch.segments, view=view, chunk=chunk, checkpointing=checkpointing)
    kv = compressed.kv
    timeline = build_timeline(model, kv, compressed.layout, batch.segment_counts, batch.prefix_ids,
                              compressed.key_mask, batch.segment_starts)
    hidden = rows_hidden(model, timeline, batch.row_video, batch.row_ids)
    targets = answer_targets(batch.row_ids, batch.row_answer_spans, hidden.shape[1]).to(hidden.device)
    keep = targets != -100
    # the LM head (vocab-wide) only where an answer token is predicted: most of a row is question
    logits = model.lm.lm_head(hidden[keep]).float()
    ce = F.cross_entropy(logits, targets[keep])
    stats = {"ce": float(ce.detach())}
    loss = ce
    if kl_weight > 0:
        with torch.no_grad():
            tkv, tlayout = compress_segments(model, batch.segments, view="full", chunk=chunk)
            teacher_timeline = build_timeline(model, tkv, tlayout, batch.segment_counts, batch.prefix_ids,
                                              starts=batch.segment_starts)
            teacher_hidden = rows_hidden(model, teacher_timeline, batch.row_video, batch.row_ids)
            teacher = model.lm.lm_head(teacher_hidden[keep]).float()
        t = kl_temperature
        kl = F.kl_div(F.log_softmax(logits / t, -1), F.log_softmax(teacher / t, -1),
                      log_target=True, reduction="batchmean") * t * t
        stats["kl"] = float(kl.detach())
        loss = loss + kl_weight * kl
    if probe is not None and probe_weight > 0:
        if batch.segment_targets is None:
            raise ValueError("the cache probe needs per-segment targets; this batch has none")
        aux, probe_stats = probe_loss(probe, kv, torch.as_tensor(batch.segment_targets, device=kv.device))
        stats.update(probe_stats)
        loss = loss + probe_weight * aux
    if kv_distill_weight > 0:
        distill, distill_stats = kv_distill.kv_distill_loss(kv, distill_target, spread=kv_distill_spread)
        stats.update(distill_stats)
        loss = loss + kv_distill_weight * distill
    for name, term in compressed.aux.items():  # the compressor's own losses (e.g. a token budget), weighted
        stats[name] = float(term.detach())
        loss = loss + term
    return loss, stats
