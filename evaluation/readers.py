"""Reading video-QA annotation files into one list of questions, and finding each question's video file.

Layouts read (each auto-detected under `--root`, or named with `--questions/--answers` or `--qa`):

- Video-LLaVA eval layout (MSVD-QA, MSRVTT-QA, ActivityNet-QA, and `python -m voco.data.synthetic`):
  `test_q.json` = [{video_name, question_id, question}], `test_a.json` = [{question_id, answer, type?}].
  Questions and answers are joined on `question_id`, never by list position: the widely copied
  inference script pairs `test_q[i]` with `test_a[i]` chunk by chunk, which misaligns them as soon as
  the two files are not in the same order.
- ActivityNet-QA's own release: the same two files; `video_name` lacks the `v_` prefix the video files
  carry, and `type` is a code 0-8 (`ACTIVITYNET_TYPES`).
- LLaMA-VID's single `test_qa.json` = [{video_id | video_name | video, question, answer, id | question_id}]
  (field names vary between its datasets; `id` may repeat, it is then made unique in file order).
- MSVD-QA's original release: integer `video_id`s resolved through `youtube_mapping.txt` when present.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from voco.video import VIDEO_EXTENSIONS

"""Looked for in this order of preference when several files share a name."""

ACTIVITYNET_TYPES: tuple[str, ...] = (
    "motion", "spatial", "temporal", "yes_no", "color", "object", "location", "number", "other",
)
"""ActivityNet-QA `type` codes 0..8."""

DATASETS: tuple[str, ...] = ("msvd", "msrvtt", "activitynet", "custom")

# Where each dataset's files usually are, relative to --root (first that exists wins).
_ANNOTATION_DIRS: dict[str, tuple[str, ...]] = {
    "msvd": (".", "MSVD_Zero_Shot_QA", "GPT_Zero_Shot_QA/MSVD_Zero_Shot_QA", "MSVD-QA", "msvd"),
    "msrvtt": (".", "MSRVTT_Zero_Shot_QA", "GPT_Zero_Shot_QA/MSRVTT_Zero_Shot_QA", "MSRVTT-QA", "msrvtt"),
    "activitynet": (".", "Activitynet_Zero_Shot_QA", "GPT_Zero_Shot_QA/Activitynet_Zero_Shot_QA", "dataset",
                    "ActivityNet-QA", "ActivityNet-QA/dataset", "activitynet-qa/dataset"),
    "custom": (".",),
}
# Video folders, relative to the annotation folder, then to --root.
_VIDEO_DIRS: dict[str, tuple[str, ...]] = {
    "msvd": ("videos", "YouTubeClips", "video"),
    "msrvtt": ("videos/all", "videos", "video", "TestVideo"),
    "activitynet": ("all_test", "videos", "video", "../videos", "v1-3/test", "v1-2/val"),
    "custom": ("videos",),
}

_VIDEO_KEYS = ("video_name", "video_id", "video", "vid", "video_path")
_QUESTION_KEYS = ("question", "q", "Q")
_ANSWER_KEYS = ("answer", "a", "A", "answers")
_ID_KEYS = ("question_id", "id", "qid")


class DatasetError(ValueError):
    """The annotation files are missing or malformed; the message names the file and what is wrong."""


@dataclass(frozen=True)
class QAItem:
    """One question about one video."""

    id: str
    video: str
    """Video name as the annotation gives it (without extension; ActivityNet names without `v_`)."""
    question: str
    answer: str
    type: str | None = None


@dataclass
class Dataset:
    name: str
    items: list[QAItem]
    files: list[Path]
    """The annotation files read."""
    videos_dir: Path | None
    notes: list[str] = field(default_factory=list)
    """What the reader had to assume or repair (printed for the user)."""
    video_aliases: dict[str, list[str]] = field(default_factory=dict)
    """Extra file names to try for a video (e.g. MSVD-QA's vidN -> YouTube clip name)."""


# ---- annotation files -------------------------------------------------------------------------------


def _load_json_list(path: Path) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise DatasetError(f"{path}: cannot read it ({err.strerror or err})") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        # JSON Lines is accepted too
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError:
            raise DatasetError(f"{path}: not valid JSON ({err})") from err
    if isinstance(data, dict):
        # {question_id: {...}} mappings appear in some re-distributions
        data = [{"question_id": key, **value} if isinstance(value, dict) else value for key, value in data.items()]
    if not isinstance(data, list) or not all(isinstance(entry, dict) for entry in data):
        raise DatasetError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
    return data


def _field(entry: dict, keys: Sequence[str], path: Path, index: int, what: str, required: bool = True):
    for key in keys:
        if key in entry and entry[key] is not None:
            return entry[key]
    if required:
        raise DatasetError(f"{path}: entry {index} has no {what} field (looked for {', '.join(keys)}); "
                           f"its fields are {sorted(entry)}")
    return None


def _answer_text(value, path: Path, index: int, notes: list[str]) -> str:
    if isinstance(value, list):
        if not value:
            raise DatasetError(f"{path}: entry {index} has an empty answer list")
        if not any("several answers" in n for n in notes):
            notes.append(f"{path.name}: some entries list several answers; the first one is the reference")
        value = value[0]
    return str(value).strip()


def type_name(value, dataset: str) -> str | None:
    """ActivityNet-QA's codes 0..8 -> names; any other type is kept as text."""
    if value is None:
        return None
    if dataset == "activitynet" and str(value).strip().isdigit():
        code = int(str(value).strip())
        return ACTIVITYNET_TYPES[code] if 0 <= code < len(ACTIVITYNET_TYPES) else f"type_{code}"
    return str(value)


def _check_unique(ids: Iterable[str], path: Path) -> None:
    repeated = [key for key, count in Counter(ids).items() if count > 1]
    if repeated:
        raise DatasetError(f"{path}: question_id is not unique ({len(repeated)} ids repeat, e.g. "
                           f"{', '.join(map(repr, repeated[:5]))}); a join on it would be ambiguous")


def read_split_files(questions_path: Path, answers_path: Path, dataset: str = "custom",
                     notes: list[str] | None = None) -> list[QAItem]:
    """`test_q.json` + `test_a.json`, joined on `question_id`; items in `test_q.json` order."""
    notes = notes if notes is not None else []
    questions = _load_json_list(questions_path)
    answers = _load_json_list(answers_path)
    q_ids = [str(_field(q, _ID_KEYS, questions_path, i, "question_id")) for i, q in enumerate(questions)]
    a_ids = [str(_field(a, _ID_KEYS, answers_path, i, "question_id")) for i, a in enumerate(answers)]
    _check_unique(q_ids, questions_path)
    _check_unique(a_ids, answers_path)
    by_id = dict(zip(a_ids, answers, strict=True))
    unanswered = [qid for qid in q_ids if qid not in by_id]
    if unanswered:
        raise DatasetError(
            f"{answers_path}: no answer for {len(unanswered)} of the {len(q_ids)} questions in {questions_path.name} "
            f"(e.g. question_id {', '.join(map(repr, unanswered[:5]))}); are the two files from the same dataset?")
    extra = len(set(a_ids) - set(q_ids))
    if extra:
        notes.append(f"{answers_path.name}: {extra} answers have no question in {questions_path.name} (ignored)")
    if q_ids != a_ids[: len(q_ids)]:
        notes.append(f"{questions_path.name} and {answers_path.name} are not in the same order: joined on "
                     "question_id (a join by position would pair the wrong answers)")
    items = []
    for i, (qid, entry) in enumerate(zip(q_ids, questions, strict=True)):
        ans = by_id[qid]
        items.append(QAItem(
            id=qid,
            video=str(_field(entry, _VIDEO_KEYS, questions_path, i, "video name")),
            question=str(_field(entry, _QUESTION_KEYS, questions_path, i, "question")).strip(),
            answer=_answer_text(_field(ans, _ANSWER_KEYS, answers_path, i, "answer"), answers_path, i, notes),
            type=type_name(ans.get("type", entry.get("type")), dataset),
        ))
    return items


def read_combined_file(path: Path, dataset: str = "custom", notes: list[str] | None = None) -> list[QAItem]:
    """LLaMA-VID's `test_qa.json`: questions with their answers in one list."""
    notes = notes if notes is not None else []
    entries = _load_json_list(path)
    if not entries:
        return []
    videos = [str(_field(e, _VIDEO_KEYS, path, i, "video name")) for i, e in enumerate(entries)]
    raw_ids = [_field(e, _ID_KEYS, path, i, "question id", required=False) for i, e in enumerate(entries)]
    if all(r is None for r in raw_ids):
        notes.append(f"{path.name}: no question id field ({', '.join(_ID_KEYS)}); ids are VIDEO_N, N counting the "
                     "video's questions in file order (stable while the file does not change)")
        raw_ids = videos
    elif any(r is None for r in raw_ids):
        missing = sum(r is None for r in raw_ids)
        raise DatasetError(f"{path}: {missing} of {len(entries)} entries have no question id "
                           f"({', '.join(_ID_KEYS)}) while the others have one")
    base = [str(r) for r in raw_ids]
    counts = Counter(base)
    ids = base
    if len(counts) < len(base):
        repeated = sum(c > 1 for c in counts.values())
        if raw_ids is not videos:
            notes.append(f"{path.name}: question ids repeat ({repeated} ids); made unique as ID_N, N counting "
                         "repeats in file order (LLaMA-VID's own scorer does the same)")
        seen: Counter[str] = Counter()
        ids = []
        for key in base:
            ids.append(f"{key}_{seen[key]}")
            seen[key] += 1
    items = []
    for i, entry in enumerate(entries):
        items.append(QAItem(
            id=ids[i], video=videos[i],
            question=str(_field(entry, _QUESTION_KEYS, path, i, "question")).strip(),
            answer=_answer_text(_field(entry, _ANSWER_KEYS, path, i, "answer"), path, i, notes),
            type=type_name(entry.get("type"), dataset),
        ))
    return items


def _read_youtube_mapping(folder: Path) -> dict[str, list[str]]:
    """MSVD-QA's `youtube_mapping.txt` ("<youtube clip name> vid<N>" per line) -> {vidN: [clip name]}."""
    for path in (folder / "youtube_mapping.txt", folder.parent / "youtube_mapping.txt"):
        if path.is_file():
            aliases: dict[str, list[str]] = {}
            for line in path.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) == 2:
                    aliases.setdefault(parts[1], []).append(parts[0])
            return aliases
    return {}


