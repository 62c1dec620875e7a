"""`VoCoModel`: a LLaVA-family model that compresses video segments into VoCo caches and answers from them.

Two plain causal passes, no custom mask (DESIGN.md):
  1. compress: each segment's sequence as its compressor (`self.compressor`, voco/compressors/) writes it,
     e.g. [<seg>, V_1..V_n, <voco>_1..<voco>_k] at positions 0..n+k; keep the KV of the kept tokens ->
     `SegmentCache` (position-free).
  2. answer: [prefix KV, caches rotated onto the timeline] as the LM's `cache`; the question and the
     decoded tokens run as an ordinary causal pass.
"""

from __future__ import annotations

import contextlib
import json
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import DynamicCache, LlavaConfig, PreTrainedTokenizerBase

from voco import identity, timeline
from voco.assembly import AssemblySpec, assemble
from voco.cache import SegmentCache, place_on_timeline
from voco.checkpoint import from_llava, load_checkpoint, new_model, save_checkpoint
from voco.compressors import Compressor, SegmentLayout, make_compressor
from voco.config import VoCoConfig
from voco.families import family_of
from voco.preprocess import frame_preprocessor
from voco.recompute import OnePassCache
from voco.rope import rotary_inv_freq

Frames = np.ndarray | torch.Tensor  # uint8 [F, H, W, 3]


