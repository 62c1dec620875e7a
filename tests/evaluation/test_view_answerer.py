"""The views diagnostic of the held-out evaluation (`ViewAnswerer`) on the tiny stand-in of the default's
composition: the full view answers from every vision token's KV, the summary view from the distillation target."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from evaluation.footage_eval import ModelAnswerer, ViewAnswerer
from voco.tiny import tiny_assembled_model
from voco.train.kv_distill import teacher_kv


@pytest.fixture
def model_and_video(tmp_path):
    model = tiny_assembled_model(tmp_path)
    size, frames = model.config.vision_config.image_size, model.voco.frames_per_segment
    rng = np.random.default_rng(0)
    segments = [rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8) for _ in range(3)]
    video = SimpleNamespace(name="v", segments=segments, times=[(2.0 * i, 2.0 * i + 2) for i in range(len(segments))])
    return model, video


def test_the_full_view_reads_every_vision_token_and_leaves_the_model_as_it_was(model_and_video):
    model, video = model_and_video
    compressor = model.compressor
    full = ViewAnswerer("tiny", model, "full", max_new_tokens=3)
    caches = full.caches(video)
    n_vision = model.projector.tokens_per_frame * model.voco.frames_per_segment
    assert [c.k for c in caches] == [n_vision] * len(video.segments) and n_vision > model.k
    assert all(c.compressor == "full" for c in caches)
    assert isinstance(full.answer(video, "What is shown?"), str)
    assert model.compressor is compressor and full.name == "tiny (full view)"
    assert ModelAnswerer("tiny", model).caches(video)[0].k == model.k  # the model's own caches are untouched


def test_the_summary_view_answers_from_the_distillation_target(model_and_video):
    model, video = model_and_video
    summary = ViewAnswerer("tiny", model, "summary", max_new_tokens=3)
    caches = summary.caches(video)
    torch.testing.assert_close(torch.stack([c.kv for c in caches]), teacher_kv(model, video.segments))
    assert isinstance(summary.answer(video, "What is shown?"), str)
    with pytest.raises(ValueError, match="view must be one of"):
        ViewAnswerer("tiny", model, "cache")