def read_dataset(
    dataset: str,
    root: str | os.PathLike,
    *,
    questions: str | os.PathLike | None = None,
    answers: str | os.PathLike | None = None,
    qa: str | os.PathLike | None = None,
    videos: str | os.PathLike | None = None,
) -> Dataset:
    """Find and read a dataset's annotations under `root` (or the files named), and its video folder."""
    if dataset not in DATASETS:
        raise DatasetError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"--root {root}: no such folder")
    notes: list[str] = []
    if (questions is None) != (answers is None):
        raise DatasetError("--questions and --answers go together (test_q.json and test_a.json)")
    if questions is not None and qa is not None:
        raise DatasetError("give either --questions/--answers or --qa, not both")

    files, folder = _annotation_files(dataset, root, questions, answers, qa)
    for path in files:
        if not path.is_file():
            raise DatasetError(f"{path}: no such file")
    if len(files) == 2:
        items = read_split_files(files[0], files[1], dataset, notes)
    else:
        items = read_combined_file(files[0], dataset, notes)
    if not items:
        raise DatasetError(f"{', '.join(map(str, files))}: no questions in it")

    videos_dir = _find_videos_dir(dataset, root, folder, videos)
    aliases = _read_youtube_mapping(folder) if dataset in ("msvd", "custom") else {}
    if aliases:
        notes.append(f"MSVD-QA youtube_mapping.txt found: {len(aliases)} vidN names map to YouTube clip names")
    return Dataset(dataset, items, files, videos_dir, notes, aliases)


