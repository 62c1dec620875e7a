"""Parsers of the real training formats -> `media.Item`s, with typed, documented options per format.

    llava_json    LLaVA conversation JSON (LLaVA-665K, LLaVA-Video style): {"id", "image" | "video",
                  "conversations": [{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", ...}, ...]}
    videochatgpt  Video-ChatGPT's instruction JSON (VideoInstruct-100K): [{"video_id", "q", "a"}, ...]
    webvid        (video, caption) pairs: a folder of `x.mp4` + `x.txt`, or a CSV (WebVid's own columns work)

Each parser returns every usable item and records every unusable one in a `Problems` ledger (bad JSON item,
missing media file when `check_files`); a broken file or folder of the whole source fails loudly instead.
"""

from __future__ import annotations

import csv
import json
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from voco.train.readers.media import BAD_ITEM, MISSING, NO_MEDIA, Item, Media, Problems
from voco.video import VIDEO_EXTENSIONS

CAPTION_PROMPTS = [
    "Describe the video briefly.",
    "What happens in this video? Answer in one sentence.",
    "Give a short caption for the video.",
    "Summarize the visual content of the video.",
]
"""Captioning prompts for (video, caption) pairs; each pair gets one, chosen by a hash of its id (stable)."""


@dataclass
class SplitOptions:
    """Options every real-data reader has: held-out items and how media become segments."""

    val_items: int = 16
    """Items held out (seeded) for validation during training."""
    test_items: int = 16
    """Items held out (seeded) for the test evaluation at the end of training."""
    split_seed: int = 0
    """Seed of the held-out selection (the same for every stage, so val/test items never train)."""
    max_segments: int = 0
    """Segments per video at most (a uniform subset, in time order); 0: every segment."""
    check_files: bool = True
    """Check at start-up that every media file exists (missing ones are skipped and summarised); false skips
    the stat calls (a slow network file system) and finds missing files while training instead."""

    def __post_init__(self) -> None:
        if self.val_items < 1 or self.test_items < 1:
            raise ValueError("val_items and test_items must be >= 1 (the loop validates and tests on them)")
        if self.max_segments < 0:
            raise ValueError(f"max_segments must be >= 0, got {self.max_segments}")


def _need(path: str, key: str, what: str) -> Path:
    """An existing file or folder named by option `key`; a message naming the key and what it should hold."""
    if not path:
        raise ValueError(f"data.options.{key} is required ({what})")
    if not Path(path).exists():
        raise FileNotFoundError(f"data.options.{key}: no such file or folder {path!r} ({what}); put it on disk "
                                "or change the path in the config")
    return Path(path)


def _read_json(path: Path, key: str):
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"data.options.{key}: cannot read {path} as JSON ({err})") from err


def _exists(media: Media, check: bool, problems: Problems, item_id: str) -> bool:
    if check and not media.path.is_file():
        problems.add(MISSING, item_id, f"no file {media.path}")
        return False
    return True


# ---- LLaVA conversation JSON -------------------------------------------------------------------------


@dataclass
class LlavaJsonOptions(SplitOptions):
    json: str = ""
    """The conversation file (`.json` list, or `.jsonl` one item a line), e.g. llava_v1_5_mix665k.json."""
    image_folder: str = ""
    """Folder the items' `image` paths are relative to (default: the JSON file's folder)."""
    video_folder: str = ""
    """Folder the items' `video` paths are relative to (default: image_folder)."""


HUMAN, GPT = ("human", "user"), ("gpt", "assistant")
MEDIA_TAGS = ("<image>", "<video>")


