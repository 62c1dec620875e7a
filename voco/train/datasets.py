"""The dataset protocol of `voco.train`: every source of training videos plugs in the same way.

A dataset turns (split, index) into a `VideoExample` (segments + questions); the loop, the batching
(`data.encode`), the forward pass and the evaluation never ask where it came from. Segments are either frames
(uint8 [F, H, W, 3], through the vision tower) or precomputed vision features (float32 [F, p, d], straight to
the projector): datasets that simulate or cache features skip the vision tower.

    synthetic      the synthetic video-QA world (`voco.data`), rendered frames
    class_mixture  classifier-output videos for an assembled model (`voco.train.class_mixture`), features
    stamp_scenes   photo stamps over wallpapers, read by the evidence tower once (`voco.train.scene_videos`),
                   features; needs `scripts/get_training_data.sh`
    llava_json     LLaVA conversation JSON, images and videos, multi-turn (`voco.train.readers`)
    videochatgpt   Video-ChatGPT's instruction JSON (`voco.train.readers`)
    webvid         (video, caption) pairs, a folder or a CSV (`voco.train.readers`)
    easy_vqa       easy-VQA's shape images and questions (the easy-vqa package), one still segment an image
                   (`voco.train.readers`)
    mix            several real-data sources as one (`voco.train.readers`)

A new source is a class with the same three members, registered in `DATASETS` under the name
a config's `data.dataset` uses.
"""

from __future__ import annotations

from functools import partial
from typing import ClassVar, Protocol

from voco.train.class_mixture import ClassMixtureSpec, ClassMixtureWorld
from voco.train.data import VideoExample, load_video
from voco.train.readers import SOURCES, MixData


class VideoQADataset(Protocol):
    synthetic_world: ClassVar[bool]
    """Whether the videos come from the synthetic world (its patch objective, cache probe and question-only
    baseline need the world's ground truth)."""

    @classmethod
    def check_options(cls, data, stage_options: dict | None = None) -> None:
        """Raise ValueError when `data.options` (a `config.DataSpec`), with a stage's overrides, does not fit."""

    @classmethod
    def build(cls, config, model, stage, split: str) -> VideoQADataset:
        """The dataset for a `TrainConfig`, the model being trained, a stage (or None) and a split."""

    def load(self, index: int) -> VideoExample:
        """Video `index` of the split."""


class SyntheticWorldData:
    """The synthetic video-QA world (coloured shapes moving over backgrounds)."""

    synthetic_world = True

    def __init__(self, load):
        self.load = load

    @classmethod
    def check_options(cls, data, stage_options: dict | None = None) -> None:
        if data.options or stage_options:
            raise ValueError(f"the synthetic world takes its knobs from data.world, not options {data.options}")

    @classmethod
    def build(cls, config, model, stage, split: str) -> SyntheticWorldData:
        voco = model.voco
        return cls(partial(
            load_video, split, world=config.data.world_config(stage.world if stage else None),
            base_seed=config.data.base_seed, questions_per_video=config.data.questions_per_video,
            frames_per_segment=voco.frames_per_segment, segment_seconds=voco.segment_seconds,
            captions=config.data.captions and split == "train",
            probe_targets=stage is not None and stage.probe_weight > 0))


class ClassMixtureData:
    """Class-mixture videos: the assembled model's classifier outputs for scenes of its classes (features)."""

    synthetic_world = False

    def __init__(self, world: ClassMixtureWorld, split: str):
        self.world = world
        self.split = split

    @classmethod
    def check_options(cls, data, stage_options: dict | None = None) -> None:
        ClassMixtureSpec(**{**data.options, **(stage_options or {})})
        if data.world or data.captions:
            raise ValueError("class_mixture has no synthetic world: leave data.world and data.captions unset")

    @classmethod
    def build(cls, config, model, stage, split: str) -> ClassMixtureData:
        options = {**config.data.options, **(stage.options if stage else {})}
        world = ClassMixtureWorld.for_model(model, ClassMixtureSpec(**options),
                                            questions_per_video=config.data.questions_per_video,
                                            seed=config.data.base_seed)
        return cls(world, split)

    def load(self, index: int) -> VideoExample:
        return self.world.load(self.split, index)


class StampScenesData:
    """Videos of stamp scenes (real photo cut-outs over wallpaper photos) as the evidence tower reads them."""

    synthetic_world = False

    def __init__(self, videos):
        self.videos = videos

    @classmethod
    def check_options(cls, data, stage_options: dict | None = None) -> None:
        from voco.train.scene_videos import SceneVideoSpec

        SceneVideoSpec(**{**data.options, **(stage_options or {})})
        if data.world or data.captions:
            raise ValueError("stamp_scenes has no synthetic world: leave data.world and data.captions unset")

    @classmethod
    def build(cls, config, model, stage, split: str) -> StampScenesData:
        from voco.evidence.tower import EvidenceTower
        from voco.train.scene_bank import SceneBank
        from voco.train.scene_videos import SceneVideos, SceneVideoSpec

        tower = model.vision_tower
        if not isinstance(tower, EvidenceTower):
            raise ValueError("stamp_scenes needs an assembled model with the evidence tower (model.assembly.evidence)")
        spec = SceneVideoSpec(**{**config.data.options, **(stage.options if stage else {})})
        bank = SceneBank.build_or_load(tower, spec.bank_spec(), spec.cache)
        return cls(SceneVideos(bank, spec, split, tower.person_id, config.data.questions_per_video,
                               config.data.base_seed, hypernyms=tower.concepts.hypernyms))

    def load(self, index: int) -> VideoExample:
        return self.videos.load(index)


DATASETS: dict[str, type[VideoQADataset]] = {"synthetic": SyntheticWorldData, "class_mixture": ClassMixtureData,
                                             "stamp_scenes": StampScenesData, **SOURCES, MixData.name: MixData}


def make_dataset(config, model, split: str, stage=None) -> VideoQADataset:
    return DATASETS[config.data.dataset].build(config, model, stage, split)


def eval_examples(config, model, split: str, count: int) -> list:
    load = make_dataset(config, model, split).load
    return [load(i) for i in range(count)]
