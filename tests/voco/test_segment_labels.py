"""Segment times on the question-time timeline: [prefix][cache_1][label_1] .. [cache_T][label_T][question].

The two-stage path (caches placed by RoPE rotation, one masked label pass) against the single-pass reference
written from the rule alone (voco/reference.py), decoding, the context budget, the config and the memo."""

import pytest
import torch

from voco import timeline
from voco.config import PromptTemplate, VoCoConfig
from voco.generation import ContextTooLong, GenerationConfig, generate_tokens
from voco.identity import OUTSIDE_IDENTITY
from voco.reference import (
    design_segments,
    labelled_mask_and_positions,
    reference_greedy,
    reference_labels,
    reference_logits,
    single_pass_logits,
)
from voco.session import AnswerSession, Timeline
from voco.timeline import clock
from voco.tiny import tiny_model

QUESTION = "when does the red circle appear?"
TOL = 1e-5
LABEL = {"segment_label": " {start}"}


def _labelled(lm="llama", compressor="voco", k=2, seed=0, template=" {start}"):
    model = tiny_model(lm, compressor=compressor, k=k, seed=seed, prompt={"segment_label": template})
    if model.compressor.module is not None:  # trained weights are not the identity / zero they start as
        torch.manual_seed(seed)
        for p in model.compressor.module.parameters():
            torch.nn.init.normal_(p, std=0.2)
    return model


def _talkative(model):
    with torch.no_grad():
        model.lm.lm_head.weight[model.tokenizer.eos_token_id] = 0.0
    return model


def _starts(T: int, kind: str):
    """None (index * segment_seconds), or a retrieved subset's own starts: gaps, and times past an hour."""
    if kind == "index":
        return None
    return [0.0, 75.3, 3725.0, 3727.9, 3999.0, 7261.0, 36000.0, 36002.0][:T] if T > 1 else [3725.0]


@pytest.mark.parametrize(
    "seconds,text",
    [(0, "0:00"), (0.999, "0:00"), (9.5, "0:09"), (59.99, "0:59"), (60, "1:00"), (75.3, "1:15"),
     (599, "9:59"), (3599.9, "59:59"), (3600, "1:00:00"), (3725, "1:02:05"), (36000, "10:00:00"),
     (3 * 0.1 * 10, "0:03")])
def test_clock(seconds, text):
    assert clock(seconds) == text


def test_clock_refuses_bad_times():
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite number of seconds"):
            clock(bad)


def test_config_field_is_optional_outside_identity_and_checked():
    plain = VoCoConfig()
    assert "segment_label" not in plain.to_dict()["prompt"]  # old voco.json files stay byte-identical
    assert VoCoConfig.from_dict(plain.to_dict()).prompt.segment_label is None
    labelled = VoCoConfig(prompt=LABEL)
    assert labelled.to_dict()["prompt"]["segment_label"] == " {start}"
    assert VoCoConfig.from_dict(labelled.to_dict()) == labelled
    assert "prompt" in OUTSIDE_IDENTITY
    for bad in ("no field", " {end}", " {start} {0}"):
        with pytest.raises(ValueError, match="segment_label must be a format string"):
            PromptTemplate(segment_label=bad)
    assert tiny_model(k=2, prompt=LABEL).fingerprint == tiny_model(k=2).fingerprint  # caches stay valid


def test_ragged_compressor_refuses_labels():
    with pytest.raises(ValueError, match=r"segment_label needs a dense compressor .*'atp' compressor"):
        VoCoConfig(compressor="atp", k=30, prompt=LABEL)
    VoCoConfig(compressor="atp+voco", k=1, prompt=LABEL)  # dense: fine


def test_reference_mask_follows_the_label_rule():
    """[prefix 2][seg A: 4 tokens, kept 2..3][label 2][seg B: 2 tokens, kept 1][label 1][tail 2]."""
    P, Q = 2, 2
    allowed, positions = labelled_mask_and_positions(P, [(4, range(2, 4)), (2, range(1, 2))], [2, 1], Q)
    a_kept, a_label, b_kept, b_label, tail = [4, 5], [6, 7], [9], [10], [11, 12]
    prefix = {0, 1}
    want = {6: prefix | {4, 5, 6}, 7: prefix | {4, 5, 6, 7}, 10: prefix | {4, 5, 6, 7, 9, 10},
            11: prefix | {4, 5, 6, 7, 9, 10, 11}, 12: prefix | {4, 5, 6, 7, 9, 10, 11, 12}}
    for q, keys in want.items():
        assert set(allowed[q].nonzero().flatten().tolist()) == keys, q
    assert set(allowed[3].nonzero().flatten().tolist()) == {2, 3}  # a segment token sees only its segment
    # consecutive positions over prefix, kept tokens and labels; segment rows shifted so kept tokens land there
    assert positions[:P].tolist() == [0, 1]
    assert positions[a_kept].tolist() == [2, 3] and positions[a_label].tolist() == [4, 5]
    assert positions[b_kept].tolist() == [6] and positions[b_label].tolist() == [7]
    assert positions[tail].tolist() == [8, 9]
    assert positions[2:6].tolist() == [0, 1, 2, 3] and positions[8:10].tolist() == [5, 6]


