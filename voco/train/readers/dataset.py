"""Real-data datasets behind the dataset protocol (`voco.train.datasets`): a format's items, split and loaded.

`MediaQAData` is the protocol class every format shares: its options dataclass (typed, validated when the
config loads; paths are only checked when training starts, and the error names the option and the path),
a parser (`formats`), a seeded held-out val/test selection, and `load(index)`, which returns the item's media
as segments plus one question row per conversation. An item whose media fails (missing, undecodable, no
frames) is counted in the ledger and the next item is served instead: a long run never stops on bad data.

`mix` concatenates several sources (e.g. WebVid captions + Video-ChatGPT QA for the video stage).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from voco.data.questions import QA
from voco.train.data import VideoExample
from voco.train.readers.formats import (
    LlavaJsonOptions,
    SplitOptions,
    VideoChatGPTOptions,
    WebVidOptions,
    parse_llava_json,
    parse_videochatgpt,
    parse_webvid,
)
from voco.train.readers.media import Item, MediaError, MediaLoader, Problems
from voco.train.typed import build

SPLITS = ("train", "val", "test")


def main_process() -> bool:
    """Rank 0 under torchrun (or a single process): the one that reports what every rank sees alike."""
    return int(os.environ.get("RANK", "0")) == 0


@dataclass
class Catalogue:
    """A source's items per split and its ledger of skipped items (parsed once per process and options)."""

    name: str
    splits: dict[str, list[Item]]
    problems: Problems
    bad: set[Path] = field(default_factory=set)
    """Media files that failed while training: counted once, never decoded again."""


def held_out(items: list[Item], options: SplitOptions, name: str) -> dict[str, list[Item]]:
    """Seeded val/test selection; the rest trains."""
    need = options.val_items + options.test_items
    if len(items) <= need:
        raise ValueError(f"{name}: {len(items)} usable item(s), but val_items + test_items = {need} are held out "
                         "and some must be left to train on")
    order = np.random.default_rng(options.split_seed).permutation(len(items))
    val, test = set(order[: options.val_items].tolist()), set(order[options.val_items : need].tolist())
    return {"val": [items[i] for i in sorted(val)], "test": [items[i] for i in sorted(test)],
            "train": [item for i, item in enumerate(items) if i not in val and i not in test]}


_CATALOGUES: dict[str, Catalogue] = {}


def options_from(cls: type, values: dict, where: str = "data.options"):
    """The options dataclass from a mapping: unknown keys, wrong types and bad values name the key."""
    return build(cls, values, where)


class MediaQAData:
    """A real-data source: images or videos with conversations (subclasses: one per format)."""

    synthetic_world = False
    name: ClassVar[str]
    Options: ClassVar[type[SplitOptions]]
    parse: ClassVar[Callable[[SplitOptions, Problems, int], list[Item]]]

    def __init__(self, catalogue: Catalogue, loader: MediaLoader, split: str):
        self.catalogue, self.loader, self.split = catalogue, loader, split
        self.items = catalogue.splits[split]

    @classmethod
    def options(cls, data, stage_options: dict | None = None) -> SplitOptions:
        return options_from(cls.Options, {**data.options, **(stage_options or {})})

    @classmethod
    def check_options(cls, data, stage_options: dict | None = None) -> None:
        cls.options(data, stage_options)
        if data.world or data.captions:
            raise ValueError(f"{cls.name} reads files, it has no synthetic world: leave data.world and "
                             "data.captions unset")

    @classmethod
    def catalogue(cls, options: SplitOptions, questions_per_video: int) -> Catalogue:
        key = json.dumps([cls.name, dataclasses.asdict(options), questions_per_video], sort_keys=True)
        if key not in _CATALOGUES:
            problems = Problems(cls.name)
            items = cls.parse(options, problems, questions_per_video)
            if main_process():  # what the files show is the same on every rank: say it once
                problems.log()  # one line per kind of item the files themselves show to be unusable
                print(f"{cls.name}: {len(items):,} usable items ({problems.total:,} skipped), "
                      f"{options.val_items} held out for validation, {options.test_items} for test", flush=True)
            _CATALOGUES[key] = Catalogue(cls.name, held_out(items, options, cls.name), problems)
        return _CATALOGUES[key]

    @classmethod
    def build(cls, config, model, stage, split: str) -> MediaQAData:
        options = cls.options(config.data, stage.options if stage else None)
        catalogue = cls.catalogue(options, config.data.questions_per_video)
        size = len(catalogue.splits["train"])
        if split == "train" and config.data.train_videos != size and main_process():
            print(f"{cls.name}: note: data.train_videos is {config.data.train_videos:,} but the train split holds "
                  f"{size:,} items; an epoch of the train stream is data.train_videos items (set it to {size} "
                  "for epochs over the data)", flush=True)
        return cls(catalogue, MediaLoader(model), split)

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> VideoExample:
        """Item `index` (modulo the split's size); an item with unusable media yields to the next one."""
        for attempt in range(len(self.items)):
            item = self.items[(index + attempt) % len(self.items)]
            if item.media.path in self.catalogue.bad:
                continue
            try:
                segments = self.loader.segments(item.media)
            except MediaError as err:
                self.catalogue.bad.add(item.media.path)
                self.catalogue.problems.add(err.kind, item.id, str(err), live=True)
                continue
            return example(item, segments)
        raise RuntimeError(f"{self.catalogue.name}: no item of the {self.split} split has usable media: "
                           + "; ".join(self.catalogue.problems.lines()))


