"""The two-stage path (compress, then answer from caches) against the single-pass block-mask reference."""

import pytest
import torch

from voco.reference import reference_logits
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
@pytest.mark.parametrize("compressor,k", [("full", 1), ("pool", 1), ("pool", 4)])
@pytest.mark.parametrize("T", [1, 3, 8])
def test_baseline_compressors_match_reference(lm, compressor, k, T, make_segments):
    model = tiny_model(lm, compressor=compressor, k=k)
    if compressor == "pool":  # a trained pool linear is not the identity
        torch.nn.init.normal_(model.pool.linear.weight, std=0.2)
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


def test_reference_sees_no_vision_token_from_the_question(make_segments):
    """The block mask is what makes VoCo compress: changing a vision token in the reference only
    changes the answer through the kept tokens (so a `full`-style leak would show here)."""
    model = tiny_model("llama", k=1)
    segments = make_segments(2)
    a = reference_logits(model, QUESTION, segments)
    other = [segments[0], make_segments(1, seed=99)[0]]
    b = reference_logits(model, QUESTION, other)
    assert not torch.allclose(a, b)  # the second segment matters, through its <voco> token
