import numpy as np
import pytest
import torch


@pytest.fixture
def make_segments():
    """Random uint8 segments [F, H, W, 3], seeded per call."""

    def make(count: int, frames: int = 2, size: tuple[int, int] = (40, 48), seed: int = 0) -> list[torch.Tensor]:
        rng = np.random.default_rng(seed)
        return [torch.from_numpy(rng.integers(0, 256, (frames, *size, 3), dtype=np.uint8)) for _ in range(count)]

    return make
