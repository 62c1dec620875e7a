"""int8 caches (store/quant.py): the error bound of the one quantize/dequantize pair, its bytes, its metadata."""

import pytest
import torch

from store.quant import (
    INT8,
    MODEL,
    QUANT_SCHEME,
    SCALE_BYTES,
    decode_kv,
    dequantize,
    encode_kv,
    quantize,
    round_trip,
    stored_nbytes,
)


def _within_bound(y: torch.Tensor, x: torch.Tensor, rounding: float = 0.0) -> bool:
    """Each vector's error (L2) at most sqrt(D) half-steps of its rotated absmax, which is at most its norm: sqrt(D) /
    254 of the vector's norm, outliers or not (plus the float16 rounding of the scale, and `rounding`: the relative
    rounding of the result into a half-precision dtype)."""
    x, y = x.float(), y.float()
    bound = x.norm(dim=-1) * (x.shape[-1] ** 0.5 / 254 * (1 + 4e-3) + rounding) + 1e-6
    return bool(((y - x).norm(dim=-1) <= bound).all())


def _outliers(shape, seed: int = 0) -> torch.Tensor:
    """Heavy-tailed KV: a few channels 100x larger (as RoPE'd keys have), Student-t noise, and some tiny vectors."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g) / torch.rand(*shape, generator=g).clamp_min(0.02).sqrt()
    x[..., 3] *= 100
    x[..., -5] *= -60
    x[0, 0] *= 1e-3
    return x


@pytest.mark.parametrize(("make", "relative"), [
    (lambda: torch.randn(7, 4, 2, 3, 2, 64, generator=torch.Generator().manual_seed(1)), 0.008),
    (lambda: _outliers((7, 4, 2, 3, 2, 48)), 0.008),  # the rotation spreads the outlier channels
    (lambda: _outliers((7, 4, 2, 3, 2, 64), seed=5), 0.008),
], ids=["random", "outliers-48", "outliers-64"])
def test_round_trip_error_is_at_most_half_a_step_of_each_vectors_own_scale(make, relative):
    x = make()
    q = quantize(x)
    assert q.dtype == torch.int8 and q.shape == (*x.shape[:-1], x.shape[-1] + SCALE_BYTES)
    y = dequantize(q, torch.float32)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert _within_bound(y, x)
    assert float((y - x).norm() / x.norm()) < relative
    assert torch.equal(round_trip(x), y)


def test_an_outlier_costs_only_its_own_vector():
    """Groups are head_dim vectors: a huge value in one vector leaves every other vector's error as it was."""
    x = torch.randn(10, 64, generator=torch.Generator().manual_seed(2))
    alone = dequantize(quantize(x))
    x[4, 7] = 1e4
    y = dequantize(quantize(x))
    assert torch.equal(torch.cat([y[:4], y[5:]]), torch.cat([alone[:4], alone[5:]]))
    assert _within_bound(y[4], x[4])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_caches_come_back_in_their_own_dtype(dtype):
    x = _outliers((5, 64), seed=3).to(dtype)
    y = round_trip(x)
    assert y.dtype == dtype
    assert _within_bound(y, x, rounding=2 ** -8)


def test_zeros_tiny_and_sliced_vectors():
    q = quantize(torch.tensor([[0.0, 0.0, 0.0], [1e-7, -2e-7, 0.0], [1.0, -0.5, 0.25]]))
    assert torch.equal(dequantize(q)[:2], torch.zeros(2, 3))  # scales below float16's range: stored as zeros
    assert torch.allclose(dequantize(q[2:]), torch.tensor([[1.0, -0.5, 0.25]]), atol=1 / 254)  # odd byte offset


def test_non_finite_caches_are_refused():
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="non-finite"):
            quantize(torch.tensor([[1.0, bad]]))
    with pytest.raises(ValueError, match="overflows float16"):
        quantize(torch.tensor([[1e9, 1.0]]))
    with pytest.raises(ValueError, match="int8"):
        dequantize(torch.zeros(3, 4))


@pytest.mark.parametrize("head_dim", [48, 64, 128])
def test_int8_bytes_with_scales_are_at_most_0_27_of_float32(head_dim):
    values = 30 * 2 * 3 * 2 * head_dim  # the default model's shape per segment, at this head_dim
    assert stored_nbytes(values, head_dim, INT8, 4) <= 0.27 * stored_nbytes(values, head_dim, MODEL, 4)
    assert quantize(torch.randn(values // head_dim, head_dim)).numel() == stored_nbytes(values, head_dim, INT8, 4)


def test_pack_metadata_says_how_to_read_the_kv_back():
    x = torch.randn(2, 3, 2, 2, 1, 16, dtype=torch.bfloat16)
    same, none = encode_kv(x, MODEL)
    assert same is x and none == {}  # float packs carry no new keys: their bytes are as before
    stored, meta = encode_kv(x, INT8)
    assert meta == {"cache_dtype": "int8", "kv_dtype": "bfloat16", "kv_quant": QUANT_SCHEME}
    assert stored.dtype == torch.int8
    back = decode_kv(stored, meta)
    assert back.dtype == torch.bfloat16 and torch.equal(back, round_trip(x))
    assert decode_kv(x, {}) is x
    with pytest.raises(ValueError, match="inconsistent"):
        decode_kv(stored, {**meta, "kv_dtype": "int64"})
    for other in ({"cache_dtype": "int4"}, {**meta, "kv_quant": "absmax-int8-vector/2"}):
        with pytest.raises(ValueError, match="cannot read"):
            decode_kv(stored, other)
    with pytest.raises(ValueError, match="cache_dtype must be one of model, int8"):
        encode_kv(x, "float8")
