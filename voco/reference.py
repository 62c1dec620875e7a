"""The single-pass reference, written from DESIGN.md's formula alone ("The method, as this project computes it").

    [prefix, seg_1 .. seg_T, tail]     tail = question (+ decoded tokens)

Segment t's sequence is the design's row for the compressor (below); it sits at positions
delta_t + 0 .. delta_t + L_t - 1 with delta_t = P + (kept tokens of segments 1..t-1) - (first kept index),
i.e. P + (t-1) k - (n+1) for `voco` (may be negative). Each segment sees only itself, causally; tail
tokens see the prefix, the kept tokens of every segment and themselves, never another token of a
segment. The tail continues at P + (all kept tokens).

With time labels (`PromptTemplate.segment_label`) the sequence is

    [prefix, seg_1, label_1, seg_2, label_2 .. seg_T, label_T, tail]

label_t = the tokens of `segment_label.format(start=clock(start_t))`. Positions stay consecutive over the kept
tokens and the labels: segment t's first kept token sits at P + (kept tokens and label tokens of segments
1..t-1), its label right after its kept tokens; the tail continues after the last label. Label tokens of
segment t see the prefix, the kept tokens of segments 1..t and the label tokens of segments 1..t causally
(never a non-kept token); the tail sees the prefix, every kept token, every label token and itself.

Nothing here uses the two-stage path's helpers (`sequence_embeds`, `layout`, `place_on_timeline`,
`past_from_*`, `voco.timeline`'s placement and label mask; only its `clock` text): sharing them would make a
bug in them invisible to the parity tests. Only the vision tower + projector (`vision_embeds`), the compressor's
own module (pool's linear, the Q-Former), the token embeddings and the decoder are the model's own; each
compressor's row is its `design_row`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DesignSegment:
    """One segment's pass-1 sequence as the design writes it, and which of its tokens are kept."""

    embeds: torch.Tensor
    """[L, hidden]"""
    kept: range
    """Indices into `embeds` of the tokens whose KV the cache keeps."""


def design_segments(model, segments: Sequence) -> list[DesignSegment]:
    """The design's segment rows from raw frames (each uint8 [F, H, W, 3]); each compressor writes its own row
    (`Compressor.design_row`, from the design's table, not from its `sequence_embeds`):

    voco: [<seg>, V_1 .. V_n, <voco>_1 .. <voco>_k]  keep n+1 .. n+k
    full: [<seg>, V_1 .. V_n]                        keep 1 .. n
    pool: [<seg>, P_1 .. P_m]                        keep 1 .. m, P = linear(mean of V over m equal bins)
    qformer: [<seg>, Q_1 .. Q_m]                     keep 1 .. m, Q = QFormer(queries, V)
    """
    vision = model.vision_embeds(segments)  # [T, n, hidden]
    return [model.compressor.design_row(model, v) for v in vision]