def _annotation_files(dataset: str, root: Path, questions, answers, qa) -> tuple[list[Path], Path]:
    """The annotation files (test_q.json + test_a.json, or test_qa.json) named or found under `root`, and
    their folder."""
    if questions is not None:
        files = [Path(questions).expanduser(), Path(answers).expanduser()]
        return files, files[0].parent
    if qa is not None:
        files = [Path(qa).expanduser()]
        return files, files[0].parent
    tried = []
    for rel in _ANNOTATION_DIRS[dataset]:
        cand = (root / rel).resolve() if rel != "." else root
        split = [cand / "test_q.json", cand / "test_a.json"]
        if all(p.is_file() for p in split):
            return split, cand
        if (cand / "test_qa.json").is_file():
            return [cand / "test_qa.json"], cand
        tried.append(str(cand))
    raise DatasetError(
        f"no annotation files for {dataset} under {root}: looked for test_q.json + test_a.json or "
        f"test_qa.json in {', '.join(tried)}; see evaluation/README.md for the layouts, or name the files "
        "with --questions/--answers or --qa")


def _find_videos_dir(dataset: str, root: Path, folder: Path, videos: str | os.PathLike | None) -> Path | None:
    if videos is not None:
        path = Path(videos).expanduser()
        if not path.is_dir():
            raise DatasetError(f"--videos {path}: no such folder")
        return path
    for base in dict.fromkeys((folder, root)):
        for rel in _VIDEO_DIRS[dataset]:
            cand = (base / rel).resolve()
            if cand.is_dir():
                return cand
    return None


