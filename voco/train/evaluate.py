"""Accuracy per question type: open-ended greedy decoding from the segment caches, exact match.

Each question is answered by greedy decoding (up to `max_new_tokens`, stopping at </s>) from
[prefix, the video's caches, question] -- the same computation as `VoCoModel.answer` (two-stage path),
batched over questions -- and counts as correct when the decoded text, lower-cased and stripped of
surrounding spaces and a final '.', equals the one-word ground-truth answer. No answer list is given
to the model (stricter than multiple choice over `ANSWER_VOCAB`).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

import torch

from voco.data.questions import QUESTION_SCOPE, QUESTION_TYPES
from voco.data.synthetic import make_example
from voco.generation import eos_ids
from voco.train.data import VideoExample, encode
from voco.train.forward import build_timeline, compress_segments, rows_hidden


def normalise(text: str) -> str:
    return text.strip().lower().rstrip(".").strip()


CacheTransform = Callable[[torch.Tensor], torch.Tensor]
"""What happens to the kept KV between compressing and answering (e.g. a storage round trip: int8 caches)."""


@torch.no_grad()
def greedy_answers(model, batch, max_new_tokens: int = 6, view: str = "cache",
                   cache_transform: CacheTransform | None = None) -> list[str]:
    """Greedy answers to every question row of `batch` (answers in the batch are ignored)."""
    kv, layout = compress_segments(model, batch.segments, view=view)
    if cache_transform is not None:
        kv = cache_transform(kv)
    timeline = build_timeline(model, kv, layout, batch.segment_counts, batch.prefix_ids,
                              starts=batch.segment_starts)
    prompts = [ids[:a] for ids, a in zip(batch.row_ids, batch.row_answer_start, strict=True)]
    generated: list[list[int]] = [[] for _ in prompts]
    active = list(range(len(prompts)))
    stop = set(eos_ids(model))
    for _ in range(max_new_tokens):
        if not active:
            break
        rows = [prompts[r] + generated[r] for r in active]
        hidden = rows_hidden(model, timeline, [batch.row_video[r] for r in active], rows)
        last = torch.tensor([len(r) - 1 for r in rows], device=hidden.device)
        tokens = model.lm.lm_head(hidden[torch.arange(len(rows), device=hidden.device), last]).argmax(-1).tolist()
        still = []
        for r, token in zip(active, tokens, strict=True):
            if token in stop:
                continue
            generated[r].append(token)
            still.append(r)
        active = still
    return [model.tokenizer.decode(g, skip_special_tokens=True) for g in generated]


def evaluate(model, examples: Sequence[VideoExample], *, max_new_tokens: int = 6, videos_per_batch: int = 8,
             view: str = "cache", progress: bool = False, cache_transform: CacheTransform | None = None) -> dict:
    """{"accuracy": {type: acc}, "count": {type: n}, "average": mean over types, "overall", "local", "global"}.

    cache_transform: applied to every batch's kept KV [S, layers, 2, kv_heads, kept, head_dim] before answering.
    """
    was_training = model.training
    model.eval()
    correct: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    chunks = range(0, len(examples), videos_per_batch)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="evaluate", unit="batch", leave=False)
    samples = []
    for i in chunks:
        batch = encode(model, examples[i : i + videos_per_batch])
        answers = greedy_answers(model, batch, max_new_tokens, view, cache_transform)
        for kind, truth, said, question in zip(batch.row_types, batch.row_answers, answers, batch.row_questions,
                                               strict=True):
            total[kind] += 1
            correct[kind] += normalise(said) == normalise(truth)
            if len(samples) < 12:
                samples.append({"question": question, "answer": truth, "predicted": said.strip()})
    model.train(was_training)
    return summarise(correct, total, samples)


def summarise(correct: dict[str, int], total: dict[str, int], samples: list | None = None) -> dict:
    # the synthetic world's types in their order, then any other dataset's types
    types = [t for t in QUESTION_TYPES if total.get(t)] + sorted(t for t in total if t not in QUESTION_TYPES)
    accuracy = {t: correct[t] / total[t] for t in types}
    scoped = {}
    for scope in ("local", "global"):
        members = [t for t in types if QUESTION_SCOPE.get(t) == scope]
        if members:
            scoped[scope] = sum(accuracy[t] for t in members) / len(members)
    return {
        "accuracy": accuracy,
        "count": {t: total[t] for t in types},
        "average": sum(accuracy.values()) / max(1, len(accuracy)),
        "overall": sum(correct[t] for t in types) / max(1, sum(total[t] for t in types)),
        **scoped,
        "samples": samples or [],
    }


_ENTITY_WORDS = re.compile(
    r"\b(red|green|blue|yellow|white|purple|circles?|squares?|triangles?|diamonds?|cross(es)?)\b")


def question_template(question: str) -> str:
    """The question with its colour and shape words blanked: what a model that ignores the video can condition on."""
    return _ENTITY_WORDS.sub("X", question)


def blind_baseline(examples: Sequence[VideoExample], *, world=None, base_seed: int = 0, train_videos: int = 3000,
                   questions_per_video: int = 6) -> dict:
    """Accuracy of answering from the question alone: the most frequent train answer of its template.

    It is the floor a model reaches without using the video; accuracy above it is read from the caches.
    """
    counts: dict[str, Counter] = defaultdict(Counter)
    by_type: dict[str, Counter] = defaultdict(Counter)
    for index in range(train_videos):  # ground truth only, no rendering
        _, qas = make_example("train", index, base_seed, world, questions_per_video, render=False)
        for qa in qas:
            counts[question_template(qa.question)][qa.answer] += 1
            by_type[qa.type][qa.answer] += 1
    correct: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    for example in examples:
        for qa in example.qas:
            seen = counts.get(question_template(qa.question)) or by_type[qa.type]
            total[qa.type] += 1
            correct[qa.type] += seen.most_common(1)[0][0] == qa.answer
    return summarise(correct, total)
