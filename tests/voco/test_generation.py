"""Decoding from caches: exact at every step, sampling, stop strings, scoring."""

import warnings

import pytest
import torch

from voco.generation import ContextTooLong, GenerationConfig, StopText, generate_tokens
from voco.reference import design_segments, reference_greedy, single_pass_logits
from voco.tiny import tiny_model

QUESTION = "which shape appears first?"


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama", k=2, seed=3)


def _never_eos(model):
    """Random tiny models may emit EOS early; a zero output row gives EOS logit 0, below the max."""
    with torch.no_grad():
        model.lm.lm_head.weight[model.tokenizer.eos_token_id] = 0.0


@pytest.mark.parametrize("lm", ["llama", "qwen2"])
def test_greedy_32_tokens_equal_repeated_single_pass(lm, make_segments):
    model = tiny_model(lm, k=2, seed=5)
    _never_eos(model)
    segments = make_segments(4)
    caches = model.compress(segments)
    ours = list(generate_tokens(model, QUESTION, caches, GenerationConfig(max_new_tokens=32)))
    ref = reference_greedy(model, QUESTION, segments, max_new_tokens=32)
    assert len(ours) == 32
    assert ours == ref


def test_answer_text_is_the_decoded_greedy_tokens(model, make_segments):
    segments = make_segments(3)
    caches = model.compress(segments)
    ids = list(generate_tokens(model, QUESTION, caches, GenerationConfig(max_new_tokens=16)))
    text = model.tokenizer.decode(ids, skip_special_tokens=True)
    streamed = "".join(model.stream(QUESTION, caches, max_new_tokens=16, stop=["\x00never"]))
    cut = min([i for i in (text.find("</s>"), text.find("USER:")) if i >= 0], default=len(text))
    assert streamed == text[:cut]
    assert model.answer(QUESTION, caches, max_new_tokens=16) == streamed.strip()


def test_sampling_is_seeded_and_top_p_tiny_is_greedy(model, make_segments):
    caches = model.compress(make_segments(2))
    a = model.answer(QUESTION, caches, max_new_tokens=12, temperature=1.5, seed=7)
    b = model.answer(QUESTION, caches, max_new_tokens=12, temperature=1.5, seed=7)
    samples = {model.answer(QUESTION, caches, max_new_tokens=12, temperature=1.5, seed=s) for s in range(6)}
    assert a == b
    assert len(samples) > 1
    greedy = model.answer(QUESTION, caches, max_new_tokens=12)
    assert model.answer(QUESTION, caches, max_new_tokens=12, temperature=1.0, top_p=1e-6, seed=1) == greedy


def test_max_new_tokens_zero_and_bad_settings(model, make_segments):
    caches = model.compress(make_segments(1))
    assert model.answer(QUESTION, caches, max_new_tokens=0) == ""
    with pytest.raises(ValueError, match="top_p"):
        model.answer(QUESTION, caches, top_p=0)
    with pytest.raises(ValueError, match="temperature"):
        model.answer(QUESTION, caches, temperature=-1)


def test_stop_text_cuts_and_holds_back_partial_stops(model):
    tok = model.tokenizer
    stopper = StopText(tok, ["USER:"])
    ids = tok("red circle US", add_special_tokens=False)["input_ids"]
    assert stopper.feed(ids) == "red circle "  # "US" may begin "USER:": held back
    more = tok("red circle USER: and more", add_special_tokens=False)["input_ids"]
    assert stopper.feed(more) == ""
    assert stopper.stopped
    final = StopText(tok, ["USER:"])
    assert final.feed(tok("red US", add_special_tokens=False)["input_ids"], final=True) == "red US"


def test_stop_string_ends_the_stream(make_segments):
    model = tiny_model("llama", k=2, seed=3)
    _never_eos(model)
    caches = model.compress(make_segments(2))
    full = model.answer(QUESTION, caches, max_new_tokens=20)
    assert len(full) > 4
    stop = full[2:4]
    cut = model.answer(QUESTION, caches, max_new_tokens=20, stop=[stop])
    assert cut == full[: full.find(stop)].strip()


def test_score_matches_reference_log_likelihood(model, make_segments):
    segments = make_segments(3)
    caches = model.compress(segments)
    candidates = ["red", "blue circle", "left"]
    scores = model.score(QUESTION, caches, candidates)
    prefix, suffix = model.prompt_ids(QUESTION)
    with torch.no_grad():
        rows = design_segments(model, segments)
    for cand, got in zip(candidates, scores, strict=True):
        ids = model.answer_ids(cand)
        with torch.no_grad():
            logits = single_pass_logits(model, prefix, rows, suffix + ids)
        logp = torch.log_softmax(logits[len(suffix) - 1 : -1], -1).gather(-1, torch.tensor(ids)[:, None]).sum()
        assert got == pytest.approx(float(logp), abs=1e-4)
    # scoring leaves the caller's caches untouched and is repeatable
    assert model.score(QUESTION, caches, candidates) == pytest.approx(scores, abs=1e-6)


def test_answering_past_the_position_budget_fails_loudly(make_segments):
    """RoPE runs past max_position_embeddings without complaint (answers just degrade): the library refuses."""
    model = tiny_model("llama", k=2, seed=3)
    caches = model.compress(make_segments(4))
    prefix, suffix = model.prompt_ids(QUESTION)
    new = 8
    budget = len(prefix) + len(suffix) + new + 3 * model.k  # room for 3 of the 4 segments
    model.lm.config.max_position_embeddings = budget
    needed = budget + model.k
    for call in (lambda: model.answer(QUESTION, caches, max_new_tokens=new),
                 lambda: list(generate_tokens(model, QUESTION, caches, GenerationConfig(max_new_tokens=new)))):
        want = rf"needs {needed} positions .* budget is {budget} .*at most 3 segments"
        with pytest.raises(ContextTooLong, match=want):
            call()
    model.answer(QUESTION, caches[:3], max_new_tokens=new)  # what the message suggests fits
    long_candidate = "red " * (new + 2 * model.k)  # more tokens than the answer room left
    with pytest.raises(ContextTooLong, match="budget is"):
        model.score(QUESTION, caches[:3], ["red", long_candidate])
    assert len(model.score(QUESTION, caches[:3], ["red", "blue"])) == 2


def test_answering_emits_no_warning(model, make_segments):
    """transformers 5.x deprecates past_key_values= (removed in 5.40) with a FutureWarning on every answer."""
    caches = model.compress(make_segments(2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.answer(QUESTION, caches, max_new_tokens=4)
        model.score(QUESTION, caches, ["red", "blue circle"])