# ---- video files ------------------------------------------------------------------------------------


class VideoIndex:
    """Every video file under a folder (recursive), by file name without extension."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.by_stem: dict[str, list[Path]] = {}
        if folder is None:
            return
        rank = {ext: i for i, ext in enumerate(VIDEO_EXTENSIONS)}
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                stem, ext = os.path.splitext(name)
                if ext.lower() in rank and not name.startswith("."):
                    self.by_stem.setdefault(stem, []).append(Path(dirpath) / name)
        for paths in self.by_stem.values():
            paths.sort(key=lambda p: (rank[p.suffix.lower()], len(p.parts), str(p)))

    def __len__(self) -> int:
        return len(self.by_stem)

    def find(self, name: str, aliases: Sequence[str] = ()) -> Path | None:
        """The file for a video name: as given, with or without `v_`, `video<N>`/`vid<N>` for numbers."""
        for cand in candidate_names(name, aliases):
            paths = self.by_stem.get(cand)
            if paths:
                return paths[0]
        return None


def candidate_names(name: str, aliases: Sequence[str] = ()) -> list[str]:
    name = str(name).strip()
    stem, ext = os.path.splitext(name)
    if ext.lower() in VIDEO_EXTENSIONS:
        name = stem
    name = os.path.basename(name)
    out = [name, *aliases]
    out.append(name[2:] if name.startswith("v_") else f"v_{name}")
    if name.isdigit():
        out += [f"video{name}", f"vid{name}"]
    return list(dict.fromkeys(out))


@dataclass
class VideoLookup:
    paths: dict[str, Path]
    """video name -> file"""
    missing: list[str]
    """video names with no file, in first-question order"""


def locate_videos(dataset: Dataset) -> VideoLookup:
    index = VideoIndex(dataset.videos_dir)
    paths: dict[str, Path] = {}
    missing: list[str] = []
    for video in dict.fromkeys(item.video for item in dataset.items):
        path = index.find(video, dataset.video_aliases.get(video, ()))
        if path is None:
            missing.append(video)
        else:
            paths[video] = path
    return VideoLookup(paths, missing)


def limit_items(items: Sequence[QAItem], limit: int | None) -> list[QAItem]:
    return list(items) if limit is None else list(items[: max(0, limit)])
