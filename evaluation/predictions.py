"""Prediction files: append-only JSON Lines, one fsync'd line per answer, shards, and their merge.

    OUT/parts/main.jsonl            what unsharded runs predicted (appended; a rerun skips its ids)
    OUT/parts/shard-I-of-N.jsonl    what `--shard I/N` predicted
    OUT/predictions.jsonl           the merge: one line per question, in dataset order

A kill can cut the last line of a part in half; reading ignores such a tail and the next writer cuts it
off before appending. Each part has one writer at a time (an exclusive lock on the file).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no lock, one writer per part is then up to the user
    fcntl = None  # type: ignore[assignment]

PARTS_DIR = "parts"
MAIN_PART = "main.jsonl"
PREDICTIONS = "predictions.jsonl"
_SHARD_FILE = re.compile(r"^shard-(\d+)-of-(\d+)\.jsonl$")


class PredictionsError(RuntimeError):
    """A predictions file cannot be used (locked by another process, incomplete merge ...)."""


# ---- JSON Lines -----------------------------------------------------------------------------------


@dataclass
class JsonlRead:
    records: list[dict]
    torn_tail: bool = False
    """The last line was cut short (a kill mid-write) and was ignored."""
    bad_lines: list[int] = field(default_factory=list)
    """1-based numbers of other lines that are not JSON objects (ignored)."""
    good_bytes: int = 0
    """Length of the file up to the end of its last complete line."""


def read_jsonl(path: str | os.PathLike) -> JsonlRead:
    """Every JSON object line of a file; a torn last line and undecodable lines are skipped and reported."""
    path = Path(path)
    if not path.exists():
        return JsonlRead([])
    data = path.read_bytes()
    result = JsonlRead([])
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # `tail` is b"" when the file ends with a newline
    offset = 0
    for number, raw in enumerate(complete, start=1):
        offset += len(raw) + 1
        if not raw.strip():
            result.good_bytes = offset
            continue
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            record = None
        if isinstance(record, dict):
            result.records.append(record)
        elif number == len(complete) and not tail:
            result.torn_tail = True  # a last line that ends in a newline yet is cut is still a torn tail
            continue
        else:
            result.bad_lines.append(number)
        result.good_bytes = offset
    if tail.strip():
        result.torn_tail = True
    return result


def write_jsonl_atomic(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Write a whole JSONL file at once (temp file, fsync, rename): readers never see half of it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: str | os.PathLike, payload: object) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class JsonlAppender:
    """Appends records to a JSONL file, one flushed and fsync'd line each, under an exclusive lock.

    On open, a torn last line (left by a kill) is cut off so the next line starts clean.
    """

    def __init__(self, path: str | os.PathLike, *, lock: bool = True, sync: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sync = sync
        self._handle = open(self.path, "a+b")  # noqa: SIM115 (closed in close())
        if lock and fcntl is not None:
            try:
                fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                self._handle.close()
                raise PredictionsError(f"{self.path} is being written by another process (same --out and --shard "
                                       "twice?); wait for it or use another --out") from err
        state = read_jsonl(self.path)
        size = self.path.stat().st_size
        if state.good_bytes < size:  # drop a torn tail
            self._handle.truncate(state.good_bytes)
        self.recovered_torn_tail = state.torn_tail
        self.existing = state.records

    def write(self, record: dict) -> None:
        self._handle.seek(0, os.SEEK_END)
        self._handle.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        self._handle.flush()
        if self.sync:
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._handle.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---- shards -----------------------------------------------------------------------------------------


def shard_of(key: str, count: int) -> int:
    """Deterministic shard of a key (same in every process and Python version: no `hash()`)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard must be I/N with 0 <= I < N, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match:
            raise ValueError(f"shard must look like I/N (e.g. 0/4), got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    def owns(self, key: str) -> bool:
        return shard_of(key, self.count) == self.index

    @property
    def filename(self) -> str:
        return f"shard-{self.index}-of-{self.count}.jsonl"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def part_path(out_dir: Path, shard: Shard | None) -> Path:
    return out_dir / PARTS_DIR / (shard.filename if shard else MAIN_PART)


def part_files(out_dir: Path) -> list[Path]:
    folder = out_dir / PARTS_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name == MAIN_PART or _SHARD_FILE.match(p.name))


def shard_counts(parts: Sequence[Path]) -> set[int]:
    return {int(m.group(2)) for p in parts if (m := _SHARD_FILE.match(p.name))}


def is_success(record: dict) -> bool:
    return record.get("error") is None and isinstance(record.get("pred"), str)


def done_ids(parts: Sequence[Path]) -> set[str]:
    """Ids with a successful prediction in any part (errors are retried)."""
    return {str(r["id"]) for p in parts for r in read_jsonl(p).records if "id" in r and is_success(r)}


# ---- merge ------------------------------------------------------------------------------------------


@dataclass
class MergeResult:
    records: list[dict]
    """One per expected id that has a record, in expected order."""
    missing: list[str]
    """Expected ids with no record in any part."""
    duplicates: int = 0
    """Records dropped because their id already had one."""
    unknown: int = 0
    """Records whose id is not expected (another dataset, or outside --limit)."""
    torn: list[str] = field(default_factory=list)
    bad_lines: dict[str, list[int]] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.missing


def merge_parts(parts: Sequence[Path], expected_ids: Sequence[str]) -> MergeResult:
    """One record per id: the first successful one in part order, else the last failed one."""
    expected = set(expected_ids)
    best: dict[str, dict] = {}
    duplicates = unknown = 0
    result = MergeResult([], [])
    for path in parts:
        read = read_jsonl(path)
        if read.torn_tail:
            result.torn.append(str(path))
        if read.bad_lines:
            result.bad_lines[str(path)] = read.bad_lines
        for record in read.records:
            if "id" not in record:
                unknown += 1
                continue
            key = str(record["id"])
            if key not in expected:
                unknown += 1
                continue
            held = best.get(key)
            if held is None:
                best[key] = record
            elif is_success(held):
                duplicates += 1
            else:
                duplicates += 1
                best[key] = record  # a success replaces a failure; a later failure the earlier one
    result.records = [best[key] for key in expected_ids if key in best]
    result.missing = [key for key in expected_ids if key not in best]
    result.duplicates, result.unknown = duplicates, unknown
    return result