def test_placement_and_label_mask_of_the_two_stage_path():
    p = timeline.place(3, [2, 2, 2], [[7, 8], [9], [5, 6, 4]])
    assert p.cache_targets == [3, 7, 10] and p.label_positions == [5, 6, 9, 12, 13, 14] and p.end == 15
    allowed = timeline.label_allowed(p, cache_slots=8, label_slots=7)  # 2 cache pads, 1 label pad
    caches = allowed[:, 3:11].sum(1).tolist()
    assert caches == [2, 2, 4, 6, 6, 6, 0]
    assert allowed[:6, 11:17].equal(torch.ones(6, 6, dtype=torch.bool).tril())
    assert allowed[:, :3].all() and not allowed[6, 3:].any()


@pytest.mark.parametrize("compressor,k,T", [(c, k, T) for c in ("voco", "pool") for k in (1, 2) for T in (1, 3, 8)]
                         + [("qformer", 2, 3)])
def test_two_stage_with_labels_matches_reference(compressor, k, T, make_segments):
    model = _labelled(compressor=compressor, k=k, seed=T + k)
    segments = make_segments(T, seed=T)
    caches = model.compress(segments, batch_size=3)
    for kind in ("index", "subset"):
        starts = _starts(T, kind)
        two_stage = model.next_token_logits(QUESTION, caches, starts=starts)
        reference = reference_logits(model, QUESTION, segments, starts=starts)
        assert float((two_stage - reference).abs().max()) < TOL, kind


def test_qwen2_without_bos_and_a_longer_label(make_segments):
    model = _labelled("qwen2", k=2, seed=4, template="\nsegment at {start}:")
    segments = make_segments(4, seed=4)
    starts = [12.0, 14.0, 3600.0, 3725.0]
    two_stage = model.next_token_logits(QUESTION, model.compress(segments), starts=starts)
    assert float((two_stage - reference_logits(model, QUESTION, segments, starts=starts)).abs().max()) < TOL


def test_labels_change_the_answer_and_are_read(make_segments):
    """The labels are on the timeline: other times give other logits; no labels give the old ones."""
    model = _labelled(k=2, seed=1)
    segments = make_segments(3, seed=1)
    caches = model.compress(segments)
    a = model.next_token_logits(QUESTION, caches)
    b = model.next_token_logits(QUESTION, caches, starts=[0.0, 600.0, 3725.0])
    assert float((a - b).abs().max()) > 100 * TOL
    plain = tiny_model(k=2, seed=1)
    assert float((plain.next_token_logits(QUESTION, plain.compress(segments))
                  - reference_logits(plain, QUESTION, segments)).abs().max()) < TOL


def _labels_see_every_cache(p, cache_slots, label_slots):
    allowed = _right_label_allowed(p, cache_slots, label_slots)
    allowed[: len(p.label_positions), p.prefix : p.prefix + sum(p.kept)] = True
    return allowed


def _labels_take_no_positions(prefix_len, kept, labels):
    right = _right_place(prefix_len, kept, labels)
    targets = [prefix_len + sum(kept[:t]) for t in range(len(kept))]  # caches as if labels took no room
    return timeline.Placement(right.prefix, right.kept, right.labels, targets, right.label_positions,
                              right.label_segments, right.end)


_right_label_allowed, _right_place = timeline.label_allowed, timeline.place


@pytest.mark.parametrize("bug", [("label_allowed", _labels_see_every_cache), ("place", _labels_take_no_positions)])
def test_parity_catches_a_bug_in_the_label_layout(bug, make_segments, monkeypatch):
    model = _labelled(k=2, seed=2)
    segments = make_segments(3, seed=2)
    caches = model.compress(segments)
    reference = reference_logits(model, QUESTION, segments)
    assert float((model.next_token_logits(QUESTION, caches) - reference).abs().max()) < TOL
    monkeypatch.setattr(timeline, *bug)
    model._timeline_memo.clear()
    # a position error moves keys by a few positions only: a small change, still far above fp32 rounding
    assert float((model.next_token_logits(QUESTION, caches) - reference).abs().max()) > 10 * TOL


