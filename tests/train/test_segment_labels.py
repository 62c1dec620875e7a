"""Training reads the same time-labelled timeline as answering: [prefix][cache_1][label_1] .. [question]."""

import pytest
import torch
from torch.nn import functional as F

from voco.generation import GenerationConfig, generate_tokens
from voco.train.build import build_model
from voco.train.data import encode, load_video
from voco.train.evaluate import greedy_answers
from voco.train.forward import batch_loss

LABEL = {"segment_label": " {start}"}


def _model_and_examples(tiny_config, compressor="voco", k=2):
    config = tiny_config()
    config.model.voco.update(compressor=compressor, k=k, prompt=LABEL)
    model = build_model(config.model, seed=0)
    world = config.data.world_config({"min_seconds": 2.0, "max_seconds": 7.0})
    examples = [load_video("train", i, world=world, base_seed=0, questions_per_video=2, frames_per_segment=2,
                           segment_seconds=2.0) for i in range(6)]
    short = min(examples, key=lambda e: len(e.segments))
    long = max(examples, key=lambda e: len(e.segments))
    assert len(long.segments) > len(short.segments)
    long.times = [3590.0 + 61.5 * i for i in range(len(long.segments))]  # a retrieved subset, past an hour
    return model, [long, short]


def inference_path_loss(model, batch) -> torch.Tensor:
    """Mean answer-token CE, each question alone through `past_from_kv` (with its video's start times) +
    `forward_tokens`: the unbatched inference path."""
    total, count = 0.0, 0
    firsts = [sum(batch.segment_counts[:v]) for v in range(len(batch.segment_counts))]
    for v, ids, a in zip(batch.row_video, batch.row_ids, batch.row_answer_start, strict=True):
        vision = model.vision_embeds(batch.segments[firsts[v] : firsts[v] + batch.segment_counts[v]])
        layout = model.layout(vision.shape[1])
        kv = model.compress_embeds(model.sequence_embeds(vision), layout)
        source = torch.full((kv.shape[0],), layout.kept_start)
        past, position = model.past_from_kv(kv, source, batch.prefix_ids, batch.segment_starts[v])
        logits = model.forward_tokens(ids, past, position, last_only=False)  # [len(ids), vocab]
        targets = torch.tensor(ids[a:])
        total = total + F.cross_entropy(logits[a - 1 : len(ids) - 1], targets, reduction="sum")
        count += len(targets)
    return total / count


@pytest.mark.parametrize("compressor,k", [("voco", 2), ("pool", 2), ("voco", 1)])
def test_training_loss_with_labels_equals_inference_path_loss(tiny_config, compressor, k):
    model, examples = _model_and_examples(tiny_config, compressor, k)
    batch = encode(model, examples)
    assert batch.segment_starts == [examples[0].times, [2.0 * i for i in range(len(examples[1].segments))]]
    loss, _ = batch_loss(model, batch)
    reference = inference_path_loss(model, batch)
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-5)
    # gradients flow through the caches into the labels' KV and agree with the inference path's
    params = list(model.vision_tower.parameters())[:2]
    for g, r in zip(torch.autograd.grad(loss, params), torch.autograd.grad(reference, params), strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)
    # the labels are read: other times, another loss
    examples[0].times = None
    other, _ = batch_loss(model, encode(model, examples))
    assert abs(float(other.detach()) - float(loss.detach())) > 1e-4


def test_validation_decodes_what_answering_decodes(tiny_config):
    model, examples = _model_and_examples(tiny_config)
    model.eval()
    with torch.no_grad():
        model.lm.lm_head.weight[model.tokenizer.eos_token_id] = 0.0  # decode every step
    batch = encode(model, examples)
    answers = greedy_answers(model, batch, max_new_tokens=4)
    caches = [model.compress(e.segments) for e in examples]
    for v, question, said in zip(batch.row_video, batch.row_questions, answers, strict=True):
        ids = list(generate_tokens(model, question, caches[v], GenerationConfig(max_new_tokens=4),
                                   batch.segment_starts[v]))
        assert said == model.tokenizer.decode(ids, skip_special_tokens=True)


def test_examples_carry_their_times(tiny_config):
    model, examples = _model_and_examples(tiny_config)
    assert examples[1].times == [2.0 * i for i in range(len(examples[1].segments))]  # load_video's own
    examples[1].times = examples[1].times[:-1]
    with pytest.raises(ValueError, match=r"segments but \d+ start times"):
        encode(model, examples)
