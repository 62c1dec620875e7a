"""The one answering session: exact answers, segment selection, the context check, stats and timestamps."""

import pytest
import torch

from voco.generation import ContextTooLong
from voco.reference import reference_greedy
from voco.session import (
    AnswerSession,
    RetrievedSegments,
    SegmentSpan,
    Timeline,
    UniformSubset,
    make_selector,
    uniform_indices,
)
from voco.tiny import tiny_model

QUESTION = "which shape appears first?"


def _talkative(seed: int = 5):
    """A random tiny model that never emits EOS (its EOS output row is zero, below the max logit)."""
    model = tiny_model("llama", k=2, seed=seed)
    with torch.no_grad():
        model.lm.lm_head.weight[model.tokenizer.eos_token_id] = 0.0
    return model


def _reference_text(model, segments, new_tokens: int) -> str:
    """The single-pass reference's greedy tokens as answer text (cut at the prompt's stop strings)."""
    text = model.tokenizer.decode(reference_greedy(model, QUESTION, segments, new_tokens), skip_special_tokens=True)
    cuts = [i for i in (text.find("</s>"), text.find("USER:")) if i >= 0]
    return text[: min(cuts, default=len(text))].strip()


def _fit_segments(model, count: int, new_tokens: int) -> None:
    """Shrink the model's position budget to exactly `count` segments beside this question."""
    prefix, suffix = model.prompt_ids(QUESTION)
    model.lm.config.max_position_embeddings = len(prefix) + len(suffix) + new_tokens + count * model.k


def test_greedy_answer_equals_model_answer_and_single_pass_reference(make_segments):
    model = _talkative()
    segments = make_segments(4)
    caches = model.compress(segments)
    text, stats = AnswerSession(model, caches).answer(QUESTION, max_new_tokens=24)
    assert text and stats.tokens == 24
    assert text == model.answer(QUESTION, caches, max_new_tokens=24)
    assert text == _reference_text(model, segments, 24)
    streamed = [p.text for p in AnswerSession(model, caches).stream(QUESTION, max_new_tokens=24)]
    assert "".join(streamed).strip() == text and len(streamed) > 2  # streamed in pieces


def test_a_uniform_subset_is_answered_exactly_as_those_segments_alone(make_segments):
    """Caches are position-free: the selected segments, in time order, are a valid timeline of their own."""
    model = _talkative()
    segments = make_segments(7)
    caches = model.compress(segments)
    _fit_segments(model, 3, new_tokens=12)
    text, stats = AnswerSession(model, caches, "uniform").answer(QUESTION, max_new_tokens=12)
    used = [s.index for s in stats.segments_used]
    assert used == [0, 3, 6] and stats.subset and stats.selection == "uniform"
    assert text == _reference_text(model, [segments[i] for i in used], 12)
    with pytest.raises(ContextTooLong, match="answer from at most 3 segments"):
        AnswerSession(model, caches, "all").answer(QUESTION, max_new_tokens=12)  # "all" never drops segments


def test_no_room_for_even_one_segment_fails_loudly(make_segments):
    model = tiny_model("llama", k=2, seed=3)
    caches = model.compress(make_segments(3))
    _fit_segments(model, 0, new_tokens=8)
    with pytest.raises(ContextTooLong, match="answer from at most 0 segments"):
        AnswerSession(model, caches, "uniform").answer(QUESTION, max_new_tokens=8)


def test_stats_carry_the_used_segments_times(make_segments):
    model = _talkative()
    caches = model.compress(make_segments(5))
    times = [(2.0 * i, 2.0 * i + 2.0) for i in range(5)]
    _fit_segments(model, 2, new_tokens=6)
    _, stats = AnswerSession(model, Timeline.of(caches, times), "uniform").answer(QUESTION, max_new_tokens=6)
    assert stats.segments_used == (SegmentSpan(0, 0.0, 2.0), SegmentSpan(4, 8.0, 10.0))
    assert stats.segments_total == 5 and stats.cache_tokens == 2 * model.k
    assert stats.ttft_ms > 0 and stats.tokens == 6 and stats.tokens_per_s > 0
    assert stats.segments_used[1].to_dict() == {"index": 4, "start_s": 8.0, "end_s": 10.0}
    with pytest.raises(ValueError, match="5 caches but 4 segment spans"):
        Timeline.of(caches, times[:4])


def test_uniform_and_all_selection():
    uniform, everything = make_selector("uniform"), make_selector("all")
    assert uniform.select(10, 20) == list(range(10)) == everything.select(10, 3)
    picked = uniform.select(100, 7)
    assert picked[0] == 0 and picked[-1] == 99 and len(picked) == 7 == len(set(picked))
    assert uniform_indices(5, 0) == []
    assert isinstance(uniform, UniformSubset)
    with pytest.raises(ValueError, match="unknown segment selection 'best'.*all, uniform, retrieved"):
        make_selector("best")


def test_retrieved_selection_keeps_the_needle_its_neighbours_and_a_sketch():
    scores = [0.0] * 100
    scores[37], scores[80] = 5.0, 3.0
    picked = RetrievedSegments(neighbours=1, sketch_share=0.25).select(100, 12, scores)
    assert picked == sorted(picked) and len(picked) == 12
    assert {36, 37, 38, 79, 80, 81} <= set(picked)
    assert {0, 99} <= set(picked)  # the uniform sketch spans the video
    assert RetrievedSegments().select(8, 20, [1.0] * 8) == list(range(8))  # all fit: all used
    assert len(RetrievedSegments(max_segments=3).select(8, 20, list(range(8)))) == 3  # retrieve always
    assert RetrievedSegments(neighbours=0, sketch_share=0).select(6, 2, [0, 9, 0, 0, 8, 0]) == [1, 4]
    with pytest.raises(ValueError, match="needs one relevance score per segment"):
        make_selector("retrieved").select(10, 4)
    with pytest.raises(ValueError, match="sketch_share"):
        make_selector("retrieved", sketch_share=1.0)


def test_retrieved_session_answers_from_the_scored_segments(make_segments):
    model = _talkative()
    segments = make_segments(6)
    caches = model.compress(segments)
    _fit_segments(model, 2, new_tokens=8)
    session = AnswerSession(model, caches, RetrievedSegments(neighbours=0, sketch_share=0))
    text, stats = session.answer(QUESTION, scores=[0, 0, 7, 0, 0, 9], max_new_tokens=8)
    assert [s.index for s in stats.segments_used] == [2, 5] and stats.selection == "retrieved"
    assert text == _reference_text(model, [segments[2], segments[5]], 8)


def test_answer_segments_caps_what_one_answer_reads(make_segments):
    """A model trained to read at most N segments answers a longer video from N (voco.json answer_segments)."""
    model = tiny_model("llama", k=2, seed=5)
    caches = model.compress(make_segments(6))
    times = [(2.0 * i, 2.0 * i + 2) for i in range(6)]
    model.voco.answer_segments = 3
    try:
        _, stats = AnswerSession(model, Timeline.of(caches, times), UniformSubset()).answer(QUESTION, max_new_tokens=2)
        assert [s.index for s in stats.segments_used] == [0, 2, 5] and stats.subset
        _, stats = AnswerSession(model, Timeline.of(caches[:3], times[:3]), "uniform").answer(QUESTION,
                                                                                              max_new_tokens=2)
        assert not stats.subset
    finally:
        model.voco.answer_segments = None
