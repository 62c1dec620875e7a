"""The evaluation pipeline: plan -> predict (resumable, shardable) -> merge -> judge -> metrics.

    OUT/run.json                   what produced the predictions; a resume with other settings is refused
    OUT/parts/*.jsonl              append-only predictions (evaluation/predictions.py)
    OUT/predictions.jsonl          merged, one line per question, dataset order
    OUT/missing_videos.txt         videos with no file (their questions are skipped)
    OUT/judge_cache.jsonl          every openai judgment, so a rerun sends no request
    OUT/judgments-<judge>.jsonl    one line per judged question
    OUT/metrics-<judge>.json/.md   the numbers

Shards split the questions by their *video* (a stable hash of the video name): every question about a
video lands in the same shard, so each video is decoded and compressed once over all shards.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from evaluation.metrics import (
    ANSWER_ERROR,
    JUDGE_ERROR,
    JUDGED,
    MISSING_VIDEO,
    Row,
    compute_metrics,
    markdown_table,
    timing_summary,
)
from evaluation.predictions import (
    PARTS_DIR,
    PREDICTIONS,
    JsonlAppender,
    MergeResult,
    Shard,
    done_ids,
    is_success,
    merge_parts,
    part_files,
    part_path,
    shard_counts,
    shard_of,
    write_json_atomic,
    write_jsonl_atomic,
)
from evaluation.readers import Dataset, QAItem, locate_videos

RUN_INFO = "run.json"
MISSING_VIDEOS = "missing_videos.txt"
JUDGE_CACHE = "judge_cache.jsonl"
# run.json keys that may differ between runs adding to the same predictions
_FREE_KEYS = frozenset({"answerer", "annotation_files", "root"})


class RunError(RuntimeError):
    """The run cannot go on (missing videos with --strict, mismatched resume, incomplete merge ...)."""


@dataclass
class Plan:
    dataset: Dataset
    items: list[QAItem]
    """The evaluated questions (after --limit), in annotation order."""
    video_paths: dict[str, Path]
    missing_videos: list[str]

    @property
    def answerable(self) -> list[QAItem]:
        return [i for i in self.items if i.video in self.video_paths]

    @property
    def missing_items(self) -> list[QAItem]:
        return [i for i in self.items if i.video not in self.video_paths]


def make_plan(dataset: Dataset, limit: int | None = None, strict: bool = False) -> Plan:
    """The first `limit` questions (all when None) and their video files; `strict`: a missing video is fatal."""
    items = list(dataset.items) if limit is None else list(dataset.items[: max(0, limit)])
    subset = Dataset(dataset.name, items, dataset.files, dataset.videos_dir, dataset.notes, dataset.video_aliases)
    lookup = locate_videos(subset)
    plan = Plan(dataset, items, lookup.paths, lookup.missing)
    if strict and plan.missing_videos:
        where = dataset.videos_dir or "(no video folder found)"
        raise RunError(f"--strict: {len(plan.missing_videos)} of {len(lookup.paths) + len(lookup.missing)} videos "
                       f"have no file in {where} (e.g. {', '.join(plan.missing_videos[:5])}); "
                       f"{len(plan.missing_items)} questions would be skipped")
    return plan


def todo_items(plan: Plan, out: Path, shard: Shard | None) -> list[QAItem]:
    """Answerable questions of this shard with no successful prediction yet, grouped by video."""
    done = done_ids(part_files(out))
    todo = [i for i in plan.answerable if (shard is None or shard.owns(i.video)) and i.id not in done]
    first = {video: n for n, video in enumerate(dict.fromkeys(i.video for i in todo))}
    return sorted(todo, key=lambda i: first[i.video])  # stable: a video's questions keep their order


# ---- run.json -------------------------------------------------------------------------------------


def read_run_info(out: Path) -> dict:
    try:
        return json.loads((out / RUN_INFO).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def check_run_info(out: Path, info: dict, *, write: bool = True) -> None:
    """Refuse to add predictions made with other settings to those already in `out`."""
    path = out / RUN_INFO
    if path.is_file():
        old = read_run_info(out)
        diffs = [f"{key}: {old.get(key)!r} there, {info.get(key)!r} now" for key in sorted(set(old) | set(info))
                 if key not in _FREE_KEYS and key in info and key in old and old.get(key) != info.get(key)]
        if diffs:
            raise RunError(f"{out} holds predictions made with other settings ({'; '.join(diffs)}). Use another "
                           "--out, or --overwrite to discard them (only when no other run uses that --out)")
        if write and any(key not in old for key in info):
            write_json_atomic(path, {**old, **info})
    elif write:
        write_json_atomic(path, info)


def clear_outputs(out: Path) -> None:
    """--overwrite: remove predictions and results (the judge cache is kept: it is keyed by content)."""
    shutil.rmtree(out / PARTS_DIR, ignore_errors=True)
    for pattern in (PREDICTIONS, RUN_INFO, MISSING_VIDEOS, "judgments-*.jsonl", "metrics-*.json", "metrics-*.md"):
        for path in out.glob(pattern):
            path.unlink()


def write_missing_videos(out: Path, plan: Plan) -> None:
    path = out / MISSING_VIDEOS
    if not plan.missing_videos:
        if path.exists():
            path.unlink()
        return
    counts = Counter(i.video for i in plan.missing_items)
    lines = [f"# {len(plan.missing_videos)} videos with no file in {plan.dataset.videos_dir} "
             f"({len(plan.missing_items)} questions skipped); name<TAB>questions"]
    lines += [f"{video}\t{counts[video]}" for video in plan.missing_videos]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---- predict --------------------------------------------------------------------------------------


@dataclass
class PredictStats:
    written: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    recovered_torn_tail: bool = False
    error_examples: list[str] = field(default_factory=list)


def predict(todo: Sequence[QAItem], plan: Plan, answerer, out: Path, shard: Shard | None = None,
            progress: bool = False) -> PredictStats:
    """Answer every question in `todo`, appending one fsync'd line each to this run's part file."""
    stats = PredictStats()
    if not todo:
        return stats
    start = time.perf_counter()
    unusable: dict[Path, str] = {}
    prepare = getattr(answerer, "prepare", None)
    if callable(prepare):
        videos = list(dict.fromkeys(plan.video_paths[i.video] for i in todo))
        try:
            unusable = {Path(k): v for k, v in (prepare(videos) or {}).items()}
        except Exception as err:  # e.g. ingest refusing its arguments: nothing can be answered
            raise RunError(f"preparing {len(videos)} videos failed: {type(err).__name__}: {err}") from err
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc=f"answering{f' (shard {shard})' if shard else ''}", unit="q",
                   dynamic_ncols=True)
    with JsonlAppender(part_path(out, shard)) as writer:
        stats.recovered_torn_tail = writer.recovered_torn_tail
        for item in todo:
            path = plan.video_paths[item.video]
            record = {"id": item.id, "video": item.video, "video_file": path.name, "question": item.question,
                      "answer": item.answer, "type": item.type}
            t0 = time.perf_counter()
            if path in unusable:
                record.update(pred=None, error=f"video unusable: {unusable[path]}")
            else:
                try:
                    pred = answerer.answer(path, item.question)
                    if not isinstance(pred, str):
                        raise TypeError(f"the answerer returned {type(pred).__name__}, not str")
                    record.update(pred=pred.strip(), error=None)
                except Exception as err:  # one bad video must not stop an evaluation run
                    record.update(pred=None, error=f"{type(err).__name__}: {err}")
            timings = dict(getattr(answerer, "last_timings", None) or {}) if record["error"] is None else {}
            timings["total_s"] = round(time.perf_counter() - t0, 4)
            record["timings"] = timings
            if shard is not None:
                record["shard"] = str(shard)
            writer.write(record)
            stats.written += 1
            if record["error"] is not None:
                stats.errors += 1
                if len(stats.error_examples) < 5:
                    stats.error_examples.append(f"{item.id} ({item.video}): {record['error']}")
            if bar is not None:
                bar.update(1)
                if stats.errors:
                    bar.set_postfix(errors=stats.errors)
    if bar is not None:
        bar.close()
    stats.elapsed_s = time.perf_counter() - start
    return stats


# ---- merge ----------------------------------------------------------------------------------------


def merge(plan: Plan, out: Path) -> MergeResult:
    """All parts -> OUT/predictions.jsonl (one line per answerable question); raises when some are missing."""
    parts = part_files(out)
    result = merge_parts(parts, [i.id for i in plan.answerable])
    if result.missing:
        by_id = {i.id: i for i in plan.items}
        lines = []
        for count in sorted(shard_counts(parts)):
            per = Counter(shard_of(by_id[key].video, count) for key in result.missing)
            lines.append(f"by shard of {count}: " + ", ".join(f"{s}/{count} lacks {n}" for s, n in sorted(per.items())))
        raise RunError(
            f"{len(result.missing)} of {len(plan.answerable)} questions have no prediction in {out / PARTS_DIR} "
            f"(e.g. {', '.join(result.missing[:5])}){'; ' + '; '.join(lines) if lines else ''}. Run the missing "
            "shards (or the command without --shard/--merge) to finish them")
    write_jsonl_atomic(out / PREDICTIONS, result.records)
    return result


# ---- judge + metrics ------------------------------------------------------------------------------


def judge_and_score(plan: Plan, records: Sequence[dict], judge, out: Path, progress: bool = False,
                    run_info: dict | None = None) -> dict:
    """Judge the successful predictions, write judgments and metrics (JSON + Markdown); return the metrics file."""
    by_id = {str(r["id"]): r for r in records}
    items = {i.id: i for i in plan.items}
    ok_ids = [i.id for i in plan.answerable if i.id in by_id and is_success(by_id[i.id])]
    triples = [(items[k].question, items[k].answer, by_id[k]["pred"]) for k in ok_ids]
    judgments = dict(zip(ok_ids, judge.judge_many(triples, progress=progress), strict=True))

    rows: list[Row] = []
    lines: list[dict] = []
    for item in plan.items:
        record = by_id.get(item.id)
        if item.video not in plan.video_paths:
            rows.append(Row(item.id, item.type, MISSING_VIDEO))
            continue
        if record is None or not is_success(record):
            rows.append(Row(item.id, item.type, ANSWER_ERROR))
            continue
        j = judgments[item.id]
        if j.ok:
            rows.append(Row(item.id, item.type, JUDGED, j.pred, j.score))
        else:
            rows.append(Row(item.id, item.type, JUDGE_ERROR))
        lines.append({"id": item.id, "type": item.type, "question": item.question, "answer": item.answer,
                      "pred": record["pred"], "judge_pred": j.pred, "score": j.score, "error": j.error,
                      "raw": j.raw, "cached": j.cached})
    metrics = compute_metrics(rows, scored=judge.gives_score)
    name = judge.name
    write_jsonl_atomic(out / f"judgments-{name}.jsonl", lines)
    judge_errors = [f"{d['id']}: {d['error']}" for d in lines if d["error"]][:5]
    report = {
        "dataset": plan.dataset.name,
        "annotation_files": [str(p) for p in plan.dataset.files],
        "run": run_info or {},
        "judge": judge.describe(),
        **metrics,
        "timings": timing_summary(records),
        "judge_error_examples": judge_errors,
        "answer_error_examples": [f"{r['id']}: {r.get('error')}" for r in records if not is_success(r)][:5],
        "missing_videos": len(plan.missing_videos),
    }
    write_json_atomic(out / f"metrics-{name}.json", report)
    title = f"{DATASET_TITLES.get(plan.dataset.name, plan.dataset.name)}, judge {name}"
    if run_info and run_info.get("model"):
        title += f", model {run_info['model']}"
    (out / f"metrics-{name}.md").write_text(markdown_table(metrics, title), encoding="utf-8")
    return report


DATASET_TITLES = {"msvd": "MSVD-QA", "msrvtt": "MSRVTT-QA", "activitynet": "ActivityNet-QA", "custom": "custom"}
