"""Typed training configuration, loaded from YAML (`python -m voco.train --config configs/....yaml`).

A config has these parts::

    model:    what to train: a new small model (`init: new`, architecture below) or a checkpoint folder
              (`init: pretrained`, e.g. a LLaVA-1.5-7B folder), its VoCo settings and dtype
    data:     where videos and questions come from (`dataset`: the synthetic world, class mixtures, or real
              files: LLaVA JSON, Video-ChatGPT, WebVid pairs, `voco.train.readers`; `options`), batch size
    stages:   a list of training stages (alignment, VoCo instruction tuning, video training), each with
              its own steps, learning rate and which parameter groups train
    engine:   how steps run: `kind` single | ddp | fsdp (`voco.train.engine.ENGINES`), `precision` fp32 | bf16
              (autocast, master weights fp32), `gradient_checkpointing` (transformers' own, per layer)
    resume:   `auto` (output_dir/last when it holds a resumable state), a checkpoint folder, or null (start over)
    (top)     seed, output folder, optimizer, validation and checkpoint cadence, device, export

Unknown keys, wrong types and impossible values fail at load time with the key's dotted path.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from voco.compressors import compressor_class, module_names
from voco.config import VoCoConfig
from voco.data.world import WorldConfig
from voco.train.objectives import Objective, objective_of
from voco.train.typed import ConfigError, build

PARAM_GROUPS = ("vision", "projector", "lm", "voco_embedding", "adapters")
"""Parameter groups a stage can train: the vision tower, the projector, the whole decoder LM (embeddings and
head included), only the <voco> (and segment-start) embedding rows, the LoRA adapters of an assembled model
(`voco.lora`); and a compressor's own weights under its module name (`pool`'s linear, `qformer`: `param_groups`)."""


def param_groups() -> list[str]:
    """Every group a stage can train: `PARAM_GROUPS` and every registered compressor's module name."""
    return [*PARAM_GROUPS, *sorted(module_names())]


INITS = ("new", "pretrained", "assembled", "pair")
DTYPES = ("float32", "bfloat16", "float16")
VIEWS = ("cache", "full", "summary")
ENGINE_KINDS = ("single", "ddp", "fsdp")
"""`voco.train.engine.ENGINES` maps each to its class (checked there too, so the two cannot drift)."""
PRECISIONS = ("fp32", "bf16")


