"""The training loop: stages, AdamW with warm-up + cosine, clipping, validation, checkpoints and exact resume.

Output folder layout (`output_dir`)::

    last/                 resumable state, rewritten every `save_every` steps and at each stage end:
      (checkpoint files)  the model as a VoCo checkpoint folder (safetensors, tokenizer, voco.json)
      optimizer.pt        AdamW state (tensors only; read back with torch.load(weights_only=True))
      trainer_state.json  stage, step, RNG state, history (losses, validation accuracies)
    final/                the trained model (VoCo checkpoint folder) + metrics.json + curves.png
    curves.png            loss and validation accuracy over steps
    train_config.yaml     the resolved config

Resuming (`--resume`, default when `last/` exists) restores weights, optimizer moments, the step (the
learning rate is a pure function of it), the torch RNG state and the data position (the train stream is
a pure function of the step, `data.TrainStream`), so N/2 + resume + N/2 steps give the weights of N straight.
Under torchrun (WORLD_SIZE > 1) every process trains on its own videos through DDP; rank 0 validates and writes.
"""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import yaml
from torch import nn

from voco.checkpoint import load_checkpoint
from voco.lora import lora_state
from voco.train.build import DTYPE, build_model
from voco.train.config import StageSpec, TrainConfig
from voco.train.data import Prefetcher, TrainStream, encode
from voco.train.datasets import DATASETS, make_dataset
from voco.train.evaluate import blind_baseline, evaluate
from voco.train.forward import batch_loss
from voco.train.patches import PatchHeads, feature_size, load_patch_example, patch_loss
from voco.train.probe import CacheProbe, cache_numel

STATE_JSON = "trainer_state.json"
OPTIMIZER = "optimizer.pt"
AUX_HEADS = "aux_heads.pt"


# ---- schedule and parameter groups -----------------------------------------------------------------


def lr_at(stage: StageSpec, step: int) -> float:
    """Linear warm-up to `lr`, then cosine decay to `lr * min_lr_ratio` at the stage's last step."""
    if stage.warmup_steps and step < stage.warmup_steps:
        return stage.lr * (step + 1) / stage.warmup_steps
    span = max(1, stage.steps - stage.warmup_steps)
    progress = min(1.0, (step - stage.warmup_steps) / span)
    floor = stage.lr * stage.min_lr_ratio
    return floor + (stage.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def set_trainable(model, groups: list[str]) -> list[dict]:
    """Freeze everything, unfreeze the stage's groups; return AdamW parameter groups (no decay on norms/biases)."""
    for p in model.parameters():
        p.requires_grad_(False)
        p._voco_row_mask = None  # type: ignore[attr-defined]
    modules = {"vision": model.vision_tower, "projector": model.projector, "lm": model.lm}
    if model.compressor.module is not None:  # the compressor's own weights train as its module name
        modules[model.compressor.module_name] = model.compressor.module
    for name in groups:
        if name in modules:
            for p in modules[name].parameters():
                p.requires_grad_(True)
    if "adapters" in groups:
        adapters = lora_state(model.lm)
        if not adapters:
            raise ValueError("a stage trains 'adapters' but the model has no LoRA adapters (an assembled model has)")
        for p in adapters.values():
            p.requires_grad_(True)
    embedding = model.lm.get_input_embeddings().weight
    if "voco_embedding" in groups and "lm" not in groups:
        # only the <voco> / segment-start rows of the input embeddings learn
        embedding.requires_grad_(True)
        rows = torch.zeros(embedding.shape[0], 1, dtype=embedding.dtype, device=embedding.device)
        rows[[model.voco_token_id, model.segment_start_id]] = 1
        embedding._voco_row_mask = rows  # type: ignore[attr-defined]
    decay, no_decay, masked = [], [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if getattr(p, "_voco_row_mask", None) is not None:
            masked.append(p)
        elif p.dim() < 2:
            no_decay.append(p)
        else:
            decay.append(p)
    out = [{"params": decay, "weight_decay": None}, {"params": no_decay, "weight_decay": 0.0},
           {"params": masked, "weight_decay": 0.0}]
    return [g for g in out if g["params"]]


def mask_row_grads(model) -> None:
    for p in model.parameters():
        mask = getattr(p, "_voco_row_mask", None)
        if mask is not None and p.grad is not None:
            p.grad.mul_(mask)


class TrainModule(nn.Module):
    """forward(batch) -> loss, so that DDP sees the whole step as one module call.

    The stage's throw-away auxiliary heads live here, seeded per stage: the per-patch heads of a `patches`
    stage (`voco.train.patches`) or the cache probe of a stage with probe_weight > 0 (`voco.train.probe`).
    """

    def __init__(self, model, stage: StageSpec, config: TrainConfig, index: int):
        super().__init__()
        self.model = model
        self.stage = stage
        self.config = config
        self.heads = None
        with torch.random.fork_rng(devices=[]):  # the heads' init must not move the resumable RNG stream
            torch.manual_seed(config.seed + 1000 + index)
            if stage.objective == "patches":
                self.heads = PatchHeads(feature_size(model)).to(model.device)
            elif stage.probe_weight > 0:
                self.heads = CacheProbe(cache_numel(model)).to(model.device)

    def forward(self, batch):
        if self.stage.objective == "patches":
            return patch_loss(self.model, self.heads, batch)
        return batch_loss(self.model, batch, view=self.stage.view, kl_weight=self.stage.kl_weight,
                          kl_temperature=self.stage.kl_temperature, chunk=self.config.segment_chunk,
                          checkpointing=self.config.gradient_checkpointing, probe=self.heads,
                          probe_weight=self.stage.probe_weight)


# ---- state ------------------------------------------------------------------------------------------


@dataclass
class TrainerState:
    stage: int = 0
    """Index of the stage in progress (== len(stages) when training is done)."""
    step: int = 0
    """Steps done in the stage in progress."""
    global_step: int = 0
    elapsed_s: float = 0.0
    rng: str = ""
    history: list = field(default_factory=list)
    validation: list = field(default_factory=list)

    def save(self, folder: Path) -> None:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        (folder / STATE_JSON).write_text(json.dumps(data, indent=1))

    @classmethod
    def load(cls, folder: Path) -> TrainerState:
        return cls(**json.loads((folder / STATE_JSON).read_text()))


def _rng_state() -> str:
    return base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()


def _set_rng_state(text: str) -> None:
    if text:
        import numpy as np

        torch.set_rng_state(torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype=np.uint8).copy()))


