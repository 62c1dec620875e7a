"""Segment times on the question-time timeline (DESIGN.md, "Time on the question-time timeline").

Caches stay position-free. A model whose prompt sets `segment_label` (e.g. `" {start}"`) answers from

    [prefix] [cache_1][label_1] [cache_2][label_2] ... [cache_T][label_T] [question ...]

at consecutive positions: prefix 0 .. P-1, then each segment's kept tokens, then its label tokens (the text
`segment_label.format(start=clock(start_t))`, tokenised without special tokens), and the question continues
after the last label. Caches move onto their positions by the usual RoPE rotation (`cache.place_on_timeline`
with each segment's target position). The labels' KV comes from ONE LM pass over all label tokens with the
placed caches as its past and an explicit mask: a label token of segment t reads the prefix, the caches of
segments 1..t and, causally, the label tokens of segments 1..t -- what one causal pass over the interleaved
sequence would compute if caches were tokens. The question and decoding then read everything (plain causal).

Inference (`VoCoModel.past_from_kv`, one video) and training (`voco.train.forward.build_timeline`, a padded
batch of videos) both place with `place` and run `append_labels`; `voco/reference.py` writes the same layout
as one masked single pass from the rule alone, and the parity tests hold the two to each other.

Start times: the caller's (a store's segment rows, a retrieved subset keeps each segment's own start), or
index * `segment_seconds` when unknown (`segment_starts`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch


def clock(seconds: float) -> str:
    """A time as people read it on a video: `m:ss` below one hour, `h:mm:ss` from one hour, floored to whole
    seconds (0 -> "0:00", 75.3 -> "1:15", 3725 -> "1:02:05")."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a segment time must be a finite number of seconds >= 0, got {seconds!r}")
    whole = math.floor(seconds + 1e-9)  # index * segment_seconds may land a hair below a whole second
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def segment_starts(count: int, segment_seconds: float, starts: Sequence[float] | None = None) -> list[float]:
    """Start seconds of `count` placed segments: `starts` as given, or index * segment_seconds when None."""
    if starts is None:
        return [i * segment_seconds for i in range(count)]
    starts = [float(s) for s in starts]
    if len(starts) != count:
        raise ValueError(f"{count} segments but {len(starts)} start times: give one start (seconds) per segment")
    return starts


def label_text(template: str, start: float) -> str:
    return template.format(start=clock(start))


def label_ids(tokenizer, template: str, starts: Sequence[float]) -> list[list[int]]:
    """Token ids of each segment's label (`template.format(start=clock(start))`, no special tokens)."""
    if not starts:
        return []
    encoded = tokenizer([label_text(template, s) for s in starts], add_special_tokens=False)["input_ids"]
    return [list(ids) for ids in encoded]


def longest_label(tokenizer, template: str | None, starts: Sequence[float]) -> int:
    """Tokens of the longest label among `starts` (0 without a template): the context budget counts this per
    segment, so a subset chosen by it always fits. Each distinct label is tokenised once (one batched call)."""
    if template is None or not starts:
        return 0
    texts = sorted({label_text(template, s) for s in starts})
    return max(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])


@dataclass(frozen=True)
class Placement:
    """Where one video's caches and labels sit on the question-time timeline."""

    prefix: int
    """P: prefix positions 0 .. P-1."""
    kept: list[int]
    """[T] cache tokens of each segment."""
    labels: list[list[int]]
    """[T] label token ids of each segment."""
    cache_targets: list[int]
    """[T] position of each segment's first cache token."""
    label_positions: list[int]
    """[L] position of every label token, segment by segment (L = all label tokens)."""
    label_segments: list[int]
    """[L] the segment (0-based) each label token follows."""
    end: int
    """The position after the last label: where the question starts."""

    @property
    def label_tokens(self) -> list[int]:
        """[L] every label token id, in timeline order."""
        return [t for ids in self.labels for t in ids]


