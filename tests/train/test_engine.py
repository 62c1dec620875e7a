"""Engines: kinds resolve to classes; transformers' gradient checkpointing recomputes and gives the same loss and
gradients through VoCo's caches; bf16 autocast runs the LM in bf16 over fp32 weights; tokens are counted."""

import pytest
import torch

from voco.recompute import OnePassCache, enable_gradient_checkpointing
from voco.train.build import build_model
from voco.train.config import ENGINE_KINDS, EngineSpec
from voco.train.data import encode, load_video
from voco.train.engine import ENGINES, Engine, make_engine
from voco.train.forward import batch_loss
from voco.train.meter import StepMeter


def _batch(config, model, videos=2):
    world = config.data.world_config()
    return encode(model, [load_video("train", i, world=world, base_seed=0, questions_per_video=3,
                                     frames_per_segment=2, segment_seconds=2.0) for i in range(videos)])


def _loss_and_grads(config, *, checkpointing=False, precision="fp32"):
    model = build_model(config.model)
    engine = Engine(EngineSpec(precision=precision, gradient_checkpointing=checkpointing), device="cpu")
    engine.prepare(model)
    model.train()
    calls, dtypes = [], []  # every run of layer 0's MLP (the backward's recomputes included), its output dtype
    mlp = model.lm.model.layers[0].mlp
    forward = mlp.forward
    # counted on entry: a recompute stops inside the MLP once it has what the backward needs; hooks skip it
    mlp.forward = lambda *a, **k: calls.append(1) or forward(*a, **k)
    mlp.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    batch = _batch(config, model)
    with engine.autocast():
        loss, _ = batch_loss(model, batch)
    forward_calls = len(calls)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads, forward_calls, (calls, dtypes), model


def test_kinds_resolve_to_classes():
    assert tuple(ENGINES) == ENGINE_KINDS
    assert all(issubclass(cls, Engine) and cls.kind == kind for kind, cls in ENGINES.items())
    assert type(make_engine(EngineSpec(), "cpu")) is Engine


def test_distributed_kinds_need_torchrun_and_single_refuses_many_processes(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(RuntimeError, match="runs under torchrun"):
        make_engine(EngineSpec(kind="ddp"), "cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="engine.kind is 'single'"):
        make_engine(EngineSpec(kind="single"), "cpu")


def test_gradient_checkpointing_recomputes_and_keeps_loss_and_gradients(tiny_config):
    config = tiny_config()
    loss, grads, _, (plain_calls, _), _ = _loss_and_grads(config)
    loss_ck, grads_ck, forward_calls, (ck_calls, _), model = _loss_and_grads(config, checkpointing=True)
    assert model.lm.model.layers[0].gradient_checkpointing and model.lm.model.layers[0]._can_checkpoint_with_cache
    assert len(ck_calls) == 2 * forward_calls == 2 * len(plain_calls)  # every pass replayed in the backward
    assert loss_ck == loss and grads.keys() == grads_ck.keys()
    for name in grads:
        torch.testing.assert_close(grads_ck[name], grads[name], rtol=0, atol=0, msg=name)


def test_bf16_autocast_runs_the_lm_in_bf16_over_fp32_weights(tiny_config):
    config = tiny_config()
    loss, grads, _, (_, calls), model = _loss_and_grads(config)
    loss16, grads16, _, (_, calls16), model16 = _loss_and_grads(config, precision="bf16")
    assert set(calls) == {torch.float32} and set(calls16) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model16.parameters())
    assert all(g.dtype == torch.float32 for g in grads16.values())
    assert loss16 == pytest.approx(loss, rel=2e-2)


def test_one_pass_cache_replays_without_growing():
    cache = OnePassCache([(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4))])
    new = torch.ones(1, 2, 1, 4)
    first = cache.update(new, new, 0)
    again = cache.update(new, new, 0)  # what a checkpointed layer's replay does
    assert first[0].shape == again[0].shape == (1, 2, 4, 4) and cache.get_seq_length() == 4


def test_checkpointing_needs_a_transformers_model():
    with pytest.raises(TypeError, match="not a transformers model"):
        enable_gradient_checkpointing(torch.nn.Linear(2, 2))


def test_meter_counts_every_token_the_lm_reads(tiny_config):
    config = tiny_config()
    model = build_model(config.model)
    batch = _batch(config, model)
    meter = StepMeter(model.lm.model, world=2)
    meter.start()
    batch_loss(model, batch)
    figures = meter.stop(samples=2)
    vision = model.vision_embeds(batch.segments[:1]).shape[1]
    rows = len(batch.row_ids) * max(len(r) for r in batch.row_ids)  # question rows, padded to the longest
    expected = len(batch.segments) * model.layout(vision).length + len(batch.prefix_ids) + rows
    assert figures["tokens"] == 2 * expected
    summary = meter.summary(100.0, "cpu_peak_rss")
    assert summary["samples_per_s"] > 0 and summary["tokens_per_s"] > summary["samples_per_s"]
    meter.close()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_llava7b_shaped_stage2_steps_on_gpu(capsys):
    """bench/bench_train.py's GPU command on a 2-layer LLaVA-1.5-7B-shaped stand-in: bf16 + checkpointing."""
    import json

    from bench.bench_train import main

    main(["--model", "llava7b:2", "--device", "cuda", "--precision", "bf16", "--checkpointing", "--steps", "2",
          "--warmup", "1", "--seconds", "2"])
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["memory"] == "cuda_max_allocated" and figures["peak_memory_mb"] > 1000
    assert figures["samples_per_s"] > 0 and figures["loss_last"] == figures["loss_last"]  # finite, not NaN
