"""Accuracy and score, overall and per answer type, with every failure counted; JSON and Markdown.

Each question of the evaluated set ends in one of four outcomes:
  judged        the judge said yes or no (with a score 0..5)
  missing_video no video file was found for it (skipped)
  answer_error  the model could not answer (e.g. the video does not decode)
  judge_error   the judge gave no usable judgment after its retries

accuracy = yes / (yes + no) and score = mean score, both over judged questions only (the Video-ChatGPT
protocol); `coverage` = judged / questions says how much of the set that is. A judge that gives no score
(exact match) gets no score field or column.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

JUDGED, MISSING_VIDEO, ANSWER_ERROR, JUDGE_ERROR = "judged", "missing_video", "answer_error", "judge_error"
OUTCOMES = (JUDGED, MISSING_VIDEO, ANSWER_ERROR, JUDGE_ERROR)
UNTYPED = "(no type)"


@dataclass(frozen=True)
class Row:
    id: str
    type: str | None
    outcome: str
    verdict: str | None = None  # yes | no, for judged rows
    score: int | None = None


def _group(rows: Sequence[Row], scored: bool) -> dict:
    judged = [r for r in rows if r.outcome == JUDGED]
    yes = sum(r.verdict == "yes" for r in judged)
    no = sum(r.verdict == "no" for r in judged)
    scores = [r.score for r in judged if r.score is not None]
    group = {
        "questions": len(rows),
        "judged": len(judged),
        "yes": yes,
        "no": no,
        "accuracy": yes / (yes + no) if yes + no else None,
        "coverage": len(judged) / len(rows) if rows else None,
        MISSING_VIDEO: sum(r.outcome == MISSING_VIDEO for r in rows),
        ANSWER_ERROR: sum(r.outcome == ANSWER_ERROR for r in rows),
        JUDGE_ERROR: sum(r.outcome == JUDGE_ERROR for r in rows),
    }
    if scored:
        group["score"] = sum(scores) / len(scores) if scores else None
    return group


def compute_metrics(rows: Iterable[Row], scored: bool = True) -> dict:
    """{"overall": {...}, "by_type": {type: {...}}} (types sorted; untyped questions under "(no type)").

    scored: the judge gives a 0..5 score per answer (each group then has a mean "score")."""
    rows = list(rows)
    for row in rows:
        if row.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {row.outcome!r} for {row.id}")
    by_type: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_type[row.type if row.type is not None else UNTYPED].append(row)
    result = {"overall": _group(rows, scored), "by_type": {t: _group(by_type[t], scored) for t in sorted(by_type)}}
    if list(result["by_type"]) == [UNTYPED]:
        result["by_type"] = {}
    return result


def timing_summary(records: Iterable[dict]) -> dict:
    """Means of the per-question timings stored with the predictions (seconds)."""
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    fresh = 0
    for record in records:
        timings = record.get("timings") or {}
        if timings.get("cached") is False:
            fresh += 1
        for name, value in timings.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and name.endswith("_s"):
                if name in ("decode_s", "compress_s", "load_s") and timings.get("cached"):
                    continue  # a cache hit did no such work
                sums[name] += value
                counts[name] += 1
    out = {f"mean_{name}": round(sums[name] / counts[name], 4) for name in sorted(sums) if counts[name]}
    out["videos_processed"] = fresh
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown_table(metrics: dict, title: str | None = None) -> str:
    """The overall row and one row per type, as a Markdown table (a score column when the metrics have one)."""
    scored = "score" in metrics["overall"]
    columns = ["questions", "judged", "accuracy (%)", *(["score (0-5)"] if scored else []), "missing videos",
               "answer errors", "judge errors"]
    head = "| | " + " | ".join(columns) + " |\n|---|" + "---:|" * len(columns)

    def row(name: str, m: dict) -> str:
        cells = [m["questions"], m["judged"], _pct(m["accuracy"]), *([_num(m["score"])] if scored else []),
                 m[MISSING_VIDEO], m[ANSWER_ERROR], m[JUDGE_ERROR]]
        return f"| {name} | " + " | ".join(str(c) for c in cells) + " |"

    lines = [f"### {title}", ""] if title else []
    lines += [head, row("**all**", metrics["overall"])]
    lines += [row(name, m) for name, m in metrics["by_type"].items()]
    return "\n".join(lines) + "\n"
