"""The single-pass reference for ATP: the design's block mask plus ATP's pruning as per-layer key masks.

    [prefix, seg_1 .. seg_T, tail]    seg_t = the compressor's design row ([<seg>, V, text stand-in])

One sequence, the design's block mask and positions (`voco.reference.block_mask_and_positions`: each segment
sees only itself, the tail sees the prefix, the kept tokens and itself). ATP runs inside this one pass: at
each ATP layer every segment's vision tokens are scored from that layer's queries and keys over the segment's
own slice of the sequence, thresholded, and the pruned tokens become keys no query reads from that layer on
(a per-layer block mask, `voco.key_bias`). Nothing here uses the two-stage path's compress pass, cache
gathering, ragged placement or padding (`compress_batch`, `place_ragged_on_timeline`,
`voco.compressors.atp.ragged`), so a bug in any of them shows as a parity failure. The pruning rule itself
(`voco.compressors.atp.pruning.AtpRun`) is shared: it is the method, as the decoder is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from voco.compressors.atp.pruning import AtpRun, Groups, grid_sample
from voco.key_bias import use_key_bias_attention
from voco.reference import block_mask_and_positions, design_segments


def segment_groups(P: int, lengths: Sequence[int], n: int, device=None) -> Groups:
    """Each segment's vision (1 .. n) and text stand-in (n + 1 .. L_t - 1) indices in the single sequence."""
    starts = P + torch.tensor([0, *lengths[:-1]]).cumsum(0).to(device)  # [T]
    m = lengths[0] - 1 - n
    vision = starts[:, None] + 1 + torch.arange(n, device=device)[None]
    text = starts[:, None] + 1 + n + torch.arange(m, device=device)[None]
    return Groups(torch.zeros(len(lengths), dtype=torch.long, device=device), vision, text)


@torch.inference_mode()
def atp_single_pass_logits(model, prefix_ids: list[int], segments: Sequence, tail_ids: list[int]) -> torch.Tensor:
    """Logits [len(tail_ids), vocab] of the tail tokens over raw-frame segments, from one masked, pruned pass."""
    use_key_bias_attention(model.lm)
    rows = design_segments(model, segments)
    n = model.vision_embeds(segments[:1]).shape[1]
    embed, dev = model.lm.get_input_embeddings(), model.device
    x = torch.cat([embed(torch.tensor(prefix_ids, device=dev)), *(r.embeds.to(dev) for r in rows),
                   embed(torch.tensor(tail_ids, device=dev))])[None]  # [1, L, hidden]
    allowed, positions = block_mask_and_positions(len(prefix_ids), [(len(r.embeds), r.kept) for r in rows],
                                                  len(tail_ids))
    mask = torch.zeros(allowed.shape, dtype=x.dtype).masked_fill_(~allowed, torch.finfo(x.dtype).min)
    compressor = model.compressor
    groups = segment_groups(len(prefix_ids), [len(r.embeds) for r in rows], n, dev)
    grid = grid_sample(model.voco.frames_per_segment, n, compressor.budget(), dev)
    run = AtpRun(compressor.module, model.lm.config.num_hidden_layers, compressor.budget(), groups, grid, soft=False)
    out = model.lm(inputs_embeds=x, attention_mask=mask[None, None].to(dev), position_ids=positions[None].to(dev),
                   key_bias=run)
    return out.logits[0, -len(tail_ids):].float()


def atp_reference_logits(model, question: str, segments: Sequence) -> torch.Tensor:
    """Next-token logits [vocab] after the prompt (the ATP counterpart of `voco.reference.reference_logits`)."""
    prefix_ids, suffix_ids = model.prompt_ids(question)
    return atp_single_pass_logits(model, prefix_ids, segments, suffix_ids)[-1]
