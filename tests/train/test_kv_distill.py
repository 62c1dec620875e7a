"""KV distillation (`voco.train.kv_distill`) on the tiny stand-in of the default's composition."""

import numpy as np
import pytest
import torch

from voco.tiny import tiny_assembled_model, tiny_model
from voco.train.class_mixture import ClassMixtureSpec, ClassMixtureWorld
from voco.train.config import ConfigError, StageSpec
from voco.train.forward import compress_segments
from voco.train.kv_distill import kv_distill_loss, summary_vision, teacher_kv


@pytest.fixture
def model_and_segments(tmp_path):
    model = tiny_assembled_model(tmp_path)
    world = ClassMixtureWorld.for_model(model, ClassMixtureSpec(min_segments=3, max_segments=3))
    segments = [s for i in range(2) for s in world.load("train", i).segments]
    return model, segments


def test_summary_token_is_the_top_class_names_last_token(model_and_segments):
    model, segments = model_and_segments
    vision, index = summary_vision(model, segments)
    projector = model.projector
    per_frame = projector.tokens_per_frame
    for b, segment in enumerate(segments):
        top = int(np.argmax(segment[-1, 0]))  # the last frame's top class
        name_length = int(projector.name_mask[top].sum())
        assert index[b].tolist() == [(len(segment) - 1) * per_frame + name_length - 1]
    expected = projector(torch.as_tensor(np.stack(segments)).flatten(0, 1)).reshape(len(segments), -1,
                                                                                    vision.shape[-1])
    torch.testing.assert_close(vision, expected)


def test_teacher_is_the_compress_pass_with_the_summary_token_in_the_voco_slot(model_and_segments):
    """With the <voco> embedding row set to a segment's summary token, that segment's student is its teacher;
    other segments (other summary tokens) are not."""
    model, segments = model_and_segments
    vision, index = summary_vision(model, segments)
    with torch.no_grad():
        model.lm.get_input_embeddings().weight[model.voco_token_id] = vision[0, index[0, 0]]
        kv, _ = compress_segments(model, segments)
        torch.testing.assert_close(kv[:1], teacher_kv(model, segments[:1]))
        assert float(kv_distill_loss(model, segments[:1], kv[:1])) < 1e-10
        assert float(kv_distill_loss(model, segments[1:], kv[1:])) > 1e-4


def test_training_on_the_loss_pulls_voco_toward_the_summary_token(model_and_segments):
    model, segments = model_and_segments
    params = [p for n, p in model.named_parameters() if n.endswith(("lora_A", "lora_B"))]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    losses = []
    for _ in range(15):
        kv, _ = compress_segments(model, segments)
        loss = kv_distill_loss(model, segments, kv)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses


def test_needs_a_projector_that_names_a_summary_token_and_the_cache_view():
    model = tiny_model("llama", k=1)
    frames = [np.zeros((model.voco.frames_per_segment, 32, 32, 3), np.uint8)]
    with pytest.raises(ValueError, match="kv_distill_weight needs a projector"):
        summary_vision(model, frames)
    with pytest.raises(ConfigError, match="kv_distill_weight must be >= 0 and needs view 'cache'"):
        StageSpec(name="read", steps=1, view="full", kv_distill_weight=1.0)


def test_k_summary_tokens_end_at_the_names_last_token(model_and_segments):
    model, segments = model_and_segments
    probs = torch.as_tensor(np.stack([s[-1] for s in segments]))  # [B, 1, classes]
    last = model.projector.summary_index(probs)[:, 0]
    two = model.projector.summary_index(probs, 2)
    assert torch.equal(two[:, 1], torch.where(last >= 1, last, last + 1))
    assert torch.equal(two[:, 0], (last - 1).clamp_min(0))
