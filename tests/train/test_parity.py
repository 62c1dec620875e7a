"""Training computes what inference uses: the batched training loss equals the two-stage inference-path loss."""

import pytest
import torch
from torch.nn import functional as F

from voco.train.build import build_model
from voco.train.data import encode, load_video
from voco.train.forward import batch_loss


def inference_path_loss(model, batch) -> torch.Tensor:
    """Mean answer-token CE, each question computed alone through past_from_kv + forward_tokens."""
    total, count, start = 0.0, 0, 0
    starts = []
    for c in batch.segment_counts:
        starts.append(start)
        start += c
    for v, ids, a in zip(batch.row_video, batch.row_ids, batch.row_answer_start, strict=True):
        segments = batch.segments[starts[v] : starts[v] + batch.segment_counts[v]]
        vision = model.vision_embeds(segments)
        layout = model.layout(vision.shape[1])
        kv = model.compress_embeds(model.sequence_embeds(vision), layout)
        past, position = model.past_from_kv(kv, torch.full((len(segments),), layout.kept_start), batch.prefix_ids)
        logits = model.forward_tokens(ids, past, position, last_only=False)  # [len(ids), vocab]
        targets = torch.tensor(ids[a:])
        total = total + F.cross_entropy(logits[a - 1 : len(ids) - 1], targets, reduction="sum")
        count += len(targets)
    return total / count


@pytest.mark.parametrize("compressor,k", [("voco", 1), ("voco", 2), ("pool", 2), ("full", 1), ("qformer", 2)])
def test_training_loss_equals_inference_path_loss(tiny_config, compressor, k):
    config = tiny_config()
    config.model.voco.update(compressor=compressor, k=k)
    model = build_model(config.model, seed=0)
    world = config.data.world_config({"min_seconds": 2.0, "max_seconds": 7.0})
    # videos with different segment counts exercise the padding of the batched timeline
    examples = [load_video("train", i, world=world, base_seed=0, questions_per_video=3, frames_per_segment=2,
                           segment_seconds=2.0) for i in range(3)]
    assert len({len(e.segments) for e in examples}) > 1
    batch = encode(model, examples)
    loss, _ = batch_loss(model, batch)
    reference = inference_path_loss(model, batch)
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-5)
    # gradients agree too (they flow through the caches into the vision tower)
    grads = torch.autograd.grad(loss, list(model.vision_tower.parameters())[:2])
    ref_grads = torch.autograd.grad(reference, list(model.vision_tower.parameters())[:2])
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)