def conversation_turns(conversations) -> list[tuple[str, str]]:
    """[(question, answer)] of a LLaVA conversation; media tags removed; `ValueError` when malformed.

    Turns must alternate human, gpt from the start (a leading `system` turn is ignored); a trailing human turn
    without an answer is dropped."""
    if not isinstance(conversations, list) or not all(isinstance(c, dict) for c in conversations):
        raise ValueError("conversations is not a list of {from, value} objects")
    turns = [c for c in conversations if c.get("from") != "system"]
    pairs = []
    for i in range(0, len(turns) - 1, 2):
        ask, say = turns[i], turns[i + 1]
        if ask.get("from") not in HUMAN or say.get("from") not in GPT:
            raise ValueError(f"turn {i} is {ask.get('from')!r} then {say.get('from')!r}, not human then gpt")
        question, answer = ask.get("value"), say.get("value")
        if not isinstance(question, str) or not isinstance(answer, str) or not answer.strip():
            raise ValueError(f"turn {i} has no text question or answer")
        for tag in MEDIA_TAGS:
            question = question.replace(tag, "")
        pairs.append((question.strip(), answer.strip()))
    if not pairs:
        raise ValueError("no human -> gpt turn")
    return pairs


def parse_llava_json(options: LlavaJsonOptions, problems: Problems, questions_per_video: int) -> list[Item]:
    path = _need(options.json, "json", "LLaVA-format conversation JSON")
    image_root = Path(options.image_folder) if options.image_folder else path.parent
    video_root = Path(options.video_folder) if options.video_folder else image_root
    raw = _read_json(path, "json")
    if not isinstance(raw, list):
        raise ValueError(f"data.options.json: {path} holds a {type(raw).__name__}, not a list of items")
    items = []
    for n, entry in enumerate(raw):
        item_id = str(entry.get("id", f"#{n}")) if isinstance(entry, dict) else f"#{n}"
        try:
            if not isinstance(entry, dict):
                raise ValueError("not an object")
            turns = conversation_turns(entry.get("conversations"))
        except ValueError as err:
            problems.add(BAD_ITEM, item_id, str(err))
            continue
        kind = "video" if "video" in entry else "image" if "image" in entry else None
        if kind is None:
            problems.add(NO_MEDIA, item_id)  # text-only chats (e.g. ShareGPT in LLaVA-665K) have no caches to read
            continue
        if not isinstance(entry[kind], str) or not entry[kind]:
            problems.add(BAD_ITEM, item_id, f"{kind} must be one file path (several per item are not supported)")
            continue
        media = Media(kind, (video_root if kind == "video" else image_root) / entry[kind], options.max_segments)
        if _exists(media, options.check_files, problems, item_id):
            items.append(Item(item_id, media, [turns], "conversation"))
    return items


# ---- Video-ChatGPT instruction JSON ------------------------------------------------------------------


