import torch
from torch import nn

from voco.lora import LoRALinear


def _adapted(seed: int = 0) -> LoRALinear:
    torch.manual_seed(seed)
    layer = LoRALinear(nn.Linear(16, 8), rank=4, alpha=8)
    nn.init.normal_(layer.lora_B)  # B = 0 at start would make merged and separate agree trivially
    return layer


def test_inference_uses_the_merged_weight_and_matches_the_separate_adapters():
    layer, x = _adapted(), torch.randn(3, 5, 16)
    with torch.enable_grad():
        separate = layer(x)
    with torch.no_grad():
        merged = layer(x)
    assert layer._merged is not None
    torch.testing.assert_close(merged, separate.detach(), rtol=1e-5, atol=1e-5)


def test_the_merged_weight_follows_in_place_updates_and_swapped_tensors():
    """Training steps change B in place; the frozen KV teacher swaps whole tensors in through `.data`."""
    layer, x = _adapted(), torch.randn(2, 16)
    with torch.no_grad():
        before = layer(x)
        layer.lora_B.mul_(2.0)  # an optimizer step
        after_step = layer(x)
        expected = layer.base(x) + (x @ layer.lora_A.t() @ layer.lora_B.t()) * layer.scale
        torch.testing.assert_close(after_step, expected, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(before, after_step)
        saved = layer.lora_A.data
        layer.lora_A.data = torch.zeros_like(saved)  # the teacher's weights swapped in
        torch.testing.assert_close(layer(x), layer.base(x))
        layer.lora_A.data = saved
        torch.testing.assert_close(layer(x), after_step)
