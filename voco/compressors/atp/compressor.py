"""The ATP compressors (pruning.py prunes; these say what a segment's sequence holds and what is kept).

    atp:       [<seg>, V_1 .. V_n, I_1 .. I_m]   keep, per layer, the vision tokens ATP kept there (ragged)
    atp+voco:  [<seg>, V_1 .. V_n, <voco>_1 .. <voco>_k]   prune inside the pass, keep the k <voco> tokens (dense)

Caches are made before any question exists, so something else stands for the text in ATP's cross-modality
(text -> vision) score: for `atp` a fixed instruction I (`INSTRUCTION`, computed in the pass, never kept), for
`atp+voco` the `<voco>` tokens themselves (what the question will read). `question=` in `compress_batch` puts
a known question there instead (the question-time variant: the cache then serves that question only).
`atp` reads k as the budget in percent of the vision-token KV kept over all layers (`atp-30`: 30%);
`atp+voco` reads k as its `<voco>` tokens and prunes to `compressor_options: {budget_percent: ...}` (default 30).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from voco.cache import RaggedSegmentCache, SegmentCache, check_ragged_caches
from voco.compressors.atp.pruning import AtpPruner, AtpRun, Groups, grid_sample
from voco.compressors.base import Compressed, Compressor, SegmentLayout, register
from voco.compressors.dense import segment_start
from voco.key_bias import use_key_bias_attention

INSTRUCTION = " what happens in the video?"
"""The text that stands for the question in `atp`'s cross-modality score when caches are stored."""
VOCO_BUDGET = 0.3
"""`atp+voco`: share of vision-token KV kept inside the compress pass."""
BUDGET_WEIGHT = 1.0
"""Weight of the budget loss in training."""
SEED = 1234
"""The pruner's init seed (its own RNG: adding it never moves the rest of a model's init)."""


class _AtpBase(Compressor):
    module_name = "atp"

    @classmethod
    def build_module(cls, k: int, text_config, options: dict) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            return AtpPruner()

    def budget(self) -> float:
        raise NotImplementedError

    def text_ids(self, model, question: str | None) -> list[int]:
        raise NotImplementedError

    def sequence_embeds(self, model, vision: torch.Tensor, question: str | None = None) -> torch.Tensor:
        """[<seg>, V_1 .. V_n, text stand-in]: [B, 1 + n + m, hidden]."""
        B = vision.shape[0]
        ids = torch.tensor(self.text_ids(model, question), device=vision.device)
        text = model.lm.get_input_embeddings()(ids)[None].expand(B, -1, -1)
        return torch.cat([segment_start(model, B, vision.device), vision, text], dim=1)

    def run_pass(self, model, vision: torch.Tensor, *, soft: bool, question: str | None = None):
        """The compress pass with ATP pruning: (transformers cache of every token, the run's record)."""
        use_key_bias_attention(model.lm)
        embeds = self.sequence_embeds(model, vision, question)  # [B, 1 + n + m, hidden]
        B, L, _ = embeds.shape
        n = vision.shape[1]
        groups = Groups.one_per_row(B, n, L - 1 - n, device=embeds.device)
        grid = grid_sample(model.voco.frames_per_segment, n, self.budget(), embeds.device)
        run = AtpRun(self.module, model.lm.config.num_hidden_layers, self.budget(), groups, grid, soft=soft)
        positions = torch.arange(L, device=embeds.device).expand(B, L)
        out = model.lm.model(inputs_embeds=embeds, position_ids=positions, use_cache=True, key_bias=run)
        return out.cache, run

    def design_row(self, model, vision: torch.Tensor):
        """[<seg>, V, text] written out; the pruning itself happens inside the reference pass (atp_reference)."""
        from voco.reference import DesignSegment

        dev, embed = vision.device, model.lm.get_input_embeddings()
        start = embed(torch.tensor([model.segment_start_id], device=dev))
        text = embed(torch.tensor(self.text_ids(model, None), device=dev))
        n = vision.shape[0]
        kept = self.layout(n)
        return DesignSegment(torch.cat([start, vision, text]), range(kept.kept_start, kept.kept_start + kept.kept))


