"""Model identity covers exactly what changes cache bytes: every weight pass 1 reads, the compression settings."""

import dataclasses

import pytest
import torch

from voco import VoCoModel, identity
from voco.config import PromptTemplate, VoCoConfig
from voco.tiny import tiny_model


@pytest.fixture(autouse=True)
def digest_cache(tmp_path, monkeypatch):
    folder = tmp_path / "digests"
    monkeypatch.setenv(identity.DIGEST_CACHE_ENV, str(folder))
    return folder


def _kv(model, segments):
    return torch.stack([c.kv for c in model.compress(segments)])


def test_a_voco_row_changed_where_the_old_sampling_never_looked_is_another_model(make_segments):
    """The old identity sampled every 8th value of this embedding: a <voco>-only fine-tune passed as the same."""
    model = tiny_model("llama")
    segments = make_segments(2)
    before, kv_before = model.fingerprint, _kv(model, segments)
    legacy_before = identity.legacy_fingerprints(model, [model.voco.to_dict()])
    weight = model.lm.get_input_embeddings().weight
    step = weight.numel() // 4096
    column = next(j for j in range(weight.shape[1]) if (model.voco_token_id * weight.shape[1] + j) % step)
    with torch.no_grad():
        weight[model.voco_token_id, column] += 1.0
    assert not torch.equal(_kv(model, segments), kv_before)  # the cache bytes change ...
    assert identity.legacy_fingerprints(model, [model.voco.to_dict()]) == legacy_before  # ... unseen by the old hash
    assert model.fingerprint != before


def test_the_output_head_is_not_part_of_the_identity(make_segments):
    model = tiny_model("llama")
    assert model.lm.get_output_embeddings().weight is not model.lm.get_input_embeddings().weight
    segments = make_segments(2)
    before, kv_before = model.fingerprint, _kv(model, segments)
    with torch.no_grad():
        model.lm.get_output_embeddings().weight.mul_(2.0)
    assert torch.equal(_kv(model, segments), kv_before)
    assert model.fingerprint == before


def test_every_voco_json_field_is_either_a_compression_setting_or_named_outside():
    fields = {f.name for f in dataclasses.fields(VoCoConfig)}
    assert fields == set(identity.COMPRESSION_FIELDS) | set(identity.OUTSIDE_IDENTITY)
    assert not set(identity.COMPRESSION_FIELDS) & set(identity.OUTSIDE_IDENTITY)


def test_prompt_and_sampling_leave_the_identity_alone_compression_settings_do_not():
    model = tiny_model("llama")
    base = model.fingerprint
    model.voco = dataclasses.replace(model.voco, prompt=PromptTemplate(system="Be brief."), segment_seconds=7.0,
                                     frames_per_segment=3)
    assert model.fingerprint == base
    for change in ({"k": 2}, {"compressor": "full"}, {"image_mean": (0.5, 0.5, 0.5)}):
        model.voco = dataclasses.replace(VoCoConfig(frames_per_segment=2), **change)
        assert model.fingerprint != base, change
    model.voco = VoCoConfig(frames_per_segment=2)
    assert model.fingerprint == base


def test_a_loaded_checkpoint_hashes_its_weights_once_and_overrides_of_sampling_keep_its_identity(
        tmp_path, digest_cache, monkeypatch):
    made = tiny_model("llama")
    made.save_pretrained(tmp_path / "ckpt")
    loaded = VoCoModel.from_pretrained(tmp_path / "ckpt")
    assert loaded.fingerprint == made.fingerprint  # the same bytes whether hashed in memory or loaded
    assert len(list(digest_cache.glob("*.json"))) == 1

    def no_hashing(model):
        raise AssertionError("the weights were hashed again")

    monkeypatch.setattr(identity, "weights_digest_in_memory", no_hashing)
    # what `eval --segment-seconds` does: the same weights must stay the same model
    again = VoCoModel.from_pretrained(tmp_path / "ckpt", segment_seconds=1.0)
    assert again.fingerprint == made.fingerprint
    monkeypatch.undo()
    with torch.no_grad():
        again.vision_tower.parameters().__next__().add_(0.5)
    assert again.fingerprint != made.fingerprint  # changed after loading: hashed from memory, not the cache


def test_a_changed_checkpoint_file_is_hashed_again(tmp_path, digest_cache):
    tiny_model("llama", seed=0).save_pretrained(tmp_path / "ckpt")
    first = VoCoModel.from_pretrained(tmp_path / "ckpt").fingerprint
    other = tiny_model("llama", seed=1)
    other.save_pretrained(tmp_path / "ckpt")  # same names and sizes, other bytes
    assert VoCoModel.from_pretrained(tmp_path / "ckpt").fingerprint == other.fingerprint != first