def _atomic_replace_dir(tmp: Path, final: Path) -> None:
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def save_state(folder: Path, model, optimizer, state: TrainerState, heads: nn.Module | None = None) -> None:
    """Write model + optimizer + state to `folder` atomically (a crash mid-write keeps the previous one)."""
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    if optimizer is not None:
        torch.save(optimizer.state_dict(), tmp / OPTIMIZER)
        if heads is not None:  # a stage with auxiliary heads in progress: they are part of the resumable state
            torch.save(heads.state_dict(), tmp / AUX_HEADS)
    state.rng = _rng_state()
    state.save(tmp)
    _atomic_replace_dir(tmp, folder)


# ---- distributed ------------------------------------------------------------------------------------


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(config: TrainConfig) -> tuple[Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    want = config.device
    if want == "auto":
        want = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    elif want == "cuda":
        want = f"cuda:{local}"
    device = torch.device(want)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    rank = torch.distributed.get_rank() if world > 1 else 0
    return Dist(rank, world, local), device


# ---- the loop ---------------------------------------------------------------------------------------


def _loader(config: TrainConfig, model, split: str, stage: StageSpec | None = None):
    voco = model.voco
    if stage is not None and stage.objective == "patches":
        vision = model.config.vision_config
        return partial(load_patch_example, world=config.data.world_config(stage.world),
                       base_seed=config.data.base_seed, frames_per_segment=voco.frames_per_segment,
                       grid=vision.image_size // vision.patch_size)
    return make_dataset(config, model, split, stage).load


def eval_examples(config: TrainConfig, model, split: str, count: int) -> list:
    load = _loader(config, model, split)
    return [load(i) for i in range(count)]


def train(config: TrainConfig, *, resume: bool = True, progress: bool = True, max_steps: int | None = None,
          log=print) -> dict:
    """Run (or finish) every stage of `config`; returns the final test metrics.

    max_steps: stop once the global step reaches it, after writing the resumable state `last/` (a time-boxed
    session; the next call resumes). Returns {} then.
    """
    dist, device = init_distributed(config)
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.output_dir)
    last = out / "last"
    torch.manual_seed(config.seed)
    if resume and (last / STATE_JSON).is_file():
        state = TrainerState.load(last)
        model = load_checkpoint(last, dtype=DTYPE[config.model.dtype])
        _set_rng_state(state.rng)
        log(f"resuming from {last}: stage {state.stage} step {state.step} (global step {state.global_step})")
    else:
        state = TrainerState()
        model = build_model(config.model, seed=config.seed)
    model.to(device)
    if config.gradient_checkpointing:
        model.vision_tower.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.yaml").write_text(
            f"# {config.command}\n" + yaml.safe_dump(config.to_dict(), sort_keys=False))
    val = eval_examples(config, model, "val", config.data.val_videos) if dist.main else []
    started = time.perf_counter() - state.elapsed_s
    first_global = sum(s.steps for s in config.stages[: state.stage])

    for index, stage in enumerate(config.stages):
        if index < state.stage:
            continue
        groups = set_trainable(model, stage.train)
        module: nn.Module = TrainModule(model, stage, config, index)
        patches = stage.objective == "patches"
        if module.heads is not None:
            groups.append({"params": list(module.heads.parameters()), "weight_decay": None})
            if state.step > 0 and (last / AUX_HEADS).is_file():
                module.heads.load_state_dict(torch.load(last / AUX_HEADS, weights_only=True, map_location=device))
        for g in groups:
            if g["weight_decay"] is None:
                g["weight_decay"] = config.weight_decay
        optimizer = torch.optim.AdamW(groups, lr=lr_at(stage, state.step), betas=config.betas,
                                      weight_decay=config.weight_decay)
        if state.step > 0 and (last / OPTIMIZER).is_file():
            optimizer.load_state_dict(torch.load(last / OPTIMIZER, weights_only=True, map_location=device))
        heads = module.heads
        if dist.world > 1:
            # unused parameters exist (e.g. the vision tower's last layer / post-layernorm when features come
            # from an earlier layer, <voco> in the full view), so DDP must look for them
            module = nn.parallel.DistributedDataParallel(
                module, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
        model.train()
        stream = TrainStream(num_videos=config.data.train_videos, videos_per_batch=config.data.videos_per_batch,
                             seed=config.seed, rank=dist.rank, world_size=dist.world)
        # the stream is indexed by the global step, so every stage sees fresh videos
        loader = _loader(config, model, "train", stage)
        batches = Prefetcher(loader, stream, first_global + state.step, first_global + stage.steps,
                             config.data.workers)
        bar = None
        if progress and dist.main:
            from tqdm import tqdm

            bar = tqdm(total=stage.steps, initial=state.step, desc=f"{stage.name}", unit="step", dynamic_ncols=True)
        ema = None
        tick, questions_seen, videos_seen = time.perf_counter(), 0, 0
        for examples in batches:
            lr = lr_at(stage, state.step)
            for g in optimizer.param_groups:
                g["lr"] = lr
            batch = examples if patches else encode(model, examples)
            loss, stats = module(batch)
            loss.backward()
            mask_row_grads(model)
            params = [p for g in optimizer.param_groups for p in g["params"]]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip) if config.grad_clip else None
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.global_step += 1
            value = float(loss.detach())
            ema = value if ema is None else 0.95 * ema + 0.05 * value
            questions_seen += 0 if patches else batch.num_questions
            videos_seen += len(examples)
            entry = {"step": state.global_step, "stage": stage.name, "loss": value, "lr": lr, **stats}
            if grad_norm is not None:
                entry["grad_norm"] = float(grad_norm)
            state.history.append(entry)
            if bar is not None:
                rate = time.perf_counter() - tick
                extra = ({f"{k[4:]}_acc": f"{v:.2f}" for k, v in stats.items() if k.startswith("acc_")} if patches
                         else {"q_s": f"{questions_seen / rate:.1f}"})
                bar.set_postfix(loss=f"{ema:.3f}", lr=f"{lr:.1e}", **extra, vid_s=f"{videos_seen / rate:.2f}")
                bar.update(1)
            end_of_stage = state.step == stage.steps
            if dist.main and not patches and (state.global_step % config.eval_every == 0 or end_of_stage):
                result = evaluate(model, val, max_new_tokens=config.eval_max_new_tokens)
                state.validation.append({"step": state.global_step, "stage": stage.name,
                                         **{k: v for k, v in result.items() if k != "samples"}})
                msg = " ".join(f"{t}={a:.2f}" for t, a in result["accuracy"].items())
                (bar.write if bar is not None else log)(
                    f"[val step {state.global_step}] avg {result['average']:.3f} | {msg}")
            if end_of_stage:
                state.stage, state.step = index + 1, 0
            stop = max_steps is not None and state.global_step >= max_steps
            if dist.main and (state.global_step % config.save_every == 0 or end_of_stage or stop):
                state.elapsed_s = time.perf_counter() - started
                save_state(last, model, None if end_of_stage else optimizer, state, heads)
                plot_curves(state, out / "curves.png")
            if dist.world > 1:
                torch.distributed.barrier()
            if stop:
                break
        if bar is not None:
            bar.close()
        if max_steps is not None and state.global_step >= max_steps and state.stage < len(config.stages):
            log(f"stopped at global step {state.global_step} (max_steps); resume to continue")
            return {}
        first_global += stage.steps
    state.elapsed_s = time.perf_counter() - started
    if not dist.main:
        return {}
    return finish(config, model, state, out, log=log)