@register
class AtpCompressor(_AtpBase):
    """ATP-LLaVA's pruning; the cache keeps each layer's kept vision tokens (ragged), k = budget in percent."""

    name = "atp"
    dense_caches = False

    def budget(self) -> float:
        if not 1 <= self.k <= 100:
            raise ValueError(f"atp: k is the budget in percent of vision tokens kept (1..100), got {self.k}")
        return self.k / 100

    def text_ids(self, model, question: str | None) -> list[int]:
        text = INSTRUCTION if question is None else f" {question}"
        return list(model.tokenizer(text, add_special_tokens=False)["input_ids"])

    def layout(self, n_vision: int) -> SegmentLayout:
        """The timeline span: the n vision positions (kept tokens keep their original positions)."""
        return SegmentLayout(length=1 + n_vision, kept_start=1, kept=n_vision)

    def kept_tokens(self, n_vision: int) -> int:
        return round(self.budget() * n_vision)

    def compress_for_training(self, model, vision: torch.Tensor) -> Compressed:
        """Soft masks while the model trains; hard ones in eval mode (validation and test read what is stored)."""
        cache, run = self.run_pass(model, vision, soft=model.training)
        n = vision.shape[1]
        kv = torch.stack([torch.stack((lay.keys[:, :, 1 : 1 + n], lay.values[:, :, 1 : 1 + n]), dim=1)
                          for lay in cache.layers], dim=1)  # [B, layers, 2, H, n, D]
        return Compressed(kv, self.layout(n), {"atp_budget": BUDGET_WEIGHT * run.budget_loss()},
                          key_mask=run.layer_masks())

    @torch.no_grad()
    def compress_batch(self, model, vision: torch.Tensor, fingerprint: str,
                       question: str | None = None) -> list[RaggedSegmentCache]:
        cache, run = self.run_pass(model, vision, soft=False, question=question)
        masks = run.layer_masks() > 0.5  # [B, layers, n]
        out = []
        for b in range(vision.shape[0]):
            parts, positions, lengths = [], [], []
            for i, lay in enumerate(cache.layers):
                idx = 1 + masks[b, i].nonzero()[:, 0]  # canonical positions of layer i's kept tokens
                parts.append(torch.stack((lay.keys[b][:, idx], lay.values[b][:, idx])).permute(2, 0, 1, 3))
                positions.append(idx)
                lengths.append(len(idx))
            out.append(RaggedSegmentCache(torch.cat(parts).cpu().clone(), torch.tensor(lengths),
                                          torch.cat(positions).cpu(), 1, vision.shape[1], fingerprint, self.name))
        return out

    def check_caches(self, caches: Sequence, fingerprint: str) -> None:
        check_ragged_caches(caches, fingerprint=fingerprint, compressor=self.name, layers=len(caches[0].lengths)
                            if caches and isinstance(caches[0], RaggedSegmentCache) else -1)

    def past_from_caches(self, model, caches: Sequence[RaggedSegmentCache], prefix_ids: list[int],
                         starts: Sequence[float] | None = None):
        """Ragged caches carry no time labels (`starts` is not read; `VoCoConfig` refuses `segment_label`)."""
        from voco.compressors.atp.ragged import past_from_ragged

        model.voco.check_segment_label()
        return past_from_ragged(model, caches, prefix_ids)

    def describe(self, n_vision: int) -> str:
        return (f"per layer, the KV of the vision tokens ATP keeps there (ragged), {self.k}% of the {n_vision} "
                "vision tokens' KV on average")


@register
class AtpVoCoCompressor(_AtpBase):
    """ATP pruning inside the compress pass, then only the k `<voco>` tokens' KV is kept (dense)."""

    name = "atp+voco"
    reads_voco_token = True
    options = {"budget_percent": round(100 * VOCO_BUDGET)}

    def budget(self) -> float:
        percent = self.opts["budget_percent"]
        if not 1 <= percent <= 100:
            raise ValueError(f"atp+voco: compressor_options budget_percent must be in 1..100, got {percent}")
        return percent / 100

    def text_ids(self, model, question: str | None) -> list[int]:
        return [model.voco_token_id] * self.k

    def layout(self, n_vision: int) -> SegmentLayout:
        return SegmentLayout(length=1 + n_vision + self.k, kept_start=1 + n_vision, kept=self.k)

    def compress_for_training(self, model, vision: torch.Tensor) -> Compressed:
        cache, run = self.run_pass(model, vision, soft=model.training)
        layout = self.layout(vision.shape[1])
        s, e = layout.kept_start, layout.kept_start + layout.kept
        kv = torch.stack([torch.stack((lay.keys[:, :, s:e], lay.values[:, :, s:e]), dim=1) for lay in cache.layers],
                         dim=1)
        return Compressed(kv, layout, {"atp_budget": BUDGET_WEIGHT * run.budget_loss()})

    @torch.no_grad()
    def compress_batch(self, model, vision: torch.Tensor, fingerprint: str,
                       question: str | None = None) -> list[SegmentCache]:
        cache, _ = self.run_pass(model, vision, soft=False)
        layout = self.layout(vision.shape[1])
        s, e = layout.kept_start, layout.kept_start + layout.kept
        kv = torch.stack([torch.stack((lay.keys[:, :, s:e], lay.values[:, :, s:e]), dim=1) for lay in cache.layers],
                         dim=1)  # [B, layers, 2, H, k, D]
        return [SegmentCache(seg.clone(), s, fingerprint, self.name) for seg in kv.cpu()]

    def describe(self, n_vision: int) -> str:
        return (f"the KV cache of {self.k} `<voco>` token(s) read after the {n_vision} vision tokens, which ATP "
                f"prunes inside the LM to {100 * self.budget():.0f}% of their KV")
