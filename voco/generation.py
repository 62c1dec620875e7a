"""Decoding from VoCo caches: every step is an ordinary causal pass over the KV cache.

The published VoCo-LLaMA code decodes wrongly after the first token (its custom mask and cache
disagree); here the caches are plain KV entries at their timeline positions, so each step is the
same computation as the single-pass reference (see tests/voco/test_generation.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from voco.cache import SegmentCache


@dataclass
class GenerationConfig:
    """How to decode an answer."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    """0 means greedy; > 0 samples from softmax(logits / temperature)."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p."""
    stop: Sequence[str] = field(default_factory=tuple)
    """Extra stop strings; the prompt's answer_end and next-turn tag always stop."""
    seed: int | None = None
    history: Sequence[tuple[str, str]] = ()
    """Earlier (question, answer) turns of the chat."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


class ContextTooLong(ValueError):
    """A question over these caches needs more positions than the model's budget."""


def position_budget(model) -> int:
    """Positions the decoder has (its config's max_position_embeddings): RoPE does not stop a pass past it,
    the answers just degrade, so every answering path checks it first."""
    return int(model.lm.config.max_position_embeddings)


def segments_that_fit(model, text_tokens: int, per_segment: int) -> int:
    """How many segments of `per_segment` positions (cache tokens + time-label tokens) fit beside `text_tokens`
    prompt, question and answer positions (0 when not even the text fits)."""
    return max(0, (position_budget(model) - text_tokens) // max(1, per_segment))


def check_position_budget(model, prefix_ids: Sequence[int], caches: Sequence[SegmentCache],
                          suffix_ids: Sequence[int], new_tokens: int, starts: Sequence[float] | None = None) -> None:
    """Raise `ContextTooLong` (saying what was needed, the budget and how many segments fit) when
    prompt + caches (+ each segment's time label, when the model has them) + question + `new_tokens` answer
    tokens do not fit in `position_budget(model)`. starts: the segments' start seconds (the labels' text)."""
    budget = position_budget(model)
    labels = model.segment_labels(len(caches), starts) or []
    cache_tokens = sum(c.k for c in caches) + sum(len(ids) for ids in labels)
    text = len(prefix_ids) + len(suffix_ids) + new_tokens
    needed = text + cache_tokens
    if needed <= budget:
        return
    per_cache = max((c.k for c in caches), default=1)
    per_label = max((len(ids) for ids in labels), default=0)
    fit = segments_that_fit(model, text, per_cache + per_label)
    per_segment = f"{per_cache} cache tokens"
    if labels:
        per_segment = f"({per_segment} + up to {per_label} time-label tokens)"
    raise ContextTooLong(
        f"this answer needs {needed} positions (prompt {len(prefix_ids)} + {len(caches)} segments x "
        f"{per_segment} + question {len(suffix_ids)} + up to {new_tokens} answer tokens) but the "
        f"model's budget is {budget} (max_position_embeddings in its config.json): answer from at most {fit} "
        "segments (e.g. a uniform subset of the video), or shorten the question, the chat history or "
        "max_new_tokens")


def eos_ids(model) -> list[int]:
    ids = {model.tokenizer.eos_token_id}
    gen_eos = getattr(getattr(model.lm, "generation_config", None), "eos_token_id", None)
    ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
    return sorted(i for i in ids if i is not None)


def stop_strings(model, cfg: GenerationConfig) -> list[str]:
    """The prompt's answer end and next-turn tag ("USER:") always stop an answer, plus the caller's own."""
    prompt = model.voco.prompt
    next_turn = prompt.followup.split("{question}")[0].strip()
    return [s for s in (prompt.answer_end, next_turn, *cfg.stop) if s]


def next_token(logits: torch.Tensor, cfg: GenerationConfig, generator: torch.Generator | None) -> int:
    """Greedy or temperature / top-p sampling from logits [vocab]."""
    if cfg.temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / cfg.temperature, dim=-1)
    if cfg.top_p < 1:
        sorted_probs, order = probs.sort(descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs >= cfg.top_p  # mass before this token already enough
        sorted_probs[outside] = 0
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))


class StopText:
    """Turns a growing token list into text pieces, cutting at stop strings and holding back
    text that may still become one (or is an incomplete UTF-8 character)."""

    def __init__(self, tokenizer, stops: Sequence[str]):
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.emitted = 0
        self.stopped = False

    def feed(self, ids: list[int], final: bool = False) -> str:
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            end = cut
        elif final:
            end = len(text)
        else:
            end = len(text.rstrip("\ufffd"))
            head = text[:end]
            end -= max((n for s in self.stops for n in range(1, len(s)) if head.endswith(s[:n])), default=0)
        piece = text[self.emitted : end] if end > self.emitted else ""
        self.emitted = max(self.emitted, end)
        return piece