def place(prefix_len: int, kept: Sequence[int], labels: Sequence[Sequence[int]]) -> Placement:
    """Positions of [prefix][cache_1][label_1] ... [cache_T][label_T]: consecutive, starting at 0."""
    if len(kept) != len(labels):
        raise ValueError(f"{len(kept)} segments but {len(labels)} labels")
    targets, positions, segments = [], [], []
    at = prefix_len
    for t, (k, ids) in enumerate(zip(kept, labels, strict=True)):
        targets.append(at)
        at += k
        positions += range(at, at + len(ids))
        segments += [t] * len(ids)
        at += len(ids)
    return Placement(prefix_len, list(kept), [list(ids) for ids in labels], targets, positions, segments, at)


def label_allowed(p: Placement, cache_slots: int, label_slots: int) -> torch.Tensor:
    """Which past and label slots each label token reads: bool [label_slots, P + cache_slots + label_slots].

    Slots: [prefix (P), caches (segment by segment, padded to cache_slots), labels (padded to label_slots)].
    Label token i of segment t reads the prefix, the caches of segments 0..t and label tokens 0..i. Pad rows
    read the prefix only (their output is never used; a row with no key would give NaN).
    """
    P, L = p.prefix, len(p.label_positions)
    allowed = torch.zeros(label_slots, P + cache_slots + label_slots, dtype=torch.bool)
    allowed[:, :P] = True
    ends = torch.tensor(p.kept).cumsum(0)  # [T] cache slots up to and including segment t
    seen = ends[torch.tensor(p.label_segments, dtype=torch.long)]  # [L]
    allowed[:L, P : P + cache_slots] = torch.arange(cache_slots)[None, :] < seen[:, None]
    allowed[:L, P + cache_slots : P + cache_slots + L] = torch.ones(L, L, dtype=torch.bool).tril()
    return allowed


def label_slot_valid(p: Placement, cache_slots: int, label_slots: int) -> torch.Tensor:
    """bool [P + cache_slots + label_slots]: the slots holding this video's real KV (not padding)."""
    valid = torch.zeros(p.prefix + cache_slots + label_slots, dtype=torch.bool)
    valid[: p.prefix + sum(p.kept)] = True
    start = p.prefix + cache_slots
    valid[start : start + len(p.label_positions)] = True
    return valid


def append_labels(model, cache, placements: Sequence[Placement], cache_slots: int) -> torch.Tensor:
    """Run every video's label tokens in one LM pass after `cache` (extended in place by their KV).

    cache: a transformers cache holding per layer [V, kv_heads, P + cache_slots, head_dim] (prefix, then video v's
    placed caches padded to cache_slots); placements: one per video. Returns which slots of the extended cache
    are real, bool [V, P + cache_slots + L] (L = the most label tokens of any video).
    """
    dev = model.device
    L = max(len(p.label_positions) for p in placements)
    valid = torch.stack([label_slot_valid(p, cache_slots, L) for p in placements]).to(dev)
    if L == 0:
        return valid
    V = len(placements)
    ids = torch.full((V, L), model.tokenizer.pad_token_id or 0, dtype=torch.long)
    positions = torch.zeros(V, L, dtype=torch.long)
    for v, p in enumerate(placements):
        n = len(p.label_positions)
        ids[v, :n] = torch.tensor(p.label_tokens, dtype=torch.long)
        positions[v, :n] = torch.tensor(p.label_positions, dtype=torch.long)
    allowed = torch.stack([label_allowed(p, cache_slots, L) for p in placements]).to(dev)  # [V, L, past + L]
    dtype = model.dtype
    mask = torch.zeros(allowed.shape, dtype=dtype, device=dev).masked_fill(~allowed, torch.finfo(dtype).min)
    model.lm.model(input_ids=ids.to(dev), attention_mask=mask[:, None], position_ids=positions.to(dev),
                   cache=cache, use_cache=True)
    return valid