def test_greedy_decoding_equals_repeated_single_pass(make_segments):
    model = _talkative(_labelled(k=2, seed=5))
    segments = make_segments(4, seed=5)
    caches = model.compress(segments)
    starts = [2.0, 64.0, 3599.0, 3725.0]
    ours = list(generate_tokens(model, QUESTION, caches, GenerationConfig(max_new_tokens=16), starts))
    assert len(ours) == 16
    assert ours == reference_greedy(model, QUESTION, segments, 16, starts=starts)
    # the library's answer over bare caches reads index * segment_seconds
    text = model.answer(QUESTION, caches, max_new_tokens=8, stop=["\x00never"])
    ref = model.tokenizer.decode(reference_greedy(model, QUESTION, segments, 8), skip_special_tokens=True)
    cut = min([i for i in (ref.find("</s>"), ref.find("USER:")) if i >= 0], default=len(ref))
    assert text == ref[:cut].strip()


def test_score_reads_the_labels(make_segments):
    model = _labelled(k=1, seed=6)
    segments = make_segments(3, seed=6)
    caches = model.compress(segments)
    starts = [0.0, 40.0, 4000.0]
    got = model.score(QUESTION, caches, ["red circle"], starts=starts)[0]
    prefix, suffix = model.prompt_ids(QUESTION)
    ids = model.answer_ids("red circle")
    with torch.no_grad():
        logits = single_pass_logits(model, prefix, design_segments(model, segments), suffix + ids,
                                    reference_labels(model, 3, starts))
    logp = torch.log_softmax(logits[len(suffix) - 1 : -1], -1).gather(-1, torch.tensor(ids)[:, None]).sum()
    assert got == pytest.approx(float(logp), abs=1e-4)


def test_budget_counts_labels_and_a_subset_keeps_its_own_times(make_segments):
    model = _talkative(_labelled(k=2, seed=7))
    segments = make_segments(7, seed=7)
    caches = model.compress(segments)
    times = [(10.0 * i, 10.0 * i + 10.0) for i in range(7)]
    label = model.longest_segment_label([s for s, _ in times])
    assert label == max(len(ids) for ids in model.segment_labels(7, [s for s, _ in times])) > 0
    prefix, suffix = model.prompt_ids(QUESTION)
    new = 8
    room = 3 * (model.k + label) - 1  # 2 labelled segments fit; without labels 3 * 7 - 1 tokens hold 10 caches
    model.lm.config.max_position_embeddings = len(prefix) + len(suffix) + new + room
    video = Timeline.of(caches, times)
    text, stats = AnswerSession(model, video, "uniform").answer(QUESTION, max_new_tokens=new)
    used = [s.index for s in stats.segments_used]
    assert used == [0, 6]
    ref = reference_greedy(model, QUESTION, [segments[i] for i in used], new, starts=[0.0, 60.0])
    ref_text = model.tokenizer.decode(ref, skip_special_tokens=True)
    cut = min([i for i in (ref_text.find("</s>"), ref_text.find("USER:")) if i >= 0], default=len(ref_text))
    assert text == ref_text[:cut].strip()
    with pytest.raises(ContextTooLong, match=r"7 segments x \(2 cache tokens \+ up to \d+ time-label tokens\)"
                                             r".*at most 2 segments"):
        AnswerSession(model, video, "all").answer(QUESTION, max_new_tokens=new)
    model.lm.config.max_position_embeddings = len(prefix) + len(suffix) + new + model.k + label - 1
    with pytest.raises(ContextTooLong, match="time-label tokens.*at most 0 segments"):
        AnswerSession(model, video, "uniform").answer(QUESTION, max_new_tokens=new)


def test_the_label_pass_is_memoised_per_selection(make_segments, monkeypatch):
    model = _labelled(k=2, seed=8)
    caches = model.compress(make_segments(3, seed=8))
    calls = []
    real = timeline.append_labels
    monkeypatch.setattr(timeline, "append_labels", lambda *a: calls.append(1) or real(*a))
    first = model.next_token_logits(QUESTION, caches)
    again = model.next_token_logits("and then?", caches)  # another question, same selection: reused
    assert len(calls) == 1
    assert torch.equal(model.next_token_logits(QUESTION, caches), first)
    assert len(calls) == 1 and not torch.equal(first, again)
    model.next_token_logits(QUESTION, caches, starts=[0.0, 5.0, 9.0])  # other times
    model.next_token_logits(QUESTION, caches[:2])  # another selection
    recompressed = model.compress(make_segments(3, seed=8))  # equal content, other objects
    assert torch.equal(model.next_token_logits(QUESTION, recompressed), first)
    assert len(calls) == 4
    with torch.enable_grad():  # never memoised while gradients are recorded
        model.past_from_caches(recompressed, model.prompt_ids(QUESTION)[0])
    assert len(calls) == 5
