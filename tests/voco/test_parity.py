"""The two-stage path (compress, then answer from caches) against the single-pass block-mask reference."""

import pytest
import torch

from voco import reference
from voco.compressors import SegmentLayout
from voco.compressors.dense import VoCoCompressor
from voco.reference import block_mask_and_positions, reference_logits
from voco.tiny import tiny_config, tiny_model

QUESTION = "what color is the circle that moves left?"
TOL = 1e-5  # fp32 rounding: measured max |diff| ~2e-7 on logits of magnitude ~0.5


def _max_diff(model, segments) -> float:
    caches = model.compress(segments, batch_size=3)
    two_stage = model.next_token_logits(QUESTION, caches)
    reference = reference_logits(model, QUESTION, segments)
    assert two_stage.shape == reference.shape == (model.lm.config.vocab_size,)
    return float((two_stage - reference).abs().max())


@pytest.mark.parametrize("lm", ["llama", "qwen2"])
@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("T", [1, 3, 8])
def test_voco_two_stage_matches_reference(lm, k, T, make_segments):
    model = tiny_model(lm, k=k, seed=k)
    assert _max_diff(model, make_segments(T, seed=T)) < TOL


@pytest.mark.parametrize("lm", ["llama", "qwen2"])
@pytest.mark.parametrize("compressor,k", [("full", 1), ("pool", 1), ("pool", 4), ("qformer", 1), ("qformer", 3)])
@pytest.mark.parametrize("T", [1, 3, 8])
def test_baseline_compressors_match_reference(lm, compressor, k, T, make_segments):
    model = tiny_model(lm, compressor=compressor, k=k)
    if model.compressor.module is not None:  # trained weights are not the identity / zero they start as
        for p in model.compressor.module.parameters():
            torch.nn.init.normal_(p, std=0.2)
    assert _max_diff(model, make_segments(T, seed=T)) < TOL


@pytest.mark.parametrize("variant", ["siglip", "linear_projector", "yarn", "llama3"])
def test_model_variants_match_reference(variant, make_segments):
    """Other vision towers, projectors and RoPE types whose cos/sin carry an attention scaling."""
    if variant == "siglip":
        model = tiny_model("llama", "siglip", k=2)
    elif variant == "linear_projector":
        model = tiny_model("qwen2", projector="linear", k=2)
    elif variant == "yarn":
        rope = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64, "rope_theta": 10000.0}
        model = tiny_model(config=tiny_config("llama", rope_parameters=rope), k=2)
        assert model.lm.model.rotary_emb.attention_scaling != 1.0
    else:
        rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64, "rope_theta": 10000.0}
        model = tiny_model(config=tiny_config("llama", rope_parameters=rope), k=2)
    assert _max_diff(model, make_segments(5)) < TOL


def test_reference_mask_is_the_designs_block_mask():
    """Each segment sees only itself, causally; the tail sees the prefix, the kept tokens and itself."""
    P, Q = 3, 4
    segments = [(6, range(4, 6)), (6, range(4, 6)), (3, range(1, 3))]  # two voco (n=3, k=2), one pool (m=2)
    allowed, positions = block_mask_and_positions(P, segments, Q)
    starts = [P, P + 6, P + 12]
    tail = range(P + 15, P + 15 + Q)
    kept = {s + j for s, (_, kp) in zip(starts, segments, strict=True) for j in kp}
    for q in range(allowed.shape[0]):
        if q < P:
            want = set(range(q + 1))
        elif q in tail:
            want = set(range(P)) | kept | set(range(tail.start, q + 1))
        else:
            s = max(s for s in starts if s <= q)
            want = set(range(s, q + 1))
        assert set(allowed[q].nonzero().flatten().tolist()) == want, q
    # delta_t = P + (kept tokens before t) - first kept index; the tail continues after all kept tokens
    assert positions.tolist() == [0, 1, 2, *range(-1, 5), *range(1, 7), *range(6, 9), *range(9, 13)]


def test_question_reads_no_vision_token(make_segments, monkeypatch):
    """With one decoder layer the kept <voco> tokens' KV comes from their own embeddings only, so without a
    leak the question's logits cannot depend on the vision tokens at all, in the reference or from caches.
    The same check on a reference whose mask lets the question see vision tokens fails (it can fail)."""
    model = tiny_model(config=tiny_config("llama", layers=1), k=2, seed=1)
    segments, other = make_segments(3, seed=1), make_segments(3, seed=2)
    a, b = reference_logits(model, QUESTION, segments), reference_logits(model, QUESTION, other)
    assert float((a - b).abs().max()) < TOL
    two_stage = [model.next_token_logits(QUESTION, model.compress(s)) for s in (segments, other)]
    assert float((two_stage[0] - two_stage[1]).abs().max()) < TOL

    def leaky(P, segs, Q):
        allowed, positions = block_mask_and_positions(P, segs, Q)
        allowed[-Q:, P:-Q] = True  # the question sees every segment token
        return allowed, positions

    monkeypatch.setattr(reference, "block_mask_and_positions", leaky)
    leaked = reference_logits(model, QUESTION, segments), reference_logits(model, QUESTION, other)
    assert float((leaked[0] - leaked[1]).abs().max()) > 100 * TOL


_right_layout = VoCoCompressor.layout


def _shifted_layout(self, n_vision):
    """A layout bug: the voco kept window one token early (the last vision token and k-1 <voco> tokens)."""
    right = _right_layout(self, n_vision)
    return SegmentLayout(right.length, right.kept_start - 1, right.kept)


def _voco_first(self, model, vision):
    """A sequence bug: <voco> tokens before the vision tokens."""
    B = vision.shape[0]
    embed = model.lm.get_input_embeddings()
    start = embed(torch.full((B, 1), model.segment_start_id))
    voco = embed(torch.full((B, self.k), model.voco_token_id))
    return torch.cat([start, voco, vision], dim=1)


@pytest.mark.parametrize("bug", ["layout", "sequence"])
def test_parity_catches_a_bug_in_the_two_stage_layout(bug, make_segments, monkeypatch):
    """The reference is built from the design, not from the two-stage path's own layout/sequence helpers."""
    model = tiny_model("llama", k=2, seed=2)
    segments = make_segments(3)
    assert _max_diff(model, segments) < TOL
    if bug == "layout":
        monkeypatch.setattr(VoCoCompressor, "layout", _shifted_layout)
    else:
        monkeypatch.setattr(VoCoCompressor, "sequence_embeds", _voco_first)
    assert _max_diff(model, segments) > 100 * TOL
