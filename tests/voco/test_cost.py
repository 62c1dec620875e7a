from voco.cost import LLAVA_15_7B, DecoderShape, kv_bytes, pass_flops
from voco.tiny import tiny_model


def test_llava_7b_cache_sizes_match_the_paper():
    # Table 7: 0.525 MB for one VoCo token (its figure includes file overhead), 302.4 MB for 576 tokens
    assert kv_bytes(LLAVA_15_7B, 1) == 524_288
    assert abs(kv_bytes(LLAVA_15_7B, 576) / 1e6 - 302.0) < 0.1


def test_pass_flops_counts_dense_work_and_attention():
    shape = DecoderShape(layers=1, hidden=8, ffn=16, heads=2, kv_heads=2, head_dim=4)
    per_token = 2 * (4 * 8 * 8) + 2 * 3 * 8 * 16
    assert pass_flops(shape, new=1, past=0) == per_token + 4 * 1 * 1 * 8
    assert pass_flops(shape, new=1, past=10) - pass_flops(shape, new=1, past=0) == 4 * 10 * 8
    assert pass_flops(shape, new=3) > 3 * per_token  # attention grows quadratically


def test_measured_cache_bytes_equal_the_analytic_count(make_segments):
    model = tiny_model("llama", k=2)
    (cache,) = model.compress(make_segments(1))
    shape = DecoderShape.from_config(model.config.text_config, dtype_bytes=4)
    assert cache.nbytes == kv_bytes(shape, 2)
