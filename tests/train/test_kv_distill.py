"""KV distillation (`voco.train.kv_distill`) on the tiny stand-in of the default's composition."""

import numpy as np
import pytest
import torch

from voco.recompute import OnePassCache
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


def test_teacher_is_the_summary_tokens_kv_in_its_own_context_at_the_voco_position(model_and_segments):
    """Reference: the LM run over [<seg>, V_1 .. V_j] only (the summary token j last), with positions shifted so
    that token j sits where <voco> does; RoPE is relative, so its KV is the in-context KV moved to the slot."""
    model, segments = model_and_segments
    vision, index = summary_vision(model, segments)
    target = teacher_kv(model, segments)  # [B, layers, 2, H, 1, D]
    voco_position = model.compressor.layout(vision.shape[1]).kept_start
    embeds = model.compressor.sequence_embeds(model, vision)  # [B, 1 + n + k, hidden]
    with torch.no_grad():
        for b in range(len(segments)):
            j = int(index[b, 0]) + 1  # the summary token's place in [<seg>, V_1 .. V_n]
            positions = torch.arange(j + 1)[None] + (voco_position - j)
            out = model.lm.model(inputs_embeds=embeds[b : b + 1, : j + 1], position_ids=positions,
                                 cache=OnePassCache(), use_cache=True)
            for layer, cached in enumerate(out.cache.layers):
                torch.testing.assert_close(target[b, layer, 0, :, 0], cached.keys[0, :, j], atol=1e-4, rtol=1e-4)
                torch.testing.assert_close(target[b, layer, 1, :, 0], cached.values[0, :, j], atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        kv, _ = compress_segments(model, segments)
        assert float(kv_distill_loss(kv, target)[0]) > 1e-3  # an untrained <voco> is not there yet


def test_training_on_the_loss_pulls_voco_toward_the_summary_token(model_and_segments):
    model, segments = model_and_segments
    params = [p for n, p in model.named_parameters() if n.endswith(("lora_A", "lora_B"))]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    losses = []
    for _ in range(15):
        target = teacher_kv(model, segments)
        kv, _ = compress_segments(model, segments)
        loss, _ = kv_distill_loss(kv, target)
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


def test_summary_view_is_the_teacher_with_gradients(model_and_segments):
    """The `summary` training view reads exactly what kv_distill distils toward, and a stage may read it."""
    model, segments = model_and_segments
    kv, layout = compress_segments(model, segments, view="summary")
    assert kv.requires_grad and layout == model.compressor.layout(
        model.projector.tokens_per_frame * model.voco.frames_per_segment)
    torch.testing.assert_close(kv.detach(), teacher_kv(model, segments))
    assert StageSpec(name="read_summary", steps=1, view="summary").view == "summary"


def test_frozen_teacher_keeps_the_stage_start_targets_and_restores_the_weights(model_and_segments):
    from voco.train.kv_distill import FrozenTeacher
    from voco.train.schedule import set_trainable

    model, segments = model_and_segments
    set_trainable(model, ["adapters", "projector"])
    before = teacher_kv(model, segments)
    teacher = FrozenTeacher(model)
    assert teacher.weights and all(n.endswith(("lora_A", "lora_B")) or n.startswith("projector.")
                                   for n in teacher.weights)
    with torch.no_grad():  # the stage trains: the adapters move
        for n, p in model.named_parameters():
            if n.endswith("lora_B"):
                p.add_(torch.randn_like(p) * 0.5)
    moved = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert not torch.allclose(teacher_kv(model, segments), before, atol=1e-4)  # the live teacher moved too
    torch.testing.assert_close(teacher_kv(model, segments, teacher), before)
    for n, p in model.named_parameters():  # and the trained weights are back, bit for bit
        if n in moved:
            assert torch.equal(p, moved[n]), n
    with pytest.raises(ValueError, match="was the stage's `train` list changed"):
        teacher.load_state_dict({"lm.other": torch.zeros(1)})


def test_frozen_teacher_targets_leave_the_answer_pass_trainable(model_and_segments):
    """The teacher swaps weights in place; computed before the pass, the pass still backpropagates."""
    from voco.train.kv_distill import FrozenTeacher
    from voco.train.schedule import set_trainable

    model, segments = model_and_segments
    set_trainable(model, ["adapters"])
    teacher = FrozenTeacher(model)
    target = teacher_kv(model, segments, teacher)
    kv, _ = compress_segments(model, segments)
    loss, _ = kv_distill_loss(kv, target, spread=True)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)


def test_spread_scale_charges_a_cache_that_ignores_its_frame_in_full():
    torch.manual_seed(0)
    base = torch.randn(1, 3, 2, 2, 1, 8) * 10  # [B, layers, 2, H, k, D]: a large shared part ...
    target = base + torch.randn(6, 3, 2, 2, 1, 8)  # ... and a small part per segment
    constant = target.mean(0, keepdim=True).expand_as(target)
    by_norm, stats = kv_distill_loss(constant, target)
    by_spread, _ = kv_distill_loss(constant, target, spread=True)
    assert float(by_norm) < 0.02 and float(by_spread) == pytest.approx(1.0, abs=1e-5)
    assert stats["cache_spread"] == pytest.approx(0.0, abs=1e-6)
    exact, stats = kv_distill_loss(target, target, spread=True)
    assert float(exact) == 0.0 and stats["cache_spread"] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ConfigError, match="set kv_distill_weight > 0"):
        StageSpec(name="compress", steps=1, kv_distill_spread=True)
