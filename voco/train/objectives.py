"""Training objectives behind one protocol: a stage's `objective` names one, as a config's compressor names a class.

    answers   cross-entropy on answer tokens through the two-stage path (`voco.train.forward.batch_loss`): the
              VoCo stages, validated by decoding answers
    patches   the vision tower pretrained on the synthetic world's per-patch truth (`voco.train.patches`), our
              stand-in for a pretrained CLIP: trains only `vision`; nothing is decoded

The loop asks the stage's objective for its data, its throw-away heads, its loss and its progress figures, so no
code outside this module branches on an objective's name. A new objective: an `Objective` subclass with a `name`,
listed in `OBJECTIVES`.
"""

from __future__ import annotations

from functools import partial
from typing import ClassVar

from torch import nn

from voco.train.data import encode
from voco.train.datasets import make_dataset
from voco.train.forward import batch_loss
from voco.train.patches import PatchHeads, feature_size, load_patch_example, patch_loss
from voco.train.probe import CacheProbe, cache_numel


class Objective:
    """`answers`; subclasses change what a stage reads and minimises."""

    name: ClassVar[str] = "answers"
    answers: ClassVar[bool] = True
    """Whether the stage trains answering: validated by decoding answers; with view `cache` it VoCo-tunes."""
    synthetic_world: ClassVar[bool] = False
    """Whether its data can only come from the synthetic world (`data.dataset: synthetic`)."""
    pretrains_vision: ClassVar[bool] = False
    """Whether it pretrains the vision tower (the model card says so)."""

    def check(self, stage, where: str) -> str | None:
        """What is wrong with `stage` for this objective (a message), or None."""
        return None

    def heads(self, model, stage) -> nn.Module | None:
        """The stage's throw-away auxiliary heads (built seeded by the loop): the cache probe when asked for."""
        return CacheProbe(cache_numel(model)).to(model.device) if stage.probe_weight > 0 else None

    def loader(self, config, model, split: str, stage):
        """index -> one training example of this stage."""
        return make_dataset(config, model, split, stage).load

    def batch(self, model, examples: list):
        """What the loss reads, from a step's examples."""
        return encode(model, examples)

    def loss(self, module, batch):
        """(loss, stats) of one step; `module` is the loop's `TrainModule` (model, stage, heads, teacher)."""
        stage = module.stage
        return batch_loss(module.model, batch, view=stage.view, kl_weight=stage.kl_weight,
                          kl_temperature=stage.kl_temperature, chunk=module.config.segment_chunk,
                          probe=module.heads, probe_weight=stage.probe_weight,
                          kv_distill_weight=stage.kv_distill_weight, kv_teacher=module.kv_teacher,
                          kv_distill_spread=stage.kv_distill_spread)

    def describe(self, stage) -> str:
        """The stage's objective in the model card."""
        return f"view `{stage.view}`"

    def progress(self, entry: dict) -> dict[str, str]:
        """Figures for the progress bar from a step's history entry."""
        return {"tok_s": f"{entry['tokens'] / entry['step_s']:.0f}"}


class PatchesObjective(Objective):
    name = "patches"
    answers = False
    synthetic_world = True
    pretrains_vision = True

    def check(self, stage, where: str) -> str | None:
        if stage.train != ["vision"] or stage.kl_weight > 0:
            return (f"{where}: a `patches` stage trains only the vision tower (train: [vision]) and has no KL term; "
                    f"got train {stage.train}, kl_weight {stage.kl_weight}")
        return None

    def heads(self, model, stage) -> nn.Module:
        return PatchHeads(feature_size(model)).to(model.device)

    def loader(self, config, model, split: str, stage):
        vision = model.config.vision_config
        return partial(load_patch_example, world=config.data.world_config(stage.world),
                       base_seed=config.data.base_seed, frames_per_segment=model.voco.frames_per_segment,
                       grid=vision.image_size // vision.patch_size)

    def batch(self, model, examples: list):
        return examples

    def loss(self, module, batch):
        return patch_loss(module.model, module.heads, batch)

    def describe(self, stage) -> str:
        return "objective `patches` (per-patch ground truth: object, colour, shape, background, region)"

    def progress(self, entry: dict) -> dict[str, str]:
        return {f"{k[4:]}_acc": f"{v:.2f}" for k, v in entry.items() if k.startswith("acc_")}


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (Objective(), PatchesObjective())}


def objective_of(name: str) -> Objective:
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, got {name!r}") from None
