"""The single-pass reference: one sequence, a block mask, explicit (possibly negative) positions.

    [prefix, seg_1 .. seg_T, tail]     tail = question (+ decoded tokens)

Each segment sees only itself, causally, at positions delta_t + 0 .. delta_t + L_seg - 1 with
delta_t = P + (t-1) k - kept_start; tail tokens see the prefix, the kept tokens of every segment
and themselves, never a vision token. It is the ground truth the two-stage path (compress, then
answer from caches) must match, and a check for training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from voco.compressors import SegmentLayout


def reference_mask_and_positions(P: int, T: int, layout: SegmentLayout, Q: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean `allowed[query, key]` [L, L] and position ids [L] for the single-pass sequence."""
    Ls, k, s = layout.length, layout.kept, layout.kept_start
    L = P + T * Ls + Q
    allowed = torch.zeros(L, L, dtype=torch.bool)
    causal = lambda n: torch.ones(n, n, dtype=torch.bool).tril()
    allowed[:P, :P] = causal(P)
    positions = [torch.arange(P)]
    for t in range(T):
        a = P + t * Ls
        allowed[a : a + Ls, a : a + Ls] = causal(Ls)
        positions.append(P + t * k - s + torch.arange(Ls))
    q0 = P + T * Ls
    allowed[q0:, :P] = True
    for t in range(T):
        a = P + t * Ls + s
        allowed[q0:, a : a + k] = True
    allowed[q0:, q0:] = causal(Q)
    positions.append(P + T * k + torch.arange(Q))
    return allowed, torch.cat(positions)


def single_pass_logits(model, prefix_ids: list[int], segment_embeds: torch.Tensor, layout: SegmentLayout,
                       tail_ids: list[int]) -> torch.Tensor:
    """Logits [len(tail_ids), vocab] of the tail tokens. segment_embeds: [T, L_seg, hidden]."""
    T, Ls, hidden = segment_embeds.shape
    embed = model.lm.get_input_embeddings()
    dev = model.device
    x = torch.cat([
        embed(torch.tensor(prefix_ids, device=dev)),
        segment_embeds.reshape(T * Ls, hidden).to(dev),
        embed(torch.tensor(tail_ids, device=dev)),
    ])[None]  # [1, L, hidden]
    allowed, positions = reference_mask_and_positions(len(prefix_ids), T, layout, len(tail_ids))
    mask = torch.zeros(allowed.shape, dtype=x.dtype)
    mask.masked_fill_(~allowed, torch.finfo(x.dtype).min)  # additive 4D mask
    out = model.lm(inputs_embeds=x, attention_mask=mask[None, None].to(dev), position_ids=positions[None].to(dev))
    return out.logits[0, -len(tail_ids):].float()


@torch.inference_mode()
def reference_logits(model, question: str, segments: Sequence, history: Sequence[tuple[str, str]] = ()) -> torch.Tensor:
    """Next-token logits [vocab] after the prompt, computed in one masked pass from raw frames."""
    prefix_ids, suffix_ids = model.prompt_ids(question, history)
    embeds, layout = _segment_inputs(model, segments)
    return single_pass_logits(model, prefix_ids, embeds, layout, suffix_ids)[-1]


@torch.inference_mode()
def reference_greedy(model, question: str, segments: Sequence, max_new_tokens: int) -> list[int]:
    """Greedy decoding by re-running the whole single-pass reference for every new token."""
    prefix_ids, suffix_ids = model.prompt_ids(question)
    embeds, layout = _segment_inputs(model, segments)
    eos = set(_eos_ids(model))
    out: list[int] = []
    for _ in range(max_new_tokens):
        token = int(single_pass_logits(model, prefix_ids, embeds, layout, suffix_ids + out)[-1].argmax())
        if token in eos:
            break
        out.append(token)
    return out


def _segment_inputs(model, segments: Sequence) -> tuple[torch.Tensor, SegmentLayout]:
    vision = model.vision_embeds(segments)  # [T, n, hidden]
    return model.sequence_embeds(vision), model.layout(vision.shape[1])


def _eos_ids(model) -> list[int]:
    from voco.generation import eos_ids

    return eos_ids(model)