@dataclass
class VideoChatGPTOptions(SplitOptions):
    json: str = ""
    """Video-ChatGPT's instruction file (VideoInstruct_Dataset.json): a list of {"video_id", "q", "a"}."""
    video_folder: str = ""
    """Folder holding `<video_id><extension>` (ActivityNet videos for VideoInstruct-100K)."""
    extensions: list[str] = field(default_factory=lambda: list(VIDEO_EXTENSIONS))
    """File extensions tried, in order, for each video_id."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.extensions or not all(e.startswith(".") for e in self.extensions):
            raise ValueError(f"extensions must be a non-empty list like ['.mp4'], got {self.extensions}")


def _video_file(folder: Path, video_id: str, extensions: list[str], check: bool) -> Path:
    candidates = [folder / f"{video_id}{ext}" for ext in extensions]
    if check:
        return next((c for c in candidates if c.is_file()), candidates[0])
    return candidates[0]


def parse_videochatgpt(options: VideoChatGPTOptions, problems: Problems, questions_per_video: int) -> list[Item]:
    """Questions grouped by video (its caches are shared), `questions_per_video` per item, single-turn each."""
    path = _need(options.json, "json", "Video-ChatGPT instruction JSON")
    folder = _need(options.video_folder, "video_folder", "the videos named by video_id")
    raw = _read_json(path, "json")
    if not isinstance(raw, list):
        raise ValueError(f"data.options.json: {path} holds a {type(raw).__name__}, not a list of items")
    by_video: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for n, entry in enumerate(raw):
        ok = isinstance(entry, dict) and all(isinstance(entry.get(k), str) and entry[k].strip()
                                             for k in ("video_id", "q", "a"))
        if not ok:
            problems.add(BAD_ITEM, str(entry.get("video_id", f"#{n}")) if isinstance(entry, dict) else f"#{n}",
                         "needs text video_id, q and a")
            continue
        by_video[entry["video_id"].strip()].append((entry["q"].strip(), entry["a"].strip()))
    items = []
    for video_id, qas in by_video.items():
        media = Media("video", _video_file(folder, video_id, options.extensions, options.check_files),
                      options.max_segments)
        if not _exists(media, options.check_files, problems, video_id):
            continue
        for start in range(0, len(qas), questions_per_video):
            chats = [[qa] for qa in qas[start : start + questions_per_video]]
            items.append(Item(f"{video_id}#{start // questions_per_video}", media, chats, "video_qa"))
    return items


# ---- (video, caption) pairs --------------------------------------------------------------------------


@dataclass
class WebVidOptions(SplitOptions):
    folder: str = ""
    """A folder of pairs: `name.mp4` (any video extension) beside `name.txt` holding its caption."""
    csv: str = ""
    """Or a CSV with a row per video (WebVid's own results_*.csv works: caption column `name`)."""
    video_folder: str = ""
    """Folder the CSV's video paths are relative to (default: the CSV's folder)."""
    video_path: str = "{video}"
    """The video's path from a CSV row, a Python format over its columns; WebVid: `{page_dir}/{videoid}.mp4`."""
    caption_column: str = "caption"
    """The CSV column holding the caption (WebVid: `name`)."""
    prompts: list[str] = field(default_factory=lambda: list(CAPTION_PROMPTS))
    """Captioning questions; each video gets one, chosen by a stable hash of its id."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if bool(self.folder) == bool(self.csv):
            raise ValueError("give exactly one of folder (video + .txt pairs) or csv")
        if not self.prompts or not all(isinstance(p, str) and p.strip() for p in self.prompts):
            raise ValueError("prompts must be a non-empty list of questions")


def _prompt(options: WebVidOptions, item_id: str) -> str:
    return options.prompts[zlib.crc32(item_id.encode()) % len(options.prompts)]


def _folder_pairs(folder: Path, problems: Problems) -> list[tuple[str, Path, str]]:
    pairs = []
    for video in sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS):
        item_id = str(video.relative_to(folder).with_suffix(""))
        text = video.with_suffix(".txt")
        caption = text.read_text(encoding="utf-8", errors="replace").strip() if text.is_file() else ""
        if caption:
            pairs.append((item_id, video, caption))
        else:
            problems.add(BAD_ITEM, item_id, f"no caption in {text.name}")
    return pairs


def _csv_pairs(options: WebVidOptions, path: Path, problems: Problems) -> list[tuple[str, Path, str]]:
    root = Path(options.video_folder) if options.video_folder else path.parent
    pairs = []
    with path.open(newline="", encoding="utf-8") as handle:
        for n, row in enumerate(csv.DictReader(handle)):
            try:
                relative = options.video_path.format(**row)
            except (KeyError, IndexError, ValueError) as err:
                problems.add(BAD_ITEM, f"row {n + 2}", f"video_path {options.video_path!r}: {err}")
                continue
            caption = (row.get(options.caption_column) or "").strip()
            if not caption:
                problems.add(BAD_ITEM, relative, f"no {options.caption_column!r} caption")
                continue
            pairs.append((relative, root / relative, caption))
    return pairs


def parse_webvid(options: WebVidOptions, problems: Problems, questions_per_video: int) -> list[Item]:
    if options.folder:
        pairs = _folder_pairs(_need(options.folder, "folder", "video + caption .txt pairs"), problems)
    else:
        pairs = _csv_pairs(options, _need(options.csv, "csv", "a CSV of videos and captions"), problems)
    items = []
    for item_id, video, caption in pairs:
        media = Media("video", video, options.max_segments)
        if _exists(media, options.check_files, problems, item_id):
            items.append(Item(item_id, media, [[(_prompt(options, item_id), caption)]], "caption"))
    return items