def example(item: Item, segments: list[np.ndarray]) -> VideoExample:
    """One question row per conversation: its last question, with the earlier turns as history."""
    qas = [QA(chat[-1][0], chat[-1][1], item.type) for chat in item.chats]
    return VideoExample(item.id, segments, qas, histories=[list(chat[:-1]) for chat in item.chats])


class LlavaJsonData(MediaQAData):
    """LLaVA-format conversation JSON: images and videos, multi-turn, loss on the answers only."""

    name = "llava_json"
    Options = LlavaJsonOptions
    parse = staticmethod(parse_llava_json)


class VideoChatGPTData(MediaQAData):
    """Video-ChatGPT's instruction JSON ({video_id, q, a}); a video's questions share its caches."""

    name = "videochatgpt"
    Options = VideoChatGPTOptions
    parse = staticmethod(parse_videochatgpt)


class WebVidData(MediaQAData):
    """(video, caption) pairs in the WebVid style, asked with captioning prompts."""

    name = "webvid"
    Options = WebVidOptions
    parse = staticmethod(parse_webvid)


SOURCES: dict[str, type[MediaQAData]] = {c.name: c for c in (LlavaJsonData, VideoChatGPTData, WebVidData)}


@dataclass
class MixOptions:
    sources: list[dict] = field(default_factory=list)
    """Sources to concatenate, each {dataset: <a name in SOURCES>, options: {...its options}}; each keeps its
    own held-out items; the train stream shuffles the union."""

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError(f"mix needs sources: a list of {{dataset: one of {sorted(SOURCES)}, options: {{...}}}}")
        for i, source in enumerate(self.sources):
            if not isinstance(source, dict) or set(source) - {"dataset", "options"} or \
                    source.get("dataset") not in SOURCES:
                raise ValueError(f"sources[{i}] must be {{dataset: one of {sorted(SOURCES)}, options: {{...}}}}, "
                                 f"got {source!r}")
            options_from(SOURCES[source["dataset"]].Options, source.get("options") or {},
                         f"data.options.sources[{i}].options")

    def parts(self) -> list[tuple[type[MediaQAData], SplitOptions]]:
        return [(SOURCES[s["dataset"]], options_from(SOURCES[s["dataset"]].Options, s.get("options") or {}))
                for s in self.sources]


class MixData(MediaQAData):
    """Several real-data sources as one (e.g. WebVid captions + Video-ChatGPT QA)."""

    name = "mix"
    Options = MixOptions  # type: ignore[assignment]

    @classmethod
    def catalogue(cls, options: MixOptions, questions_per_video: int) -> Catalogue:  # type: ignore[override]
        parts = []
        for i, (source, opts) in enumerate(options.parts()):
            try:
                parts.append(source.catalogue(opts, questions_per_video))
            except (OSError, ValueError) as err:  # name the source: data.options.sources[i].options.<key>
                raise type(err)(str(err).replace("data.options.", f"data.options.sources[{i}].options.", 1)) \
                    from err
        splits = {split: [item for part in parts for item in part.splits[split]] for split in SPLITS}
        return Catalogue(cls.name, splits, Problems(cls.name))
