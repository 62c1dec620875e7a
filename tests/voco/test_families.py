"""Checkpoint families beyond `llava`: tiny random LLaVA-OneVision and LLaVA-NeXT-Video checkpoints (Qwen2
decoders) saved by transformers load through their own classes, follow the model's own video path, hold
the two-stage/reference parity, and round-trip through save/load."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import LlamaConfig

from voco import VoCoModel
from voco.families import FAMILIES, family_of
from voco.reference import reference_logits
from voco.tiny import tiny_family_config, tiny_tokenizer

FAMILY_TYPES = ["llava_onevision", "llava_next_video"]


@pytest.fixture(params=FAMILY_TYPES)
def plain_checkpoint(request, tmp_path):
    """A family checkpoint as transformers saves it (no voco.json, no <voco> token)."""
    tokenizer = tiny_tokenizer(with_bos=False, with_voco=False)  # Qwen2-like: no <bos>
    config = tiny_family_config(request.param, vocab_size=len(tokenizer))
    torch.manual_seed(0)
    model = family_of(config).model_class(config).eval()
    model.save_pretrained(tmp_path / "plain")
    tokenizer.save_pretrained(tmp_path / "plain")
    return tmp_path / "plain", model


def _load(path, **overrides) -> VoCoModel:
    with pytest.warns(UserWarning, match="not been VoCo-tuned"):
        return VoCoModel.from_pretrained(path, **{"k": 2, "frames_per_segment": 2, **overrides})


def test_frames_take_the_models_own_video_path(plain_checkpoint, make_segments):
    path, theirs = plain_checkpoint
    model = _load(path)
    assert type(model.config).model_type == theirs.config.model_type
    segments = make_segments(3, frames=2)
    pixels = model.pixel_values(segments)  # [segments * frames, 3, S, S]
    pixels = pixels.view(3, 2, *pixels.shape[1:])
    config = theirs.config
    with torch.no_grad():
        out = theirs.model.get_video_features(pixel_values_videos=pixels,
                                              vision_feature_layer=config.vision_feature_layer,
                                              vision_feature_select_strategy=config.vision_feature_select_strategy)
    video = out.pooler_output
    video = video if torch.is_tensor(video) else torch.stack(list(video))
    mine = model.vision_embeds(segments)  # [segments, frames * tokens, hidden]
    if config.model_type == "llava_onevision":  # a 4x4 grid pooled 2x2 per frame, then one image_newline
        assert mine.shape[1] == 2 * 4 + 1
    torch.testing.assert_close(mine, video.reshape(mine.shape), rtol=0, atol=1e-6)


def test_two_stage_matches_the_reference(plain_checkpoint, make_segments):
    model = _load(plain_checkpoint[0])
    segments = make_segments(4, frames=2)
    question = "what color is the circle?"
    two_stage = model.next_token_logits(question, model.compress(segments))
    assert float((two_stage - reference_logits(model, question, segments)).abs().max()) < 1e-5
    assert isinstance(model.answer(question, model.compress(segments), max_new_tokens=3), str)


def test_save_and_load_round_trip(plain_checkpoint, make_segments, tmp_path):
    path, theirs = plain_checkpoint
    model = _load(path)
    model.save_pretrained(tmp_path / "voco")
    saved = json.loads((tmp_path / "voco" / "config.json").read_text())
    assert saved["model_type"] == theirs.config.model_type
    again = VoCoModel.from_pretrained(tmp_path / "voco")  # a VoCo checkpoint now: no warning
    assert again.fingerprint == model.fingerprint
    segments = make_segments(2, frames=2)
    for a, b in zip(model.compress(segments), again.compress(segments), strict=True):
        assert torch.equal(a.kv, b.kv)
    # the parts the video path does not read were written back, not re-initialised
    reloaded = family_of(theirs.config).model_class.from_pretrained(tmp_path / "voco")
    assert torch.equal(reloaded.model.image_newline, theirs.model.image_newline)


def test_families_are_chosen_by_model_type():
    assert sorted(FAMILIES) == ["idefics3", "llava", "llava_next_video", "llava_onevision", "smolvlm"]
    with pytest.raises(ValueError, match=r"LlamaConfig \('llama'\); VoCo needs a LLaVA-family or SmolVLM"):
        family_of(LlamaConfig())
