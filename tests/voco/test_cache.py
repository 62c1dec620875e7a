"""SegmentCache: position-free, order-sensitive on the timeline, lossless on disk, checked on use."""

import pytest
import torch

from voco.cache import SegmentCache, check_caches
from voco.tiny import tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama", k=2, seed=1)


def test_cache_shape_dtype_and_provenance(model, make_segments):
    (cache,) = model.compress(make_segments(1))
    cfg = model.lm.config
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    assert cache.kv.shape == (cfg.num_hidden_layers, 2, cfg.num_key_value_heads, 2, head_dim)
    assert cache.kv.dtype == model.dtype
    assert cache.fingerprint == model.fingerprint
    n = model.embed_segment(make_segments(1)[0]).shape[0]
    assert cache.source_position == n + 1  # <voco>_1 sits right after <bos> and the n vision tokens


def test_cache_is_the_same_whatever_the_segment_index(model, make_segments):
    a, b, c = make_segments(3)
    first = model.compress([a, b, c])
    later = model.compress([c, b, a])
    alone = model.compress([a])
    torch.testing.assert_close(first[0].kv, later[2].kv, rtol=0, atol=1e-6)
    torch.testing.assert_close(first[0].kv, alone[0].kv, rtol=0, atol=1e-6)


def test_reordering_segments_changes_the_logits(model, make_segments):
    caches = model.compress(make_segments(3))
    forward = model.next_token_logits("what happens first?", caches)
    again = model.next_token_logits("what happens first?", caches)
    backward = model.next_token_logits("what happens first?", caches[::-1])
    assert (forward - again).abs().max() == 0
    # a random tiny model is weakly position-sensitive: the change is small but 100x the fp32 noise
    assert (forward - backward).abs().max() > 1e-5


def test_safetensors_round_trip_is_bit_exact(model, make_segments):
    (cache,) = model.compress(make_segments(1))
    back = SegmentCache.from_bytes(cache.to_bytes())
    assert torch.equal(back.kv, cache.kv) and back.kv.dtype == cache.kv.dtype
    assert back.source_position == cache.source_position
    assert (back.fingerprint, back.compressor) == (cache.fingerprint, "voco")
    bf16 = SegmentCache(cache.kv.to(torch.bfloat16), 3, "f", "voco")
    assert torch.equal(SegmentCache.from_bytes(bf16.to_bytes()).kv, bf16.kv)


def test_bad_bytes_and_shapes_are_rejected():
    with pytest.raises(ValueError, match="safetensors"):
        SegmentCache.from_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match=r"\[layers, 2, kv_heads, k, head_dim\]"):
        SegmentCache(torch.zeros(2, 3, 2, 1, 4), 1, "f", "voco")


def test_caches_are_checked_against_the_model(model, make_segments):
    caches = model.compress(make_segments(2))
    other = tiny_model("llama", k=2, seed=2)
    with pytest.raises(ValueError, match="re-compress the video with this model"):
        other.next_token_logits("q?", caches)
    k1 = tiny_model("llama", k=1, seed=1)
    with pytest.raises(ValueError, match="keeps 2 tokens but this model's k is 1"):
        check_caches(caches, fingerprint=caches[0].fingerprint, compressor="voco", k=k1.k)
    with pytest.raises(ValueError, match="compress at least one segment"):
        model.next_token_logits("q?", [])


def test_fingerprint_follows_the_weights(model):
    before = model.fingerprint
    weight = model.lm.get_input_embeddings().weight  # the output head is not identity: pass 1 never reads it
    saved = weight[0, 0].item()
    with torch.no_grad():
        weight[0, 0] = saved + 1.0
    assert model.fingerprint != before  # an in-place update (an optimizer step) is noticed
    with torch.no_grad():
        weight[0, 0] = saved
    assert model.fingerprint == before