def finish(config: TrainConfig, model, state: TrainerState, out: Path, *, log=print) -> dict:
    """Save `final/` (model, metrics, curve), evaluate on the test split, and export if configured."""
    final = out / "final"
    model.eval()
    if any(stage.view == "cache" and stage.objective == "answers" for stage in config.stages):
        model.voco.voco_tuned = True  # it has now been trained to compress into <voco>
    test = eval_examples(config, model, "test", config.data.test_videos)
    started = time.perf_counter()
    result = evaluate(model, test, max_new_tokens=config.eval_max_new_tokens)
    blind = (blind_baseline(test, world=config.data.world_config(), base_seed=config.data.base_seed,
                            questions_per_video=config.data.questions_per_video,
                            train_videos=config.data.blind_videos)
             if DATASETS[config.data.dataset].synthetic_world else {})
    metrics = {
        "test": result,
        "blind_baseline": {k: v for k, v in blind.items() if k != "samples"},
        "test_videos": config.data.test_videos,
        "test_questions": sum(result["count"].values()),
        "validation": state.validation[-1] if state.validation else None,
        "train_seconds": round(state.elapsed_s, 1),
        "eval_seconds": round(time.perf_counter() - started, 1),
        "steps": state.global_step,
        "evaluation": "open-ended greedy decoding from the VoCo caches, exact match of the one-word answer",
    }
    save_state(final, model, None, state)
    (final / "metrics.json").write_text(json.dumps(metrics, indent=1))
    plot_curves(state, out / "curves.png")
    shutil.copy(out / "curves.png", final / "curves.png")
    msg = " ".join(f"{t}={a:.3f}" for t, a in result["accuracy"].items())
    log(f"test ({metrics['test_questions']} questions): average {result['average']:.3f} | {msg}")
    if config.export_dir:
        export(config, model, final, Path(config.export_dir), metrics)
        log(f"exported to {config.export_dir}")
    return metrics