@dataclass
class Row:
    """One request on its way: its own past (prefix, placed caches and labels, then what it has run), the tokens it
    runs next (`pending`: the question's at first, then each chosen token) at positions `position ..`, and the
    logits [vocab] (float) the last of them gave (None until they ran)."""

    past: DynamicCache
    position: int
    pending: list[int]
    logits: torch.Tensor | None = None


@torch.inference_mode()
def place(model, question: str, caches: Sequence[SegmentCache], cfg: GenerationConfig,
          starts: Sequence[float] | None = None) -> Row:
    """The context check, then [prefix, caches placed on the timeline (+ time labels)] as the request's own past;
    the question's tokens are its first pending ones. Every answer starts here, alone or batched (voco/batching.py).
    starts: each segment's start seconds, read by a model with time labels (None: index * segment_seconds)."""
    prefix_ids, suffix_ids = model.prompt_ids(question, cfg.history)
    check_position_budget(model, prefix_ids, caches, suffix_ids, cfg.max_new_tokens, starts)
    past, position = model.past_from_caches(caches, prefix_ids, starts)
    return Row(past, position, list(suffix_ids))


def run_row(model, row: Row) -> None:
    """Run a request's pending tokens after its past, alone (the past grows by them): its next logits."""
    row.logits = model.forward_tokens(row.pending, row.past, row.position)[-1]
    row.position += len(row.pending)
    row.pending = []


@torch.inference_mode()
def prefill(model, question: str, caches: Sequence[SegmentCache], cfg: GenerationConfig,
            starts: Sequence[float] | None = None) -> Row:
    """`place`, then the question's pass alone: the row with the first token's logits."""
    row = place(model, question, caches, cfg, starts)
    run_row(model, row)
    return row


def sampler(cfg: GenerationConfig, device: torch.device) -> torch.Generator | None:
    """The request's own random generator (seeded), or None: greedy, or unseeded sampling."""
    if cfg.seed is None:
        return None
    return torch.Generator(device=device).manual_seed(cfg.seed)


@torch.inference_mode()
def generate_tokens(model, question: str, caches: Sequence[SegmentCache], cfg: GenerationConfig,
                    starts: Sequence[float] | None = None) -> Iterator[int]:
    """Token ids of the answer, one per step, until EOS or `max_new_tokens` (no stop strings); one request alone
    (`voco.session.AnswerSession` decodes through `voco.batching`, which takes the same steps).
    starts: each segment's start seconds, read by a model with time labels (None: index * segment_seconds)."""
    row = prefill(model, question, caches, cfg, starts)
    generator = sampler(cfg, row.logits.device)
    eos = set(eos_ids(model))
    for step in range(cfg.max_new_tokens):
        token = next_token(row.logits, cfg, generator)
        if token in eos:
            return
        yield token
        if step + 1 < cfg.max_new_tokens:
            row.pending = [token]
            run_row(model, row)


@torch.inference_mode()
def score(model, question: str, caches: Sequence[SegmentCache], candidates: Sequence[str],
          starts: Sequence[float] | None = None) -> list[float]:
    """Sum of log-probabilities of each candidate's tokens after the prompt; the prompt runs once.
    starts: as `generate_tokens`."""
    prefix_ids, suffix_ids = model.prompt_ids(question)
    candidate_ids = [model.answer_ids(cand) for cand in candidates]
    check_position_budget(model, prefix_ids, caches, suffix_ids, max((len(c) for c in candidate_ids), default=0),
                          starts)
    past, position = model.past_from_caches(caches, prefix_ids, starts)
    first = torch.log_softmax(model.forward_tokens(suffix_ids, past, position)[-1], dim=-1)
    position += len(suffix_ids)
    scores = []
    for ids in candidate_ids:
        logp = float(first[ids[0]])
        if len(ids) > 1:
            logits = model.forward_tokens(ids[:-1], past, position, last_only=False)  # [len-1, vocab]
            rest = torch.tensor(ids[1:], device=logits.device)[:, None]
            logp += float(torch.log_softmax(logits, -1).gather(-1, rest).sum())
            past.crop(-(len(ids) - 1))  # back to the prompt for the next candidate
        scores.append(logp)
    return scores