def block_mask_and_positions(P: int, segments: Sequence[tuple[int, range]],
                             Q: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean `allowed[query, key]` [L, L] and position ids [L] of [prefix (P), segments, tail (Q)].

    segments: (length, kept indices) per segment.
    """
    L = P + sum(length for length, _ in segments) + Q
    allowed = torch.zeros(L, L, dtype=torch.bool)
    positions = torch.empty(L, dtype=torch.long)
    tail = slice(L - Q, L)
    allowed[:P, :P] = torch.ones(P, P, dtype=torch.bool).tril()
    positions[:P] = torch.arange(P)
    allowed[tail, :P] = True
    a, timeline = P, P  # a: index in the sequence; timeline: position of the segment's first kept token
    for length, kept in segments:
        allowed[a : a + length, a : a + length] = torch.ones(length, length, dtype=torch.bool).tril()
        positions[a : a + length] = timeline - kept.start + torch.arange(length)  # delta_t + 0 .. L_t - 1
        allowed[tail, a + kept.start : a + kept.stop] = True
        a += length
        timeline += len(kept)
    allowed[tail, tail] = torch.ones(Q, Q, dtype=torch.bool).tril()
    positions[tail] = timeline + torch.arange(Q)
    return allowed, positions


def labelled_mask_and_positions(P: int, segments: Sequence[tuple[int, range]], labels: Sequence[int],
                                Q: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean `allowed[query, key]` [L, L] and position ids [L] of [prefix (P), seg_1, label_1 .. seg_T,
    label_T, tail (Q)], written from the rule in the module docstring.

    segments: (length, kept indices) per segment; labels: label tokens after each segment.
    """
    L = P + sum(length for length, _ in segments) + sum(labels) + Q
    allowed = torch.zeros(L, L, dtype=torch.bool)
    positions = torch.empty(L, dtype=torch.long)
    allowed[:P, :P] = torch.ones(P, P, dtype=torch.bool).tril()
    positions[:P] = torch.arange(P)
    readable: list[int] = list(range(P))  # what a label or tail token may read: prefix, kept tokens, labels so far
    a, timeline = P, P  # a: index in the sequence; timeline: the next position on the timeline
    for (length, kept), count in zip(segments, labels, strict=True):
        allowed[a : a + length, a : a + length] = torch.ones(length, length, dtype=torch.bool).tril()
        positions[a : a + length] = timeline - kept.start + torch.arange(length)
        readable += [a + j for j in kept]
        a += length
        timeline += len(kept)
        for _ in range(count):  # this segment's label tokens, one by one (each reads itself and all before)
            readable.append(a)
            allowed[a, readable] = True
            positions[a] = timeline
            a += 1
            timeline += 1
    for q in range(L - Q, L):
        readable.append(q)
        allowed[q, readable] = True
        positions[q] = timeline
        timeline += 1
    return allowed, positions


def reference_labels(model, count: int, starts: Sequence[float] | None = None) -> list[list[int]] | None:
    """Token ids of the label after each segment (None when the model has no `segment_label`), from the
    template: `segment_label.format(start=clock(start))`, start = index * segment_seconds when not given."""
    from voco.timeline import clock

    template = model.voco.prompt.segment_label
    if template is None:
        return None
    starts = [i * model.voco.segment_seconds for i in range(count)] if starts is None else list(starts)
    assert len(starts) == count, "one start time per segment"
    return [list(model.tokenizer(template.format(start=clock(s)), add_special_tokens=False)["input_ids"])
            for s in starts]


def single_pass_logits(model, prefix_ids: list[int], segments: Sequence[DesignSegment],
                       tail_ids: list[int], labels: Sequence[list[int]] | None = None) -> torch.Tensor:
    """Logits [len(tail_ids), vocab] of the tail tokens, from one masked pass; labels: token ids after each
    segment (`reference_labels`), or None for none."""
    embed = model.lm.get_input_embeddings()
    dev = model.device
    rows = []
    for t, s in enumerate(segments):
        rows.append(s.embeds.to(dev))
        if labels is not None and labels[t]:
            rows.append(embed(torch.tensor(labels[t], device=dev)))
    x = torch.cat([embed(torch.tensor(prefix_ids, device=dev)), *rows,
                   embed(torch.tensor(tail_ids, device=dev))])[None]  # [1, L, hidden]
    shapes = [(len(s.embeds), s.kept) for s in segments]
    if labels is None:
        allowed, positions = block_mask_and_positions(len(prefix_ids), shapes, len(tail_ids))
    else:
        allowed, positions = labelled_mask_and_positions(len(prefix_ids), shapes, [len(ids) for ids in labels],
                                                         len(tail_ids))
    mask = torch.zeros(allowed.shape, dtype=x.dtype)
    mask.masked_fill_(~allowed, torch.finfo(x.dtype).min)  # additive 4D mask
    out = model.lm(inputs_embeds=x, attention_mask=mask[None, None].to(dev), position_ids=positions[None].to(dev))
    return out.logits[0, -len(tail_ids):].float()


@torch.inference_mode()
def reference_logits(model, question: str, segments: Sequence, history: Sequence[tuple[str, str]] = (),
                     starts: Sequence[float] | None = None) -> torch.Tensor:
    """Next-token logits [vocab] after the prompt, computed in one masked pass from raw frames (with each
    segment's time label when the model has them; starts: their start seconds)."""
    prefix_ids, suffix_ids = model.prompt_ids(question, history)
    labels = reference_labels(model, len(segments), starts)
    return single_pass_logits(model, prefix_ids, design_segments(model, segments), suffix_ids, labels)[-1]


@torch.inference_mode()
def reference_greedy(model, question: str, segments: Sequence, max_new_tokens: int,
                     starts: Sequence[float] | None = None) -> list[int]:
    """Greedy decoding by re-running the whole single-pass reference for every new token."""
    from voco.generation import eos_ids

    prefix_ids, suffix_ids = model.prompt_ids(question)
    rows = design_segments(model, segments)
    labels = reference_labels(model, len(segments), starts)
    eos = set(eos_ids(model))
    out: list[int] = []
    for _ in range(max_new_tokens):
        token = int(single_pass_logits(model, prefix_ids, rows, suffix_ids + out, labels)[-1].argmax())
        if token in eos:
            break
        out.append(token)
    return out