class VoCoModel(nn.Module):
    """Vision tower -> projector -> decoder LM, with VoCo compression and cached answering."""

    timeline_memo_size: int = 8
    """Placed timelines (with their time labels' KV) kept for reuse, each the past of one selection: on the default
    model 46 KB per position, 2 cache + 5 label positions a segment, so ~20 MB for 64 segments, ~170 MB for 8."""

    def __init__(
        self,
        config: LlavaConfig,
        voco: VoCoConfig,
        vision_tower: nn.Module,
        projector: nn.Module,
        lm: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
    ):
        super().__init__()
        self.config = config
        self.family = family_of(config)
        self.voco = voco
        self.vision_tower = vision_tower
        self.projector = projector
        self.lm = lm
        self.tokenizer = tokenizer
        self.compressor: Compressor = make_compressor(voco, config.text_config)
        if self.compressor.module is not None:  # its own weights: `model.<module_name>`, part of the state dict
            self.add_module(self.compressor.module_name, self.compressor.module.to(self.device, self.dtype))
        self.voco_token_id = _token_id(tokenizer, voco.voco_token)
        if voco.segment_start_token is None:
            if tokenizer.bos_token_id is None:
                raise ValueError("the tokenizer has no <bos>: set voco.segment_start_token to a token it has")
            self.segment_start_id = tokenizer.bos_token_id
        else:
            self.segment_start_id = _token_id(tokenizer, voco.segment_start_token)
        vocab = lm.get_input_embeddings().num_embeddings
        if max(self.voco_token_id, self.segment_start_id) >= vocab:
            raise ValueError(
                f"token ids ({self.voco_token_id}, {self.segment_start_id}) exceed the LM's {vocab} embeddings: "
                "the tokenizer and the weights come from different checkpoints"
            )
        rotary_inv_freq(lm)  # fail now, not at the first question, on a decoder we cannot move keys in
        self._fingerprint: tuple[tuple, str] | None = None
        self._prefix_memo: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._timeline_memo: OrderedDict[tuple, tuple] = OrderedDict()  # key -> (caches, layers' KV, position)
        self._label_budget_memo: tuple | None = None  # ((template, starts), longest label)

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = "default", *, dtype: torch.dtype | None = None,
                        device: str | torch.device = "cpu", **overrides) -> VoCoModel:
        """Load a bundled model (`"default"`: real footage; `"synthetic"`), a VoCo checkpoint, or a plain LLaVA
        checkpoint folder; `overrides` replace `voco.json` fields (e.g. k=2)."""
        return load_checkpoint(cls, name_or_path, dtype=dtype, device=device, **overrides)

    @classmethod
    def from_llava(cls, llava: nn.Module, tokenizer: PreTrainedTokenizerBase, voco: VoCoConfig, *,
                   add_tokens: bool = True) -> VoCoModel:
        """A transformers LLaVA-family model taken apart (same weights, no copies)."""
        return from_llava(cls, llava, tokenizer, voco, add_tokens=add_tokens)

    @classmethod
    def from_config(cls, config: LlavaConfig, tokenizer: PreTrainedTokenizerBase, voco: VoCoConfig, *,
                    seed: int = 0) -> VoCoModel:
        """A randomly initialised model (tests, benchmarks, training from scratch)."""
        return new_model(cls, config, tokenizer, voco, seed=seed)

    @classmethod
    def from_assembly(cls, spec: AssemblySpec, voco: VoCoConfig, *, checkpoint: str | Path | None = None,
                      dtype: torch.dtype = torch.float32) -> VoCoModel:
        """The model an assembly describes (pretrained parts from packages; trained parts from `checkpoint`)."""
        return assemble(cls, spec, voco, checkpoint=checkpoint, dtype=dtype)

    def save_pretrained(self, path: str | Path) -> None:
        save_checkpoint(self, path)

    # ---- properties -----------------------------------------------------------------------------

    @property
    def k(self) -> int:
        return self.voco.k

    @property
    def device(self) -> torch.device:
        return self.lm.get_input_embeddings().weight.device

    @property
    def inv_freq(self) -> torch.Tensor:
        return rotary_inv_freq(self.lm)

    @property
    def dtype(self) -> torch.dtype:
        return self.lm.get_input_embeddings().weight.dtype

    @property
    def fingerprint(self) -> str:
        """Identity of what changes cache bytes (voco/identity.py); caches carry it so no model reads another's."""
        memo_key = (identity.tensors_token(self), json.dumps(identity.compression_settings(self), sort_keys=True))
        if self._fingerprint is None or self._fingerprint[0] != memo_key:
            self._fingerprint = (memo_key, identity.fingerprint(self))
        return self._fingerprint[1]

    def layout(self, n_vision: int) -> SegmentLayout:
        return self.compressor.layout(n_vision)

    # ---- pass 1: segments -> caches -------------------------------------------------------------

    def checked_segments(self, frames: Sequence[Frames]) -> list[torch.Tensor]:
        """Each segment as a uint8 tensor [F, H, W, 3]; a clear error naming the segment otherwise."""
        batch = []
        for i, seg in enumerate(frames):
            seg = torch.as_tensor(seg)
            want = self.voco.frames_per_segment
            if seg.dtype != torch.uint8 or seg.dim() != 4 or seg.shape[-1] != 3 or seg.shape[0] != want:
                raise ValueError(
                    f"segment {i}: frames must be uint8 [{want}, H, W, 3] (frames_per_segment={want}), "
                    f"got {seg.dtype} {tuple(seg.shape)}"
                )
            batch.append(seg)
        return batch

    def pixel_values(self, frames: Sequence[Frames]) -> torch.Tensor:
        """uint8 segments [B] x [F, H, W, 3] -> normalised pixels [B * F, 3, S, S]."""
        size = self.config.vision_config.image_size
        batch = self.checked_segments(frames)
        preprocess = frame_preprocessor(self.voco.image_resize, size, self.voco.image_mean, self.voco.image_std)
        return preprocess(torch.cat(batch).to(self.device)).to(self.dtype)

    def vision_features(self, frames: Sequence[Frames]) -> torch.Tensor:
        """The vision tower's features LLaVA projects: [B * F, p, vision] (feature layer(s), CLS dropped).
        A tower that reads frames itself (`reads_frames`, the evidence tower) gets the uint8 frames, one segment
        at a time (segments of one batch may differ in size when a stream changes resolution)."""
        if getattr(self.vision_tower, "reads_frames", False):  # evidence slots stay float32 (they hold ids)
            segments = self.checked_segments(frames)
            if len({tuple(seg.shape) for seg in segments}) == 1:
                return self.vision_tower(torch.cat(segments)).to(self.device)
            return torch.cat([self.vision_tower(seg) for seg in segments]).to(self.device)
        pixels = self.pixel_values(frames)  # [B*F, 3, S, S]
        return self.family.vision_features(self.config, self.vision_tower, pixels)  # [B*F, p, vision]

    def vision_embeds(self, frames: Sequence[Frames]) -> torch.Tensor:
        """Projected vision embeddings of B segments: [B, n, hidden], n = F * tokens per frame."""
        return self.segment_tokens(self.projector(self.vision_features(frames)), len(frames))

    def segment_tokens(self, embeds: torch.Tensor, segments: int) -> torch.Tensor:
        """Projected frame tokens [B*F, p, hidden] -> each segment's vision sequence [B, n, hidden] (the family's
        video path may close a segment's frames with a token: OneVision's image_newline)."""
        embeds = self.compressor.frame_tokens(self, embeds)  # [B*F, p', hidden]
        return self.family.segment_tokens(self.projector, embeds.reshape(segments, -1, embeds.shape[-1]))

    def embed_segment(self, frames: Frames) -> torch.Tensor:
        """uint8 [F, H, W, 3] -> the segment's projected vision embeddings [n, hidden]."""
        return self.vision_embeds([frames])[0]

    def sequence_embeds(self, vision: torch.Tensor) -> torch.Tensor:
        """Vision embeddings [B, n, hidden] -> pass-1 input [B, L_seg, hidden] per the compressor."""
        return self.compressor.sequence_embeds(self, vision)

    def segment_embeds(self, frames: Frames) -> torch.Tensor:
        """The whole pass-1 input of one segment as the LM reads it: [L_seg, hidden]."""
        return self.sequence_embeds(self.vision_embeds([frames]))[0]

    def compress_embeds(self, embeds: torch.Tensor, layout: SegmentLayout) -> torch.Tensor:
        """Pass 1 on B equal-length segment sequences (no padding, no mask), differentiable.

        embeds: [B, L_seg, hidden] -> kept KV [B, layers, 2, kv_heads, kept, head_dim]
        """
        B, L, _ = embeds.shape
        if layout.length != L:
            raise ValueError(f"segment sequence has {L} tokens, the layout expects {layout.length}")
        positions = torch.arange(L, device=embeds.device).expand(B, L)
        out = self.lm.model(inputs_embeds=embeds, position_ids=positions, cache=OnePassCache(), use_cache=True)
        s, e = layout.kept_start, layout.kept_start + layout.kept
        kept = [torch.stack((lay.keys[:, :, s:e], lay.values[:, :, s:e]), dim=1) for lay in out.cache.layers]
        return torch.stack(kept, dim=1)

    @torch.inference_mode()
    def compress(self, segments: Sequence[Frames], batch_size: int = 8) -> list[SegmentCache]:
        """Compress segments (each uint8 [F, H, W, 3]) into position-free `SegmentCache`s."""
        if len(segments) == 0:
            return []
        fingerprint = self.fingerprint
        caches: list[SegmentCache] = []
        for i in range(0, len(segments), batch_size):
            vision = self.vision_embeds(segments[i : i + batch_size])  # [B, n, hidden]
            caches.extend(self.compressor.compress_batch(self, vision, fingerprint))
        return caches

    # ---- pass 2: caches + question -> logits ----------------------------------------------------

    def prompt_ids(self, question: str, history: Sequence[tuple[str, str]] = ()) -> tuple[list[int], list[int]]:
        """Token ids of the text before the video caches and after them (question, assistant tag)."""
        p = self.voco.prompt
        prefix = self.tokenizer(p.prefix.format(system=p.system), add_special_tokens=True)["input_ids"]
        turns = [(q, a) for q, a in history] + [(question, None)]
        text = ""
        for i, (q, a) in enumerate(turns):
            text += (p.question if i == 0 else p.followup).format(question=q)
            if a is not None:
                text += f" {a}{p.answer_end}"
        suffix = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return list(prefix), list(suffix)

    def answer_ids(self, answer: str) -> list[int]:
        """Token ids of an assistant answer as it follows the prompt, with its closing text."""
        return list(self.tokenizer(f" {answer}{self.voco.prompt.answer_end}", add_special_tokens=False)["input_ids"])

    def _prefix_kv(self, prefix_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """KV of the prompt prefix, [layers, kv_heads, P, head_dim] each; memoised per weights."""
        key = (tuple(prefix_ids), self.fingerprint)
        if key in self._prefix_memo and not torch.is_grad_enabled():
            return self._prefix_memo[key]
        ids = torch.tensor([prefix_ids], device=self.device)
        positions = torch.arange(len(prefix_ids), device=self.device)[None]
        out = self.lm.model(input_ids=ids, position_ids=positions, use_cache=True)
        keys = torch.cat([lay.keys for lay in out.cache.layers])  # [layers, H, P, D]
        values = torch.cat([lay.values for lay in out.cache.layers])
        if not torch.is_grad_enabled():
            self._prefix_memo = {key: (keys, values)}
        return keys, values

    def segment_labels(self, count: int, starts: Sequence[float] | None = None) -> list[list[int]] | None:
        """Token ids of the time label after each of `count` placed segments (`prompt.segment_label`), or None
        when the model has none. starts: each segment's start seconds (None: index * segment_seconds)."""
        template = self.voco.prompt.segment_label
        if template is None:
            return None
        return timeline.label_ids(self.tokenizer, template,
                                  timeline.segment_starts(count, self.voco.segment_seconds, starts))

    def longest_segment_label(self, starts: Sequence[float]) -> int:
        """Tokens of the longest time label among `starts` (0 without labels): what the context budget counts
        per segment beside its cache tokens."""
        key = (self.voco.prompt.segment_label, tuple(starts))
        if self._label_budget_memo is None or self._label_budget_memo[0] != key:  # same video, next question
            self._label_budget_memo = (key, timeline.longest_label(self.tokenizer, key[0], starts))
        return self._label_budget_memo[1]

    def past_from_kv(
        self, kv: torch.Tensor, source_positions: torch.Tensor, prefix_ids: list[int],
        starts: Sequence[float] | None = None,
    ) -> tuple[DynamicCache, int]:
        """[prefix KV, T segment caches placed after it, each followed by its time label when the model has
        them (voco/timeline.py)] as a transformers cache, and the next position.

        kv: [T, layers, 2, kv_heads, k, head_dim] (differentiable); source_positions: [T];
        starts: [T] start seconds of the segments (None: index * segment_seconds; read only with labels)
        """
        prefix_k, prefix_v = self._prefix_kv(prefix_ids)
        P, T, k = len(prefix_ids), kv.shape[0], kv.shape[4]
        labels = self.segment_labels(T, starts)
        placement = timeline.place(P, [k] * T, labels or [[]] * T)
        targets = None if labels is None else torch.tensor(placement.cache_targets)
        keys, values = place_on_timeline(kv.to(self.device, self.dtype), source_positions, P, self.inv_freq,
                                         targets)
        layers = [
            (torch.cat((pk, sk), dim=1)[None], torch.cat((pv, sv), dim=1)[None])  # [1, H, P + T*k, D]
            for pk, sk, pv, sv in zip(prefix_k, keys, prefix_v, values, strict=True)
        ]
        past = DynamicCache(ddp_cache_data=layers)
        if labels is not None:
            self.voco.check_segment_label()
            timeline.append_labels(self, past, [placement], T * k)  # past: [1, H, P + T*k + labels, D]
        return past, placement.end

    def past_from_caches(self, caches: Sequence[SegmentCache], prefix_ids: list[int],
                         starts: Sequence[float] | None = None) -> tuple[DynamicCache, int]:
        """Check the caches belong to this model, then place them after the prefix (the compressor's hooks),
        each followed by its time label when the model has them; starts: each segment's start seconds (None:
        index * segment_seconds). With labels, the placed timelines of the last `timeline_memo_size` selections are
        memoised (questions about a few videos, asked by many people in turn, skip the label pass)."""
        self.compressor.check_caches(caches, self.fingerprint)
        if self.voco.prompt.segment_label is None:
            return self.compressor.past_from_caches(self, caches, prefix_ids)
        starts = timeline.segment_starts(len(caches), self.voco.segment_seconds, starts)
        key = (self.fingerprint, self.voco.prompt.segment_label, tuple(prefix_ids), tuple(starts),
               tuple(_cache_token(c) for c in caches))
        memo, reuse = self._timeline_memo.get(key), not torch.is_grad_enabled()
        if reuse and memo is not None and all(a is b for a, b in zip(memo[0], caches, strict=True)):
            with contextlib.suppress(KeyError):  # another thread may have dropped it meanwhile
                self._timeline_memo.move_to_end(key)
            return DynamicCache(ddp_cache_data=memo[1]), memo[2]
        past, position = self.compressor.past_from_caches(self, caches, prefix_ids, starts)
        if reuse:  # the label pass costs an LM pass: repeated questions about the same selection reuse it
            self._timeline_memo[key] = (tuple(caches), [(lay.keys, lay.values) for lay in past.layers], position)
            while len(self._timeline_memo) > self.timeline_memo_size:
                with contextlib.suppress(KeyError):
                    self._timeline_memo.popitem(last=False)
        return past, position

    def forward_tokens(self, ids: list[int], past: DynamicCache, position: int, last_only: bool = True) -> torch.Tensor:
        """Run token ids after `past` (extending it) at positions `position ..`; logits [L or 1, vocab]."""
        input_ids = torch.tensor([ids], device=self.device)
        positions = torch.arange(position, position + len(ids), device=self.device)[None]
        extra = {"key_bias": past.key_bias} if getattr(past, "key_bias", None) is not None else {}  # ragged
        out = self.lm(input_ids=input_ids, position_ids=positions, cache=past, use_cache=True,
                      logits_to_keep=1 if last_only else 0, **extra)
        return out.logits[0].float()

    @torch.inference_mode()
    def next_token_logits(
        self, question: str, caches: Sequence[SegmentCache], history: Sequence[tuple[str, str]] = (),
        starts: Sequence[float] | None = None,
    ) -> torch.Tensor:
        """Logits [vocab] after prefix + caches (+ time labels) + question + assistant tag."""
        prefix_ids, suffix_ids = self.prompt_ids(question, history)
        past, position = self.past_from_caches(caches, prefix_ids, starts)
        return self.forward_tokens(suffix_ids, past, position)[-1]

    # ---- generation (see voco/generation.py) ----------------------------------------------------

    def _timeline(self, caches: Sequence[SegmentCache], starts: Sequence[float] | None):
        from voco.session import SegmentSpan, Timeline

        if starts is None:
            return Timeline.of(caches)
        starts = timeline.segment_starts(len(caches), self.voco.segment_seconds, starts)
        return Timeline(tuple(caches), tuple(SegmentSpan(i, s) for i, s in enumerate(starts)))

    def stream(self, question: str, caches: Sequence[SegmentCache], starts: Sequence[float] | None = None,
               **kwargs) -> Iterator[str]:
        """Yield the answer in pieces as it is decoded from all `caches` (`voco.session.AnswerSession`, which
        also selects segments and reports stats); starts: each segment's start seconds (None: index *
        segment_seconds); kwargs as `voco.generation.GenerationConfig`."""
        from voco.session import AnswerSession

        session = AnswerSession(self, self._timeline(caches, starts))
        return (p.text for p in session.stream(question, **kwargs) if p.text)

    def answer(self, question: str, caches: Sequence[SegmentCache], starts: Sequence[float] | None = None,
               **kwargs) -> str:
        from voco.session import AnswerSession

        return AnswerSession(self, self._timeline(caches, starts)).answer(question, **kwargs)[0]

    def score(self, question: str, caches: Sequence[SegmentCache], candidates: Sequence[str],
              starts: Sequence[float] | None = None) -> list[float]:
        """Log-likelihood of each candidate answer (with its closing text), for multiple choice."""
        from voco.generation import score

        return score(self, question, caches, candidates, starts)


def _cache_token(cache) -> tuple:
    """What tells one cache object from another for the timeline memo (the memo also holds the objects, so an
    id is never reused while it is there); the version counter catches an in-place change where torch keeps one
    (inference tensors keep none and cannot be changed outside inference mode)."""
    try:
        version = cache.kv._version
    except RuntimeError:  # an inference tensor
        version = None
    return id(cache), id(cache.kv), version


def _token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int:
    ids = tokenizer.convert_tokens_to_ids([token])
    if not ids or ids[0] is None or ids[0] == tokenizer.unk_token_id:
        raise ValueError(f"the tokenizer has no {token!r} token: add it (from_pretrained on a LLaVA checkpoint "
                         "does this) or fix voco.json")
    return int(ids[0])
