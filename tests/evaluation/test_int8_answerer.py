"""The held-out evaluation's int8 answerer: the model's own caches after the store's int8 round trip."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from evaluation.footage_eval import ModelAnswerer
from store.quant import round_trip
from voco.tiny import tiny_assembled_model


def test_int8_answerer_answers_from_the_round_tripped_caches(tmp_path):
    model = tiny_assembled_model(tmp_path)
    size, frames = model.config.vision_config.image_size, model.voco.frames_per_segment
    rng = np.random.default_rng(0)
    segments = [rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8) for _ in range(2)]
    video = SimpleNamespace(name="v", segments=segments, times=[(0.0, 2.0), (2.0, 4.0)])
    exact, int8 = ModelAnswerer("tiny", model), ModelAnswerer("tiny", model, cache_dtype="int8")
    assert int8.name == "tiny (int8 caches)" and exact.name == "tiny"
    for got, want in zip(int8.caches(video), exact.caches(video), strict=True):
        assert torch.equal(got.kv, round_trip(want.kv)) and not torch.equal(got.kv, want.kv)
        assert (got.source_position, got.fingerprint, got.compressor) == (want.source_position, want.fingerprint,
                                                                           want.compressor)
    assert isinstance(int8.answer(video, "What is shown?"), str)
    with pytest.raises(ValueError, match="cache_dtype must be one of"):
        ModelAnswerer("tiny", model, cache_dtype="fp8")
