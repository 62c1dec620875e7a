"""Assembled models (pretrained parts + trained parts), on a tiny stand-in of the bundled default's composition:
random tiny Llama folder + tiny random EfficientNet-Lite classifier + class-evidence projector + LoRA."""

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from voco import VoCoModel
from voco.assembly import TRAINED, AssemblySpec, PackageFile
from voco.config import VoCoConfig
from voco.reference import reference_logits
from voco.tiny import TINY_ASSEMBLY_VOCO, TINY_CLASSES, tiny_assembled_model, tiny_assembly_spec

QUESTION = "what is shown in the video?"


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _segments(T: int, seed: int = 0, frames: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (frames, 40, 48, 3), dtype=np.uint8) for _ in range(T)]


@pytest.mark.parametrize("k,T", [(1, 1), (1, 4), (2, 3)])
def test_assembled_two_stage_matches_single_pass_reference(tmp_path, k, T):
    model = tiny_assembled_model(tmp_path, k=k)
    segments = _segments(T, seed=T)
    caches = model.compress(segments)
    assert caches[0].kv.shape == (2, 2, 2, k, 16)  # [layers, K/V, kv_heads, k, head_dim]
    two_stage = model.next_token_logits(QUESTION, caches)
    assert float((two_stage - reference_logits(model, QUESTION, segments)).abs().max()) < 1e-5


def test_save_keeps_only_trained_parts_and_reloads_identically(tmp_path):
    model = tiny_assembled_model(tmp_path / "parts")
    model.save_pretrained(tmp_path / "ck")
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["assembly.json", TRAINED, "voco.json"]
    lm_bytes = sum(p.stat().st_size for p in (tmp_path / "parts" / "tiny_lm").glob("*.safetensors"))
    assert (tmp_path / "ck" / TRAINED).stat().st_size < lm_bytes / 2  # the LM stays where it came from
    loaded = VoCoModel.from_pretrained(tmp_path / "ck")
    assert loaded.fingerprint == model.fingerprint
    segments = _segments(3)
    torch.testing.assert_close(loaded.next_token_logits(QUESTION, loaded.compress(segments)),
                               model.next_token_logits(QUESTION, model.compress(segments)), rtol=0, atol=0)


ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.mark.parametrize("targets", [None, ALL_LINEAR])  # the tiny spec's own (q/v), or every linear layer
def test_fresh_adapters_leave_the_pretrained_lm_unchanged(tmp_path, targets):
    spec = tiny_assembly_spec(tmp_path)
    if targets is not None:
        spec.lora_targets = targets
    model = VoCoModel.from_assembly(spec, VoCoConfig(**TINY_ASSEMBLY_VOCO))
    wrapped = sum(type(m).__name__ == "LoRALinear" for m in model.lm.modules())
    assert wrapped == len(spec.lora_targets) * model.lm.config.num_hidden_layers
    base = AutoModelForCausalLM.from_pretrained(spec.lm_folder).eval()
    ids = torch.tensor([[1, 40, 41, 42, 43]])
    old = [i for i in range(base.config.vocab_size) if i not in (model.voco_token_id, model.segment_start_id)]
    with torch.no_grad():  # the new tokens' output rows are new; every other logit is the base LM's
        torch.testing.assert_close(model.lm(input_ids=ids).logits[..., old], base(input_ids=ids).logits[..., old],
                                   rtol=1e-5, atol=1e-5)


def test_projector_reads_the_top_classes_as_the_lms_own_words(tmp_path):
    model = VoCoModel.from_assembly(tiny_assembly_spec(tmp_path), VoCoConfig(**TINY_ASSEMBLY_VOCO))
    proj = model.projector
    with torch.no_grad():
        proj.confidence.weight.zero_()
    probs = torch.full((1, 1, len(TINY_CLASSES)), 0.01)
    probs[0, 0, 2], probs[0, 0, 5] = 0.6, 0.3  # "red car", then "flower"
    tokens = proj(probs)
    assert tokens.shape == (1, proj.tokens_per_frame, model.lm.config.hidden_size)
    table = model.lm.get_input_embeddings().weight
    length = proj.name_embeds.shape[1]  # tokens per name (longer names are cut)
    car = model.tokenizer(" red car", add_special_tokens=False)["input_ids"][:length]
    torch.testing.assert_close(tokens[0, : len(car)], table[car], rtol=1e-5, atol=1e-5)
    flower = model.tokenizer(" flower", add_special_tokens=False)["input_ids"][:length]
    torch.testing.assert_close(tokens[0, length : length + len(flower)], table[flower], rtol=1e-5, atol=1e-5)


def test_the_classifier_stays_frozen_in_train_mode(tmp_path):
    model = tiny_assembled_model(tmp_path)
    model.train()
    assert not model.vision_tower.net.training
    frames = _segments(1)[0]
    probs = model.vision_features([frames])
    assert probs.shape == (2, 1, len(TINY_CLASSES))
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 1))


def test_trained_parts_of_another_assembly_fail_loudly(tmp_path):
    model = tiny_assembled_model(tmp_path / "parts")
    model.save_pretrained(tmp_path / "ck")
    spec = json.loads((tmp_path / "ck" / "assembly.json").read_text())
    spec["top_k"] = 3
    (tmp_path / "ck" / "assembly.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="another assembly.json"):
        VoCoModel.from_pretrained(tmp_path / "ck")


def test_missing_parts_say_what_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="pip install no-such-part"):
        PackageFile("no_such_part_pkg", "weights.bin", install="pip install no-such-part").path()
    with pytest.raises(ValueError, match="exactly one of lm_gguf"):
        AssemblySpec(lm_folder=str(tmp_path), lm_gguf={"package": "x", "file": "y"})
    with pytest.raises(ValueError, match="unknown vision fields"):
        AssemblySpec(lm_folder=str(tmp_path), vision={"patch_size": 8})
