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


@pytest.fixture(autouse=True, scope="session")
def digest_cache_in_tmp(tmp_path_factory):
    """Weights digests of the models tests load go to a temp folder, not the user's ~/.cache (voco/identity.py)."""
    import os

    from voco.identity import DIGEST_CACHE_ENV

    before = os.environ.get(DIGEST_CACHE_ENV)
    os.environ[DIGEST_CACHE_ENV] = str(tmp_path_factory.mktemp("digests"))
    yield
    if before is None:
        os.environ.pop(DIGEST_CACHE_ENV, None)
    else:
        os.environ[DIGEST_CACHE_ENV] = before
