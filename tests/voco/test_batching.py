"""Batched answering (voco/batching.py): requests about different videos, with different segment counts, question
lengths and budgets, joining the running batch at different steps, answer exactly as each does alone through
`AnswerSession`:

- with row tiles (`row_tile`), bitwise: every step's logits of every request equal its logits alone;
- without them (the fast default), token for token, and logits within BLAS rounding (the only difference: the
  linear layers' kernel depends on how many rows share the call; attention is per request and exact).

Each request stops on its own (end token, max_new_tokens, stop string), streams its own pieces and is cancelled
alone; the engine's line reports each request's place and refuses past its bound.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from voco.batching import (
    DONE,
    Batch,
    Cancelled,
    Job,
    Waiting,
    decode_alone,
    forward_rows,
)
from voco.data.needle import NEEDLE, draw_segment
from voco.engine import AnswerEngine, EngineBusy, EngineConfig
from voco.generation import GenerationConfig, Row
from voco.session import AnswerJob, AnswerPiece, AnswerSession
from voco.tiny import tiny_config, tiny_model

QUESTIONS = ["what color is the circle?", "what shape appears first?",
             "is there a red circle anywhere in this video? answer yes or no, then say where it is", "what happens?",
             "which colour is the square?", "what is the last shape, and what colour is it, and where does it go?"]
OBJECTS = [None, NEEDLE, ("square", "blue"), ("triangle", "green")]
ROUNDING = 1e-3
"""How far fast-mode logits may move with the batch (measured: ~4e-6 synthetic, ~3e-5 default)."""


class Recorded(AnswerJob):
    """An answer that keeps the logits of every step it takes a token from."""

    def __init__(self, *args):
        super().__init__(*args)
        self.logits: list[torch.Tensor] = []
        self.events: list[object] = []

    def take(self, logits):
        self.logits.append(logits.clone())
        return super().take(logits)


def _job(model, caches, question: str, **kwargs) -> Recorded:
    return Recorded(AnswerSession(model, caches), question, None, GenerationConfig(**kwargs))


def _videos(model, counts=(2, 5, 9)) -> list[list]:
    """One video of each length (segments drawn from the synthetic world's shapes)."""
    videos = []
    for seed, count in enumerate(counts):
        rng = np.random.default_rng(seed)
        frames = [draw_segment(rng, model.voco.frames_per_segment, 96, OBJECTS[rng.integers(len(OBJECTS))])
                  for _ in range(count)]
        videos.append(model.compress(frames))
    return videos


def _requests(videos, new_tokens=(8, 12, 16, 20, 24, 28), joins=(0, 0, 1, 3, 5, 8)) -> list[tuple]:
    """(caches, question, generation kwargs, step it joins at) for six requests over the videos."""
    out = []
    for i, (tokens, join) in enumerate(zip(new_tokens, joins, strict=True)):
        kwargs = {"max_new_tokens": tokens}
        if i == 3:
            kwargs["history"] = [("what is in the video?", "shapes on a background")]  # a longer prompt
        out.append((videos[i % len(videos)], QUESTIONS[i], kwargs, join))
    return out


def _alone(model, requests, row_tile=None) -> list[Recorded]:
    jobs = []
    for caches, question, kwargs, _ in requests:
        job = _job(model, caches, question, **kwargs)
        job.events = list(decode_alone(model, job, row_tile))
        jobs.append(job)
    return jobs


def _batched(model, requests, row_tile=None, cancel: dict[int, int] | None = None) -> tuple[list[Recorded], list]:
    """Drive one Batch: request i joins before step `join_i`; `cancel`: {request: step} cancels it there.
    -> the jobs and the batch size at every step."""
    jobs = [_job(model, caches, question, **kwargs) for caches, question, kwargs, _ in requests]
    for job in jobs:
        job.out = job.events.append
    batch, sizes, step = Batch(model, row_tile), [], 0
    last_join = max(join for *_, join in requests)
    while step <= last_join or len(batch):
        for job, (*_, join) in zip(jobs, requests, strict=True):
            if join == step:
                batch.add(job)
        for index, at in (cancel or {}).items():
            if at == step:
                jobs[index].cancel()
        sizes.append(len(batch))
        batch.step()
        step += 1
    return jobs, sizes


def _text(job) -> str:
    return "".join(e.text for e in job.events if isinstance(e, AnswerPiece))


def _assert_same_answers(model, alone, batched, *, bitwise: bool) -> None:
    for i, (a, b) in enumerate(zip(alone, batched, strict=True)):
        assert b.ids == a.ids, f"request {i}: batched tokens {b.ids} != alone {a.ids}"
        assert _text(b) == _text(a) and b.events[-1] is DONE
        assert b.events[-2].stats.tokens == a.events[-1].stats.tokens == len(a.ids)
        assert len(b.logits) == len(a.logits)
        for step, (x, y) in enumerate(zip(a.logits, b.logits, strict=True)):
            if bitwise:
                assert torch.equal(x, y), f"request {i} step {step}: max |diff| {(x - y).abs().max():.3g}"
            else:
                assert float((x - y).abs().max()) < ROUNDING


@pytest.fixture(scope="module")
def synthetic():
    from voco import VoCoModel

    return VoCoModel.from_pretrained("synthetic").eval()


@pytest.fixture(scope="module")
def talkative():
    """The synthetic model that never ends an answer (its end token's output row is zero): long answers, so
    requests join and leave while others decode."""
    from voco import VoCoModel

    model = VoCoModel.from_pretrained("synthetic").eval()
    with torch.no_grad():
        model.lm.lm_head.weight[model.tokenizer.eos_token_id] = 0.0
    return model


@pytest.fixture(scope="module")
def videos(synthetic, talkative):
    """{model: its three videos' caches}."""
    with torch.inference_mode():
        return {id(model): _videos(model) for model in (synthetic, talkative)}


# ---- equality with answering alone ---------------------------------------------------------------------------

@torch.inference_mode()
@pytest.mark.parametrize("row_tile", [4, None], ids=["row-tiles-bitwise", "fast-tokens"])
def test_batched_answers_equal_answers_alone_on_the_synthetic_model(synthetic, talkative, videos, row_tile):
    for model in (synthetic, talkative):
        requests = _requests(videos[id(model)])
        alone = _alone(model, requests, row_tile)
        batched, sizes = _batched(model, requests, row_tile)
        _assert_same_answers(model, alone, batched, bitwise=row_tile is not None)
        if row_tile is None:  # `_alone` decodes as AnswerSession.stream does; the public path says the same
            assert [_text(j).strip() for j in alone] == [
                AnswerSession(model, caches).answer(q, **kw)[0] for caches, q, kw, _ in requests]
    assert max(sizes) >= 5 and sizes[:3] == [2, 3, 3]  # the talkative batch: joined at steps 0, 0, 1, ...
    assert [len(j.ids) for j in alone] == [8, 12, 16, 20, 24, 28]  # each ran to its own budget


@pytest.mark.parametrize("lm", ["llama", "qwen2"])
def test_batched_answers_equal_answers_alone_on_tiny_families(lm, make_segments):
    """Random tiny decoders (Qwen2: grouped KV heads, no <bos>), both modes, sampled requests too (each its own
    seeded generator: equal logits draw equal tokens)."""
    model = tiny_model(lm, k=2, seed=3)  # made outside inference mode: its weights keep version counters
    videos = [model.compress(make_segments(n, seed=n)) for n in (1, 4, 7)]
    requests = _requests(videos, new_tokens=(6, 9, 12, 5, 14, 7), joins=(0, 2, 2, 3, 4, 9))
    requests[4][2].update(temperature=0.8, top_p=0.9, seed=11)
    for row_tile in (3, None):
        alone = _alone(model, requests, row_tile)
        batched, _ = _batched(model, requests, row_tile)
        if row_tile is None:  # sampling reads exact probabilities: only the greedy requests are compared
            alone, batched = alone[:4] + alone[5:], batched[:4] + batched[5:]
        _assert_same_answers(model, alone, batched, bitwise=row_tile is not None)


def test_ragged_atp_caches_batch_exactly(make_segments):
    """ATP caches (per-layer lengths, a key bias per request): each row attends with its own bias."""
    model = tiny_model(config=tiny_config("llama", layers=3), compressor="atp", k=30, seed=1)
    videos = [model.compress(make_segments(n, seed=n)) for n in (2, 3)]
    requests = _requests(videos, new_tokens=(5, 7, 9, 4, 6, 8), joins=(0, 0, 1, 2, 2, 4))
    alone = _alone(model, requests, row_tile=2)
    batched, _ = _batched(model, requests, row_tile=2)
    _assert_same_answers(model, alone, batched, bitwise=True)


@pytest.mark.slow
def test_batched_answers_equal_answers_alone_on_the_default_model():
    """The bundled default (time labels between caches): bitwise with row tiles, token for token without."""
    from voco import VoCoModel

    model = VoCoModel.from_pretrained("default").eval()
    with torch.inference_mode():
        requests = _requests(_videos(model, counts=(3, 6, 12)), joins=(0, 0, 1, 2, 4, 6))
        for row_tile in (4, None):
            alone = _alone(model, requests, row_tile)
            batched, sizes = _batched(model, requests, row_tile)
            _assert_same_answers(model, alone, batched, bitwise=row_tile is not None)
            assert max(sizes) >= 3
        assert [_text(j).strip() for j in alone] == [
            AnswerSession(model, caches).answer(q, **kw)[0] for caches, q, kw, _ in requests]
        assert all(_text(j).strip() for j in alone)  # it answers in words


@torch.inference_mode()
def test_one_request_runs_the_path_answering_alone_takes(talkative, videos):
    """A batch of one is `forward_tokens`: the same bits as the plain single-request loop (generate_tokens)."""
    from voco.generation import generate_tokens, place

    caches = videos[id(talkative)][0]
    cfg = GenerationConfig(max_new_tokens=6)
    plain = list(generate_tokens(talkative, QUESTIONS[0], caches, cfg))
    row = place(talkative, QUESTIONS[0], caches, cfg)
    ids = []
    for _ in range(6):
        forward_rows(talkative, [row])
        ids.append(int(row.logits.argmax()))
        row.pending = ids[-1:]
    assert ids == plain


# ---- each request on its own --------------------------------------------------------------------------------

@torch.inference_mode()
def test_each_request_stops_on_its_own_stop_string_and_budget(talkative, videos):
    videos = videos[id(talkative)]
    requests = _requests(videos, new_tokens=(30, 30, 3, 30, 30, 0))
    first = _alone(talkative, requests[:1])[0]
    words = _text(first).split()
    requests[1][2]["stop"] = [words[1]]  # request 1 stops where its answer would say this word
    requests[1] = (videos[0], QUESTIONS[0], requests[1][2], requests[1][3])
    alone = _alone(talkative, requests)
    batched, _ = _batched(talkative, requests)
    _assert_same_answers(talkative, alone, batched, bitwise=False)
    assert len(batched[1].ids) < 30 and words[1] not in _text(batched[1])
    assert [len(j.ids) for j in batched][2:] == [3, 30, 30, 0]


@torch.inference_mode()
def test_a_cancelled_request_leaves_at_the_next_step_and_the_others_are_unchanged(talkative, videos):
    requests = _requests(videos[id(talkative)])
    alone = _alone(talkative, requests)
    batched, sizes = _batched(talkative, requests, cancel={1: 4})
    assert isinstance(batched[1].events[-2], Cancelled) and batched[1].events[-1] is DONE
    assert len(batched[1].ids) == 3 and batched[1].ids == alone[1].ids[:3]  # its question ran at step 0
    assert sizes[4] == 4 and sizes[5] == 4  # request 1 left at step 4, request 4 joined at step 5
    _assert_same_answers(talkative, alone[:1] + alone[2:], batched[:1] + batched[2:], bitwise=False)


def test_a_failing_placement_ends_only_its_own_request(talkative, videos):
    from voco.generation import ContextTooLong

    videos = videos[id(talkative)]
    requests = _requests(videos)
    too_long = (videos[2], "why? " * 3000, {"max_new_tokens": 4}, 1)  # a question past the model's positions
    alone = _alone(talkative, requests)
    with torch.inference_mode():
        batched, _ = _batched(talkative, [*requests, too_long])
    assert isinstance(batched[-1].events[0], ContextTooLong) and batched[-1].events[-1] is DONE
    _assert_same_answers(talkative, alone, batched[:-1], bitwise=False)


# ---- the engine: a line in front of the batch ---------------------------------------------------------------

class Scripted(Job):
    """A job with no model: `gate` holds its placing; it answers `tokens` tokens (one per step)."""

    def __init__(self, tokens: int = 2, gate: threading.Event | None = None):
        super().__init__()
        self.gate, self.tokens, self.started = gate, tokens, threading.Event()

    def place(self) -> Row:
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        return Row(None, 0, [0])

    def take(self, logits):
        if self.tokens == 0:
            return None
        self.tokens -= 1
        self.out(AnswerPiece("x"))
        return None if self.tokens == 0 else 0

    def finish(self) -> None:
        self.out(AnswerPiece("", stats="done"))


def _no_model(model, rows, tile) -> None:
    for row in rows:
        row.logits, row.pending = torch.zeros(1), []


def test_the_line_reports_places_and_refuses_past_its_bound(monkeypatch):
    monkeypatch.setattr("voco.batching.forward_rows", _no_model)
    engine = AnswerEngine(None, EngineConfig(max_batch=1, max_queue=2))  # no model: scripted jobs
    gate = threading.Event()
    first = Scripted(gate=gate)
    running = engine.submit(first)
    assert first.started.wait(10)  # decoding: the batch is full
    second, third = engine.submit(Scripted()), engine.submit(Scripted())
    with pytest.raises(EngineBusy, match="busy: 1 questions are being answered and 2 are waiting; try again"):
        engine.submit(Scripted())
    assert (second.position, third.position) == (1, 2) and engine.load() == (1, 2)
    second.cancel()  # withdrawn while waiting: the one behind moves up
    assert third.position == 1
    gate.set()
    events = list(third)
    assert events[:2] == [Waiting(2), Waiting(1)] and Waiting(0) in events
    assert [e.text for e in events if isinstance(e, AnswerPiece)] == ["x", "x", ""]
    assert [e for e in running if isinstance(e, AnswerPiece)][-1].stats == "done"
    with pytest.raises(Cancelled):
        list(second)
    assert engine.wait_idle(10) and engine.load() == (0, 0)  # no work: the worker thread ends


def test_a_reader_that_stops_early_frees_its_slot(monkeypatch):
    monkeypatch.setattr("voco.batching.forward_rows", _no_model)
    engine = AnswerEngine(None, EngineConfig(max_batch=1, max_queue=0))
    ticket = engine.submit(Scripted(tokens=10_000))
    for event in ticket:
        if isinstance(event, AnswerPiece):
            break  # the reader went away (a closed connection): the generator closes and cancels
    assert ticket.job.cancelled.wait(10)
    deadline = time.monotonic() + 10
    while engine.load() != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.submit(Scripted()) is not None  # its place is free again


@torch.inference_mode()
def test_the_engine_answers_concurrent_callers_as_they_are_answered_alone(talkative, videos):
    """Callers in their own threads, submitting at staggered times; row tiles: every answer bitwise its alone one."""
    requests = _requests(videos[id(talkative)], new_tokens=(4, 6, 8, 5, 7, 9))
    alone = [_text(job) for job in _alone(talkative, requests, row_tile=4)]
    engine = AnswerEngine(talkative, EngineConfig(max_batch=4, max_queue=8, row_tile=4))
    texts: dict[int, str] = {}
    places: dict[int, list[int]] = {}

    def ask(i: int) -> None:
        caches, question, kwargs, join = requests[i]
        time.sleep(0.02 * join)
        ticket = engine.submit(AnswerSession(talkative, caches, row_tile=4).job(question, **kwargs))
        events = list(ticket)
        texts[i] = "".join(e.text for e in events if isinstance(e, AnswerPiece))
        places[i] = [e.position for e in events if isinstance(e, Waiting)]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [texts[i] for i in range(len(requests))] == alone
    assert all(p[-1] == 0 for p in places.values())  # every request waited its turn, then joined the batch
