"""The tokens VoCo adds to a checkpoint's tokenizer (`<voco>`, and a segment-start token where there is no <bos>),
with embedding rows at the mean of the existing ones."""

from __future__ import annotations

import logging

import torch

from voco.config import VoCoConfig

log = logging.getLogger(__name__)


def _wanted_tokens(tokenizer, voco: VoCoConfig) -> list[str]:
    tokens = [voco.voco_token]
    if voco.segment_start_token is not None:
        tokens.append(voco.segment_start_token)
    return tokens


def add_special_tokens(lm, tokenizer, voco: VoCoConfig) -> None:
    """Add `<voco>` (and a segment-start token if needed) with embeddings at the mean of the existing
    tokens' rows, growing the embedding matrices only when the new ids do not fit."""
    if voco.segment_start_token is None and tokenizer.bos_token_id is None:
        voco.segment_start_token = "<segment>"  # tokenizers without <bos> (Qwen2) get a start token
    missing = [t for t in _wanted_tokens(tokenizer, voco) if t not in tokenizer.get_vocab()]
    if not missing:
        return
    known = len(tokenizer)
    tokenizer.add_tokens(missing, special_tokens=True)
    new_ids = tokenizer.convert_tokens_to_ids(missing)
    rows = lm.get_input_embeddings().num_embeddings
    if max(new_ids) >= rows:
        lm.resize_token_embeddings(max(new_ids) + 1, mean_resizing=False)
    with torch.no_grad():
        weights = (lm.get_input_embeddings().weight, lm.get_output_embeddings().weight)
        for weight in {id(w): w for w in weights}.values():  # once if tied
            weight[new_ids] = weight[:known].mean(dim=0, keepdim=True)
    log.info("added %s to the tokenizer (ids %s); embedding rows %d -> %d", missing, new_ids, rows,
             lm.get_input_embeddings().num_embeddings)
