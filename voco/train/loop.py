"""The training loop: stages, AdamW with warm-up + cosine, clipping, validation, checkpoints and exact resume.

Output folder layout (`output_dir`)::

    last/                 resumable state, rewritten every `save_every` steps and at each stage end:
      (checkpoint files)  the model as a VoCo checkpoint folder (safetensors, tokenizer, voco.json)
      optimizer.pt        AdamW state (tensors only; read back with torch.load(weights_only=True))
      trainer_state.json  stage, step, RNG state, history (losses, validation accuracies)
    final/                the trained model (VoCo checkpoint folder) + metrics.json + curves.png
    curves.png            loss and validation accuracy over steps
    train_config.yaml     the resolved config

Resuming (`resume: auto`, the default: from `last/` when it exists; or `resume: PATH`) restores weights,
optimizer moments, the step (the learning-rate schedule and the data position are pure functions of it: the
train stream is `data.TrainStream`), the auxiliary heads and the RNG states (torch CPU/CUDA, numpy, python),
so N/2 + resume + N/2 steps give the weights of N straight.
How steps run is the engine's business (`voco.train.engine`: single, ddp, fsdp; bf16 autocast; gradient
checkpointing). Under torchrun every process trains on its own videos; rank 0 validates and writes.
Every step's history entry has its time and LM tokens; the log at each validation and `final/metrics.json`
(`throughput`) give samples/s, tokens/s and peak memory (CUDA max allocated, or the process's peak RSS).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch import nn

from voco.model import VoCoModel
from voco.train.build import DTYPE, build_model
from voco.train.config import StageSpec, TrainConfig
from voco.train.data import Prefetcher, TrainStream
from voco.train.datasets import eval_examples, make_dataset
from voco.train.engine import Engine, make_engine
from voco.train.evaluate import evaluate
from voco.train.finish import finish, plot_curves
from voco.train.kv_distill import FrozenTeacher
from voco.train.meter import StepMeter
from voco.train.schedule import lr_at, mask_row_grads, set_trainable
from voco.train.state import AUX_HEADS, KV_TEACHER, OPTIMIZER, TrainerState, resume_from, save_state, set_rng_states


class TrainModule(nn.Module):
    """forward(batch) -> loss, so that DDP sees the whole step as one module call.

    The stage's throw-away auxiliary heads live here, seeded per stage: what its objective asks for
    (`voco.train.objectives`: the per-patch heads of a `patches` stage, the cache probe of a stage with
    probe_weight > 0); its loss is the objective's.
    """

    def __init__(self, model, stage: StageSpec, config: TrainConfig, index: int):
        super().__init__()
        self.model = model
        self.stage = stage
        self.config = config
        self.heads = None
        # built after the stage's groups are set trainable: the weights it freezes are those the stage trains
        self.kv_teacher = FrozenTeacher(model) if stage.kv_distill_frozen_teacher else None
        with torch.random.fork_rng(devices=[]):  # the heads' init must not move the resumable RNG stream
            torch.manual_seed(config.seed + 1000 + index)
            self.heads = stage.training_objective.heads(model, stage)

    def forward(self, batch):
        return self.stage.training_objective.loss(self, batch)


# ---- state ------------------------------------------------------------------------------------------


# ---- the loop ---------------------------------------------------------------------------------------


def _loader(config: TrainConfig, model, split: str, stage: StageSpec | None = None):
    if stage is not None:
        return stage.training_objective.loader(config, model, split, stage)
    return make_dataset(config, model, split, stage).load


@dataclass
class Run:
    """What the stages of one `train` call share."""

    config: TrainConfig
    engine: Engine
    model: object
    state: TrainerState
    source: Path | None
    """The resumable state this run started from (None: a fresh start)."""
    out: Path
    val: list
    started: float
    meter: StepMeter
    log: object = print

    @property
    def last(self) -> Path:
        return self.out / "last"


def train(config: TrainConfig, *, resume: bool = True, progress: bool = True, max_steps: int | None = None,
          log=print) -> dict:
    """Run (or finish) every stage of `config`; returns the final test metrics.

    resume: False starts over whatever `config.resume` says. max_steps: stop once the global step reaches it,
    after writing the resumable state `last/` (a time-boxed session; the next call resumes). Returns {} then.
    """
    engine = make_engine(config.engine, config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.output_dir)
    torch.manual_seed(config.seed)
    source = resume_from(config, resume)
    if source is not None:
        state = TrainerState.load(source)
        if (state.engine == "fsdp") != (config.engine.kind == "fsdp") and state.step > 0:
            raise ValueError(f"{source} was written by engine {state.engine!r} in the middle of a stage; resume "
                             f"it with engine.kind {state.engine!r} (FSDP's optimizer state is keyed by parameter "
                             "name, the others' by position), or resume from a stage end")
        model = VoCoModel.from_pretrained(source, dtype=DTYPE[config.model.dtype])
        set_rng_states(state.rng)
        log(f"resuming from {source}: stage {state.stage} step {state.step} (global step {state.global_step})")
        _close_shortened_stage(config, state, log)
    else:
        state = TrainerState()
        model = build_model(config.model, seed=config.seed)
    state.engine = config.engine.kind
    engine.prepare(model)
    if engine.dist.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.yaml").write_text(
            f"# {config.command}\n" + yaml.safe_dump(config.to_dict(), sort_keys=False))
    val = eval_examples(config, model, "val", config.data.val_videos) if engine.dist.main else []
    run = Run(config, engine, model, state, source, out, val, time.perf_counter() - state.elapsed_s,
              StepMeter(model.lm.model, engine.dist.world), log)
    first_global = sum(s.steps for s in config.stages[: state.stage])
    try:
        for index, stage in enumerate(config.stages):
            if index < state.stage:
                continue
            if not run_stage(run, index, stage, first_global, progress, max_steps):
                log(f"stopped at global step {state.global_step} (max_steps); resume to continue")
                return {}
            first_global += stage.steps
    finally:
        run.meter.close()
    state.elapsed_s = time.perf_counter() - run.started
    with engine.full_model(model):
        digests = engine.rank_digests(model)
        if len(set(digests)) > 1:
            log(f"WARNING: the {len(digests)} processes end with different weights (sha256 {digests}): a bug in "
                f"the {config.engine.kind} engine; rank 0's are saved")
        figures = {**throughput(run), "rank_digests": digests}
        metrics = (finish(config, model, state, out, log=log, throughput=figures, saveable=engine.saveable)
                   if engine.dist.main else {})
    engine.barrier()
    return metrics


def _close_shortened_stage(config: TrainConfig, state: TrainerState, log) -> None:
    """A stage saved mid-way whose config now ends at or before the saved step is finished: move on to the next
    (its optimizer state belongs to the old stage and must not be loaded into the next one's groups)."""
    if state.stage < len(config.stages) and state.step >= config.stages[state.stage].steps > 0:
        stage = config.stages[state.stage]
        log(f"stage {stage.name!r} now has {stage.steps} steps and {state.step} are done: it counts as finished")
        state.stage, state.step = state.stage + 1, 0


def throughput(run: Run) -> dict:
    return run.meter.summary(*run.engine.peak_memory_mb())


def _stage_module(run: Run, index: int, stage: StageSpec):
    """The stage's train module (wrapped by the engine) and its optimizer, restored when resuming mid-stage."""
    config, engine, model, state = run.config, run.engine, run.model, run.state
    groups = set_trainable(model, stage.train)
    module = TrainModule(model, stage, config, index)
    if module.heads is not None:
        groups.append({"params": list(module.heads.parameters()), "weight_decay": None})
        if state.step > 0 and run.source is not None and (run.source / AUX_HEADS).is_file():
            module.heads.load_state_dict(torch.load(run.source / AUX_HEADS, weights_only=True,
                                                    map_location=engine.device))
    if module.kv_teacher is not None and state.step > 0 and run.source is not None \
            and (run.source / KV_TEACHER).is_file():
        module.kv_teacher.load_state_dict(torch.load(run.source / KV_TEACHER, weights_only=True,
                                                     map_location=engine.device))
    for g in groups:
        if g["weight_decay"] is None:
            g["weight_decay"] = config.weight_decay
    optimizer = torch.optim.AdamW(engine.param_groups(groups), lr=lr_at(stage, state.step), betas=config.betas,
                                  weight_decay=config.weight_decay)
    if state.step > 0 and run.source is not None and (run.source / OPTIMIZER).is_file():
        saved = torch.load(run.source / OPTIMIZER, weights_only=True, map_location=engine.device)
        try:
            engine.load_optimizer_state(module, optimizer, saved)
        except (ValueError, KeyError, RuntimeError) as err:
            raise ValueError(f"{run.source / OPTIMIZER} was saved in the middle of stage {stage.name!r} and does "
                             f"not fit its trained groups {list(stage.train)} now ({err}): was the stage's `train` "
                             "list changed? restore it, or resume from a stage end") from err
    return module, engine.wrap(module), optimizer


def run_stage(run: Run, index: int, stage: StageSpec, first_global: int, progress: bool,
              max_steps: int | None) -> bool:
    """Train one stage (from where the state says); False when max_steps stopped it first."""
    config, engine, model, state = run.config, run.engine, run.model, run.state
    module, wrapped, optimizer = _stage_module(run, index, stage)
    objective = stage.training_objective
    model.train()
    stream = TrainStream(num_videos=config.data.train_videos,
                         videos_per_batch=stage.videos_per_batch or config.data.videos_per_batch,
                         seed=config.seed, rank=engine.dist.rank, world_size=engine.dist.world)
    # the stream is indexed by the global step, so every stage sees fresh videos
    batches = Prefetcher(_loader(config, model, "train", stage), stream, first_global + state.step,
                         first_global + stage.steps, config.data.workers)
    bar = None
    if progress and engine.dist.main:
        from tqdm import tqdm

        bar = tqdm(total=stage.steps, initial=state.step, desc=f"{stage.name}", unit="step", dynamic_ncols=True)
    ema = None
    for examples in batches:
        entry = train_step(run, stage, wrapped, optimizer, examples)
        ema = entry["loss"] if ema is None else 0.95 * ema + 0.05 * entry["loss"]
        if bar is not None:
            bar.set_postfix(loss=f"{ema:.3f}", lr=f"{entry['lr']:.1e}", **objective.progress(entry),
                            vid_s=f"{len(examples) * engine.dist.world / entry['step_s']:.2f}")
            bar.update(1)
        end_of_stage = state.step == stage.steps
        if objective.answers and (state.global_step % config.eval_every == 0 or end_of_stage):
            validate(run, stage, bar)
        if end_of_stage:
            state.stage, state.step = index + 1, 0
        stop = max_steps is not None and state.global_step >= max_steps
        if state.global_step % config.save_every == 0 or end_of_stage or stop:
            checkpoint(run, module, None if end_of_stage else optimizer)
        engine.barrier()
        if stop:
            break
    if bar is not None:
        bar.close()
    return not (max_steps is not None and state.global_step >= max_steps and state.stage < len(config.stages))


def train_step(run: Run, stage: StageSpec, wrapped: nn.Module, optimizer, examples: list) -> dict:
    """One optimizer step; returns (and records) its history entry."""
    config, engine, model, state = run.config, run.engine, run.model, run.state
    lr = lr_at(stage, state.step)
    for g in optimizer.param_groups:
        g["lr"] = lr
    batch = stage.training_objective.batch(model, examples)
    run.meter.start()
    with engine.autocast():
        loss, stats = wrapped(batch)
    loss.backward()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    engine.reduce_gradients(params)
    mask_row_grads(model)
    grad_norm = engine.clip_grad_norm(params, config.grad_clip) if config.grad_clip else None
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    state.step += 1
    state.global_step += 1
    entry = {"step": state.global_step, "stage": stage.name, "loss": float(loss.detach()), "lr": lr, **stats,
             **run.meter.stop(len(examples))}
    if grad_norm is not None:
        entry["grad_norm"] = float(grad_norm)
    state.history.append(entry)
    return entry


def validate(run: Run, stage: StageSpec, bar) -> None:
    """Accuracy on the val split (rank 0, with the whole model gathered); logs throughput and memory too."""
    state = run.state
    with run.engine.full_model(run.model):
        if run.engine.dist.main:
            result = evaluate(run.model, run.val, max_new_tokens=run.config.eval_max_new_tokens)
            state.validation.append({"step": state.global_step, "stage": stage.name,
                                     **{k: v for k, v in result.items() if k != "samples"}})
            msg = " ".join(f"{t}={a:.2f}" for t, a in result["accuracy"].items())
            figures = throughput(run)
            (bar.write if bar is not None else run.log)(
                f"[val step {state.global_step}] avg {result['average']:.3f} | {msg} | "
                f"{figures['samples_per_s']:.2f} samples/s, {figures['tokens_per_s']:.0f} tokens/s, "
                f"peak {figures['peak_memory_mb']:.0f} MB ({figures['memory']})")
    run.model.train()


def checkpoint(run: Run, module: TrainModule, optimizer) -> None:
    """Write the resumable state `last/` (every rank calls this: FSDP gathers the optimizer and weights)."""
    engine, state = run.engine, run.state
    optimizer_state = engine.optimizer_state(module, optimizer) if optimizer is not None else None
    with engine.full_model(run.model):
        if engine.dist.main:
            state.elapsed_s = time.perf_counter() - run.started
            save_state(run.last, engine.saveable(run.model), optimizer_state, state, module.heads,
                       module.kv_teacher)
            plot_curves(state, run.out / "curves.png")
    run.source = run.last
