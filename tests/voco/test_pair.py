"""A VoCo model assembled from a separate vision encoder folder and a causal LM folder (tiny random CLIP / SigLIP
vision models and Llama / Qwen2 LMs saved by transformers in the test): parts loaded as saved, a new projector,
<voco> added, CLS handling detected, save -> VoCoModel.from_pretrained round trip, and training from the config."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from voco import VoCoModel
from voco.pair import PairSpec, assemble_pair
from voco.tiny import tiny_tokenizer

VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
              patch_size=8)


def _vision(folder, kind: str):
    torch.manual_seed(1)
    if kind == "clip":
        model = CLIPVisionModel(CLIPVisionConfig(projection_dim=32, **VISION))
    elif kind == "siglip":
        model = SiglipVisionModel(SiglipVisionConfig(**VISION))
    else:  # a whole CLIP (text + vision): the pair reads its vision half
        model = CLIPModel(CLIPConfig(vision_config=VISION, text_config=dict(hidden_size=32, intermediate_size=64,
                                     num_hidden_layers=1, num_attention_heads=2, vocab_size=99), projection_dim=16))
    model.save_pretrained(folder)
    return model


def _lm(folder, kind: str):
    tokenizer = tiny_tokenizer(with_bos=kind == "llama", with_voco=False)
    args = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, eos_token_id=2,
                pad_token_id=3)
    torch.manual_seed(2)
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(bos_token_id=1, **args))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(tie_word_embeddings=True, **args))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


@pytest.fixture(params=[("clip", "llama"), ("siglip", "qwen2"), ("clip_full", "qwen2")],
                ids=lambda p: "+".join(p))
def pair(request, tmp_path):
    vision_kind, lm_kind = request.param
    vision = _vision(tmp_path / "vision", vision_kind)
    lm = _lm(tmp_path / "lm", lm_kind)
    return PairSpec(vision=str(tmp_path / "vision"), lm=str(tmp_path / "lm")), vision, lm, vision_kind


def test_parts_come_from_their_folders_and_the_projector_is_new(pair):
    spec, vision, lm, vision_kind = pair
    model = assemble_pair(spec)
    theirs = (vision.vision_model if vision_kind == "clip_full" else vision).state_dict()
    ours = model.vision_tower.state_dict()
    assert theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in theirs)
    layer = model.lm.model.layers[1].self_attn.q_proj.weight
    assert torch.equal(layer, lm.model.layers[1].self_attn.q_proj.weight)
    vocab = lm.config.vocab_size
    assert torch.equal(model.lm.get_input_embeddings().weight[:vocab], lm.get_input_embeddings().weight)
    assert model.voco_token_id >= vocab and not model.voco.voco_tuned
    expected = "full" if vision_kind == "siglip" else "default"  # CLIP puts a CLS token first
    assert model.config.vision_feature_select_strategy == expected
    assert model.config.text_config.model_type == lm.config.model_type
    again = assemble_pair(spec)  # the projector is seeded
    assert all(torch.equal(a, b) for a, b in zip(model.projector.parameters(), again.projector.parameters(),
                                                  strict=True))


def test_save_and_load_round_trip(pair, tmp_path, make_segments):
    spec, *_ = pair
    model = assemble_pair(spec)
    model.voco.frames_per_segment = 2
    segments = make_segments(2)
    before = model.next_token_logits("what is it?", model.compress(segments))
    model.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["model_type"] == "llava"
    loaded = VoCoModel.from_pretrained(str(tmp_path / "saved"))
    after = loaded.next_token_logits("what is it?", loaded.compress(segments))
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)
    saved = load_file(tmp_path / "saved" / "model.safetensors")
    assert any("multi_modal_projector.linear_1" in k for k in saved), sorted(saved)[:8]


def test_missing_folders_fail_loudly(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a transformers model folder"):
        PairSpec(vision=str(tmp_path / "nope"), lm=str(tmp_path))


def test_a_pair_trains_from_the_config(tmp_path):
    from tests.train.conftest import tiny_dict
    from voco.train.config import ConfigError, config_from_dict
    from voco.train.loop import train

    _vision(tmp_path / "vision", "clip")
    _lm(tmp_path / "lm", "llama")
    data = tiny_dict(tmp_path, threads=1)
    data["model"] = {"init": "pair", "vision": str(tmp_path / "vision"), "lm": str(tmp_path / "lm"),
                     "voco": {"k": 1, "frames_per_segment": 2, "segment_seconds": 2.0}}
    data["stages"][0].update(steps=2, train=["projector", "voco_embedding"])
    data["data"].update(val_videos=1, test_videos=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(config_from_dict(data), progress=False, log=lambda *_: None)
    final = VoCoModel.from_pretrained(str(tmp_path / "run" / "final"))
    assert final.voco.voco_tuned and final.config.vision_config.hidden_size == VISION["hidden_size"]
    with pytest.raises(ConfigError, match="model.vision and model.lm"):
        config_from_dict({**data, "model": {"init": "pair", "vision": str(tmp_path / "vision")}})