@dataclass
class ModelSpec:
    init: str = "new"
    """`new`: a randomly initialised model with the architecture below; `pretrained`: load `path`; `assembled`:
    pretrained parts from packages + fresh trained parts, as `assembly` describes (`voco.assembly`)."""
    assembly: dict = field(default_factory=dict)
    """`assembly.json` fields (`voco.assembly.AssemblySpec`) for `init: assembled`."""
    path: str | None = None
    """Checkpoint folder for `init: pretrained` (a VoCo checkpoint or a plain LLaVA folder; nothing is downloaded)."""
    vision: str | None = None
    """`init: pair`: a vision encoder folder (CLIP / SigLIP vision model, or a whole CLIP / SigLIP model)."""
    lm: str | None = None
    """`init: pair`: a causal LM folder with its tokenizer; joined to `vision` by a new projector (`voco.pair`)."""
    dtype: str = "float32"
    """Parameter dtype while training: float32 for the tiny model, bfloat16 for 7B."""
    voco: dict = field(default_factory=dict)
    """`voco.json` fields (k, compressor, projector, frames_per_segment, segment_seconds, prompt, ...)."""
    # architecture of a new model (ignored for `pretrained`)
    image_size: int = 64
    patch_size: int = 8
    vision_hidden: int = 96
    vision_layers: int = 2
    vision_heads: int = 4
    vision_feature_layer: int = -1
    hidden: int = 192
    intermediate: int = 512
    layers: int = 3
    heads: int = 6
    kv_heads: int = 2
    tokenizer_vocab: int = 700
    """Byte-level BPE size of the tokenizer trained on the synthetic world's text (`voco.train.tokenizer`)."""

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ConfigError(f"model.init must be one of {INITS}, got {self.init!r}")
        if (self.init == "assembled") != bool(self.assembly):
            raise ConfigError("model.assembly is required with model.init 'assembled', and only there")
        if self.assembly:
            from voco.assembly import AssemblySpec

            try:
                AssemblySpec(**self.assembly)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"model.assembly: {err}") from err
        if self.init == "pretrained" and not self.path:
            raise ConfigError("model.path is required when model.init is 'pretrained'")
        if (self.init == "pair") != bool(self.vision and self.lm) or (self.init != "pair" and (self.vision or self.lm)):
            raise ConfigError("model.vision and model.lm (two local folders) are required with model.init 'pair', "
                              "and only there")
        if self.dtype not in DTYPES:
            raise ConfigError(f"model.dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.image_size % self.patch_size:
            raise ConfigError(f"model.image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ConfigError("model.hidden must divide by heads, and heads by kv_heads")
        if self.vision_hidden % self.vision_heads:
            raise ConfigError("model.vision_hidden must divide by vision_heads")
        try:
            VoCoConfig(**self.voco)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"model.voco: {err}") from err

    def voco_config(self) -> VoCoConfig:
        return VoCoConfig(**self.voco)


@dataclass
class DataSpec:
    dataset: str = "synthetic"
    """Where videos and questions come from: a name in `voco.train.datasets.DATASETS` (`synthetic`: the
    synthetic world; `class_mixture`: classifier-output videos for an assembled model; `llava_json`,
    `videochatgpt`, `webvid`, `mix`: real files, `voco.train.readers`)."""
    options: dict = field(default_factory=dict)
    """The dataset's own knobs (e.g. `voco.train.class_mixture.ClassMixtureSpec` fields, or a reader's options
    such as `voco.train.readers.formats.LlavaJsonOptions`: json, image_folder, ...)."""
    world: dict = field(default_factory=dict)
    """WorldConfig knobs (size, fps, min_seconds, max_seconds, noise_std, ...); empty = the standard world."""
    base_seed: int = 0
    questions_per_video: int = 6
    videos_per_batch: int = 8
    """Videos per optimizer step (per process under DDP); all their questions train on the same caches."""
    train_videos: int = 1_000_000
    """Size of the train split's index space; each epoch visits it in a seeded shuffled order."""
    val_videos: int = 64
    test_videos: int = 200
    blind_videos: int = 2000
    """Train videos (ground truth only) behind the question-only baseline reported beside test accuracy."""
    captions: bool = False
    """Add to every training video a "describe the video." question answered by a caption listing each object
    (colour, shape, start region, motion, new colour) in order of appearance: dense supervision that asks the
    caches to hold everything, like the paper's caption (alignment) data. Never part of evaluation."""
    workers: int = 0
    """Background threads rendering the next batches (0 = render in the training loop)."""

    def __post_init__(self) -> None:
        from voco.train.datasets import DATASETS

        if self.dataset not in DATASETS:
            raise ConfigError(f"data.dataset must be one of {sorted(DATASETS)}, got {self.dataset!r}")
        try:
            DATASETS[self.dataset].check_options(self)
        except ConfigError:
            raise  # already names its key (data.options.<key>)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"data.options: {err}") from err
        try:
            self.world_config()
        except (TypeError, ValueError) as err:
            raise ConfigError(f"data.world: {err}") from err
        for name in ("questions_per_video", "videos_per_batch", "train_videos", "val_videos", "test_videos"):
            if getattr(self, name) < 1:
                raise ConfigError(f"data.{name} must be >= 1, got {getattr(self, name)}")
        if self.base_seed < 0 or self.workers < 0:
            raise ConfigError("data.base_seed and data.workers must be >= 0")

    @staticmethod
    def unknown_keys_hint(keys: list[str]) -> str:
        """Where a reader option written directly under `data:` belongs (e.g. `data: {json: ...}`)."""
        from voco.train.readers import SOURCES

        fits = [name for name, source in SOURCES.items()
                if set(keys) <= {f.name for f in dataclasses.fields(source.Options)}]
        return (f"; {keys} are options of the {' / '.join(fits)} reader: write data.dataset: {fits[0]} and put "
                f"them under data.options" if fits else "")

    def world_config(self, overrides: dict | None = None) -> WorldConfig:
        world = {**self.world, **(overrides or {})}
        for key in ("object_size_fraction", "shapes", "colors"):
            if key in world:
                world[key] = tuple(world[key])
        return WorldConfig(**world)


@dataclass
class StageSpec:
    name: str
    steps: int
    lr: float = 1e-3
    train: list[str] = field(default_factory=lambda: ["projector", "lm", "voco_embedding"])
    """Parameter groups that train in this stage (see `param_groups()`); everything else is frozen."""
    warmup_steps: int = 0
    min_lr_ratio: float = 0.05
    """Cosine decay ends at lr * min_lr_ratio."""
    view: str = "cache"
    """`cache`: questions read only the segment caches (VoCo training); `full`: questions see every vision
    token of every segment (LLaVA-style alignment, what the paper's first stage trains); `summary`: questions
    read only each segment's summary tokens' full-view KV in the `<voco>` slots (`voco.train.kv_distill`: what
    the caches are then distilled toward), so the LM learns to read that target before the caches chase it."""
    kl_weight: float = 0.0
    """Weight of KL(teacher || student) on answer tokens, teacher = the same model seeing all vision tokens."""
    kl_temperature: float = 1.0
    kv_distill_weight: float = 0.0
    """Weight of the KV distillation (`voco.train.kv_distill`): each segment's kept `<voco>` KV is pulled
    toward the KV its summary tokens (the top class name's tokens ending at its last) have in the full view."""
    kv_distill_frozen_teacher: bool = False
    """Compute the KV-distillation targets with the trainable weights as they were when the stage began, not the
    current ones (which the stage moves along with the caches: `voco.train.kv_distill`)."""
    kv_distill_spread: bool = False
    """Scale the KV-distillation error by the targets' spread around their batch mean, not their norm: a cache
    that ignores its frame then costs 1 instead of a few thousandths."""
    world: dict = field(default_factory=dict)
    """Overrides of data.world for this stage (e.g. short clips for instruction tuning, long videos after)."""
    options: dict = field(default_factory=dict)
    """Overrides of data.options for this stage (datasets other than the synthetic world)."""
    videos_per_batch: int | None = None
    """Overrides data.videos_per_batch for this stage (e.g. fewer, longer videos)."""
    probe_weight: float = 0.0
    """Weight of the cache probe (`voco.train.probe`): linear heads read each segment's kept KV and predict what
    the segment shows, which keeps compression from collapsing while the LM learns to read the caches."""
    objective: str = "answers"
    """A `voco.train.objectives` name. `answers`: cross-entropy on answer tokens (the VoCo stages); `patches`:
    pretrain the vision tower on the world's per-patch ground truth (object / colour / shape / background,
    `voco.train.patches`), our stand-in for a pretrained CLIP; such a stage trains only `vision`."""

    @property
    def training_objective(self) -> Objective:
        """The `objective` name resolved (`voco.train.objectives`)."""
        return objective_of(self.objective)

    def __post_init__(self) -> None:
        where = f"stage {self.name!r}"
        try:
            objective = objective_of(self.objective)
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from None
        problem = objective.check(self, where)
        if problem:
            raise ConfigError(problem)
        if self.steps < 1:
            raise ConfigError(f"{where}: steps must be >= 1, got {self.steps}")
        if self.videos_per_batch is not None and self.videos_per_batch < 1:
            raise ConfigError(f"{where}: videos_per_batch must be >= 1, got {self.videos_per_batch}")
        if not self.lr > 0:
            raise ConfigError(f"{where}: lr must be > 0, got {self.lr}")
        unknown = sorted(set(self.train) - set(param_groups()))
        if unknown or not self.train:
            raise ConfigError(f"{where}: train must list some of {param_groups()}, got {self.train}")
        if self.view not in VIEWS:
            raise ConfigError(f"{where}: view must be one of {VIEWS}, got {self.view!r}")
        if self.warmup_steps < 0 or self.warmup_steps > self.steps:
            raise ConfigError(f"{where}: warmup_steps must lie in 0 .. steps ({self.steps})")
        if self.probe_weight < 0 or (self.probe_weight > 0 and (self.view != "cache" or not objective.answers)):
            raise ConfigError(f"{where}: probe_weight must be >= 0 and needs view 'cache' and objective 'answers'")
        if not 0 <= self.min_lr_ratio <= 1 or self.kl_weight < 0 or self.kl_temperature <= 0:
            raise ConfigError(f"{where}: need 0 <= min_lr_ratio <= 1, kl_weight >= 0, kl_temperature > 0")
        if self.kv_distill_weight < 0 or (self.kv_distill_weight > 0 and self.view != "cache"):
            raise ConfigError(f"{where}: kv_distill_weight must be >= 0 and needs view 'cache' (it shapes the "
                              f"caches), got {self.kv_distill_weight} with view {self.view!r}")
        if (self.kv_distill_frozen_teacher or self.kv_distill_spread) and self.kv_distill_weight == 0:
            raise ConfigError(f"{where}: kv_distill_frozen_teacher and kv_distill_spread shape the KV distillation; "
                              "set kv_distill_weight > 0 or leave them false")


@dataclass
class EngineSpec:
    """How training steps run (`voco.train.engine`); the model's numerics live in `model.dtype`."""

    kind: str = "single"
    """`single`: one process; `ddp`: torch DistributedDataParallel under torchrun (every rank holds the whole
    model); `fsdp`: torch FSDP2 (`fully_shard` per decoder / vision layer, then the whole model) under torchrun,
    parameters, gradients and optimizer state sharded across ranks (7B on GPUs)."""
    precision: str = "fp32"
    """`fp32`, or `bf16`: forward and backward under torch.autocast(bfloat16) on CUDA and CPU, parameters
    (master weights) and optimizer state stay in `model.dtype` (keep it float32 with bf16)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: transformers' own `gradient_checkpointing_enable()` on the LM
    and the vision tower (per layer; the LM's KV caches are kept through the recompute, `voco.recompute`)."""

    def __post_init__(self) -> None:
        if self.kind not in ENGINE_KINDS:
            raise ConfigError(f"engine.kind must be one of {ENGINE_KINDS}, got {self.kind!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"engine.precision must be one of {PRECISIONS}, got {self.precision!r}")


@dataclass
class TrainConfig:
    model: ModelSpec
    data: DataSpec
    stages: list[StageSpec]
    output_dir: str = "runs/default"
    seed: int = 0
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    eval_every: int = 200
    """Validate (accuracy per question type on the val split) every this many steps and at each stage end."""
    save_every: int = 200
    """Write the resumable checkpoint `output_dir/last` every this many steps (and at each stage end)."""
    eval_max_new_tokens: int = 6
    engine: EngineSpec = field(default_factory=EngineSpec)
    resume: str | None = "auto"
    """`auto`: continue from `output_dir/last` when it holds a resumable state, else start; a folder: continue
    from that resumable state (e.g. another run's `last`); null: start over (`--no-resume` on the CLI)."""
    segment_chunk: int = 0
    """Segments per compression pass (0 = all segments of the batch at once); bounds activation memory."""
    device: str = "auto"
    """`auto` (cuda:LOCAL_RANK when there is a GPU, else cpu), `cpu`, `cuda`, `cuda:N`."""
    threads: int = 0
    """torch CPU threads (0 = torch's default)."""
    export_dir: str | None = None
    """After training: save the final model here too, with its config, metrics, curve and MODEL_CARD.md."""
    command: str = ""
    """The command this config serves (filled from the config's first comment line when empty)."""

    def __post_init__(self) -> None:
        if not self.stages:
            raise ConfigError("stages: give at least one training stage")
        if self.resume is not None and not self.resume.strip():
            raise ConfigError("resume must be 'auto', a checkpoint folder, or null (start over)")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ConfigError(f"stages: names must be unique, got {names}")
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise ConfigError("grad_clip and weight_decay must be >= 0")
        if self.segment_chunk < 0:
            raise ConfigError(f"segment_chunk must be >= 0, got {self.segment_chunk}")
        if self.eval_every < 1 or self.save_every < 1:
            raise ConfigError("eval_every and save_every must be >= 1")
        voco = self.model.voco_config()
        from voco.train.datasets import DATASETS

        world_data = DATASETS[self.data.dataset].synthetic_world
        for stage in self.stages:
            try:
                DATASETS[self.data.dataset].check_options(self.data, stage.options)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"stage {stage.name!r} options: {err}") from err
            if not world_data and (stage.training_objective.synthetic_world or stage.probe_weight > 0
                                   or stage.world):
                raise ConfigError(f"stage {stage.name!r}: the {stage.objective} objective, the cache probe and world "
                                  f"overrides need the synthetic world, not data.dataset {self.data.dataset!r}")
            own = compressor_class(voco.compressor).module_name
            foreign = sorted(g for g in stage.train if g in module_names() and g != own)
            if foreign:
                raise ConfigError(f"stage {stage.name!r} trains {foreign} but model.voco.compressor is "
                                  f"{voco.compressor!r}, " + (f"whose own weights train as {own!r}" if own else
                                                                 "which has no weights of its own"))
            if stage.view == "full" and stage.kl_weight > 0:
                raise ConfigError(f"stage {stage.name!r}: kl_weight needs view 'cache' (the teacher is the full view)")
            try:
                self.data.world_config(stage.world)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"stage {stage.name!r} world: {err}") from err

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def moved_keys(data: dict) -> str:
        """The hint for a top-level key that moved (`voco.train.typed.build` raises it), or ""."""
        moved = sorted(set(data) & set(MOVED_KEYS))
        return f"{moved[0]} moved: write it as {MOVED_KEYS[moved[0]]} (see configs/llava7b.yaml)" if moved else ""


MOVED_KEYS = {"gradient_checkpointing": "engine.gradient_checkpointing"}
"""Top-level keys that moved, and where to (a config that still has one fails with that hint)."""


def config_from_dict(data: dict) -> TrainConfig:
    return build(TrainConfig, data, "")


def load_config(path: str | Path) -> TrainConfig:
    """Read a YAML training config; the first comment line (the command it serves) fills `command`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no config file at {path}")
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    try:
        config = config_from_dict(data or {})
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
    if not config.command:
        first = text.lstrip().splitlines()[0] if text.strip() else ""
        config.command = first.lstrip("#").strip() if first.startswith("#") else f"python -m voco.train --config {path}"
    return config