def export(config: TrainConfig, model, final: Path, folder: Path, metrics: dict) -> None:
    """A clean checkpoint folder (no trainer state): model, config, metrics, curve, MODEL_CARD.md."""
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder)
    (folder / "train_config.yaml").write_text(
        f"# {config.command}\n" + yaml.safe_dump(config.to_dict(), sort_keys=False))
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1))
    shutil.copy(final / "curves.png", folder / "curves.png")
    from voco.train.card import model_card

    (folder / "MODEL_CARD.md").write_text(model_card(config, model, metrics))


def plot_curves(state: TrainerState, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [h["step"] for h in state.history]
    losses = [h["loss"] for h in state.history]
    if losses:
        ax1.plot(steps, losses, alpha=0.3, label="loss")
        smooth, acc = [], None
        for v in losses:
            acc = v if acc is None else 0.95 * acc + 0.05 * v
            smooth.append(acc)
        ax1.plot(steps, smooth, label="loss (EMA 0.95)")
    ax1.set_xlabel("step")
    ax1.set_ylabel("answer-token cross-entropy")
    ax1.set_yscale("log")
    ax1.legend()
    if state.validation:
        vsteps = [v["step"] for v in state.validation]
        ax2.plot(vsteps, [v["average"] for v in state.validation], "k-o", label="average", linewidth=2)
        types = sorted({t for v in state.validation for t in v["accuracy"]})
        for t in types:
            ax2.plot(vsteps, [v["accuracy"].get(t, float("nan")) for v in state.validation], alpha=0.6, label=t)
    ax2.set_xlabel("step")
    ax2.set_ylabel("val accuracy (greedy, exact match)")
    ax2.set_ylim(0, 1)
    if state.validation:
        ax2.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
