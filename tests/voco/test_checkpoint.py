"""Loading and saving: VoCo checkpoints round-trip; plain LLaVA checkpoints load; errors say what to do."""

import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, LlavaForConditionalGeneration

from voco import VoCoModel
from voco.tiny import tiny_config, tiny_model, tiny_tokenizer


@pytest.mark.parametrize("compressor,projector", [("voco", "mlp2x_gelu"), ("pool", "linear"),
                                                  ("qformer", "mlp2x_gelu")])
def test_save_and_load_round_trip(tmp_path, make_segments, compressor, projector):
    model = tiny_model("llama", compressor=compressor, projector=projector, k=2)
    if model.compressor.module is not None:  # trained weights of its own (pool's linear, the Q-Former)
        for p in model.compressor.module.parameters():
            torch.nn.init.normal_(p, std=0.3)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "voco_compressor.safetensors").is_file() == (model.compressor.module is not None)
    assert (tmp_path / "voco.json").is_file() and (tmp_path / "model.safetensors").is_file()
    loaded = VoCoModel.from_pretrained(tmp_path)
    assert loaded.fingerprint == model.fingerprint
    assert loaded.voco == model.voco
    segments = make_segments(3)
    caches = loaded.compress(segments)
    for a, b in zip(caches, model.compress(segments), strict=True):
        assert torch.equal(a.kv, b.kv)
    torch.testing.assert_close(loaded.next_token_logits("q?", caches), model.next_token_logits("q?", caches))


def test_overrides_replace_voco_json_fields(tmp_path):
    tiny_model("llama", k=2).save_pretrained(tmp_path)
    assert VoCoModel.from_pretrained(tmp_path, k=4, segment_seconds=1.0).k == 4
    with pytest.raises(TypeError):
        VoCoModel.from_pretrained(tmp_path, not_a_field=1)


@pytest.mark.parametrize("lm", ["llama", "qwen2"])
def test_plain_llava_checkpoint_loads_compresses_and_answers(tmp_path, make_segments, lm):
    """A LLaVA checkpoint in transformers format (no voco.json, no <voco> token) becomes a VoCo model."""
    tokenizer = tiny_tokenizer(with_bos=(lm == "llama"), with_voco=False)
    config = tiny_config(lm, vocab_size=len(tokenizer))  # a full vocabulary: <voco> needs a new row
    llava = LlavaForConditionalGeneration(config)
    llava.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    old_rows = llava.get_input_embeddings().weight.detach().clone()

    with pytest.warns(UserWarning, match="not been VoCo-tuned"):
        model = VoCoModel.from_pretrained(tmp_path, k=2, frames_per_segment=2)
    assert model.voco.voco_tuned is False
    assert model.k == 2
    weight = model.lm.get_input_embeddings().weight
    assert weight.shape[0] > old_rows.shape[0]
    assert torch.equal(weight[: old_rows.shape[0]], old_rows)
    torch.testing.assert_close(weight[model.voco_token_id], old_rows.mean(0))
    assert model.tokenizer.convert_ids_to_tokens(model.voco_token_id) == "<voco>"
    if lm == "qwen2":  # no <bos>: segments open with a dedicated start token
        assert model.tokenizer.convert_ids_to_tokens(model.segment_start_id) == "<segment>"

    caches = model.compress(make_segments(3))
    assert caches[0].kv.shape[3] == 2
    assert isinstance(model.answer("what shape?", caches, max_new_tokens=5), str)

    model.save_pretrained(tmp_path / "voco")  # now a VoCo checkpoint: loads without the warning
    again = VoCoModel.from_pretrained(tmp_path / "voco")
    assert again.voco_token_id == model.voco_token_id and again.fingerprint == model.fingerprint


def test_missing_and_foreign_checkpoints_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        VoCoModel.from_pretrained(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        VoCoModel.from_pretrained(tmp_path)
    LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                 vocab_size=64)).save_pretrained(tmp_path / "lm")
    with pytest.raises(ValueError, match="LLaVA-family"):
        VoCoModel.from_pretrained(tmp_path / "lm")
    tiny_model("llama").save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        VoCoModel.from_pretrained(tmp_path / "m")


def test_bad_voco_json_is_reported(tmp_path):
    tiny_model("llama").save_pretrained(tmp_path)
    (tmp_path / "voco.json").write_text(json.dumps({"k": 0}))
    with pytest.raises(ValueError, match="k .* must be >= 1"):
        VoCoModel.from_pretrained(tmp_path)
    (tmp_path / "voco.json").write_text(json.dumps({"compresor": "voco"}))
    with pytest.raises(ValueError, match="unknown voco.json fields"):
        VoCoModel.from_pretrained(tmp_path)


def test_frames_of_the_wrong_shape_are_rejected(make_segments):
    model = tiny_model("llama")
    good = make_segments(1)[0]
    with pytest.raises(ValueError, match=r"segment 0: frames must be uint8 \[2, H, W, 3\]"):
        model.compress([good.float()])
    with pytest.raises(ValueError, match="frames_per_segment=2"):
        model.compress([good[:1]])
    with pytest.raises(ValueError, match="segment 1"):
        model.compress([good, good[..., :1]])
