"""Metrics: numbers on hand-made outcomes, and end to end on a hand-made prediction file (--merge, exact)."""

from __future__ import annotations

import json

import pytest

from evaluation.cli import main
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
from tests.evaluation.layouts import touch_videos


def test_numbers_on_hand_made_rows():
    rows = [
        Row("1", "color", JUDGED, "yes", 5), Row("2", "color", JUDGED, "no", 1), Row("3", "color", JUDGED, "yes", 4),
        Row("4", "color", MISSING_VIDEO),
        Row("5", "count", ANSWER_ERROR), Row("6", "count", JUDGE_ERROR), Row("7", "count", JUDGED, "no", 0),
    ]
    m = compute_metrics(rows)
    overall = m["overall"]
    assert (overall["questions"], overall["judged"], overall["yes"], overall["no"]) == (7, 4, 2, 2)
    assert overall["accuracy"] == 0.5 and overall["score"] == 2.5 and overall["coverage"] == pytest.approx(4 / 7)
    assert (overall[MISSING_VIDEO], overall[ANSWER_ERROR], overall[JUDGE_ERROR]) == (1, 1, 1)
    color, count = m["by_type"]["color"], m["by_type"]["count"]
    assert color["accuracy"] == pytest.approx(2 / 3) and color["score"] == pytest.approx(10 / 3)
    assert color[MISSING_VIDEO] == 1 and color["questions"] == 4
    assert count["accuracy"] == 0.0 and count["score"] == 0.0 and count["judged"] == 1
    table = markdown_table(m, "t")
    assert "| **all** | 7 | 4 | 50.0 | 2.50 | 1 | 1 | 1 |" in table
    assert "| color | 4 | 3 | 66.7 | 3.33 | 1 | 0 | 0 |" in table
    assert "| count | 3 | 1 | 0.0 | 0.00 | 0 | 1 | 1 |" in table


def test_nothing_judged_gives_none_not_zero_division():
    m = compute_metrics([Row("1", None, ANSWER_ERROR)])
    assert m["overall"]["accuracy"] is None and m["overall"]["score"] is None and m["by_type"] == {}
    assert "| **all** | 1 | 0 | - | - | 0 | 1 | 0 |" in markdown_table(m)


def test_a_judge_without_scores_gets_no_score_column():
    """The exact judge's 5-or-0 score was only 5 x accuracy: no score field, no column."""
    rows = [Row("1", "color", JUDGED, "yes"), Row("2", "color", JUDGED, "no"), Row("3", "count", ANSWER_ERROR)]
    m = compute_metrics(rows, scored=False)
    assert "score" not in m["overall"] and all("score" not in g for g in m["by_type"].values())
    table = markdown_table(m)
    assert "score" not in table and "| **all** | 3 | 2 | 50.0 | 0 | 1 | 0 |" in table
    assert table.splitlines()[1] == "|---|" + "---:|" * 6


def test_timing_summary_skips_work_a_cache_hit_did_not_do():
    records = [{"timings": {"decode_s": 1.0, "compress_s": 3.0, "answer_s": 0.5, "cached": False}},
               {"timings": {"decode_s": 0.0, "compress_s": 0.0, "answer_s": 0.3, "cached": True}},
               {"error": "x", "timings": {"total_s": 0.1}}]
    t = timing_summary(records)
    assert t["mean_decode_s"] == 1.0 and t["mean_compress_s"] == 3.0 and t["mean_answer_s"] == 0.4
    assert t["videos_processed"] == 1


def _hand_made(tmp_path):
    """5 questions on 3 videos (one without a file) and a prediction file written by hand."""
    root = tmp_path / "data"
    questions = [
        {"video_name": "vA", "question_id": "7", "question": "what colour is it?"},
        {"video_name": "vA", "question_id": "3", "question": "how many circles?"},
        {"video_name": "vB", "question_id": "11", "question": "what shape?"},
        {"video_name": "vB", "question_id": "5", "question": "how many squares?"},
        {"video_name": "vC", "question_id": "2", "question": "what colour is the sky?"},
    ]
    answers = [
        {"question_id": "5", "answer": "3", "type": "count"},
        {"question_id": "2", "answer": "blue", "type": "color"},
        {"question_id": "7", "answer": "red", "type": "color"},
        {"question_id": "11", "answer": "circle", "type": "object"},
        {"question_id": "3", "answer": "2", "type": "count"},
    ]
    root.mkdir()
    (root / "test_q.json").write_text(json.dumps(questions))
    (root / "test_a.json").write_text(json.dumps(answers))
    touch_videos(root / "videos", ["vA", "vB"])
    out = tmp_path / "out"
    (out / "parts").mkdir(parents=True)
    lines = [
        {"id": "7", "video": "vA", "pred": "Red.", "error": None},  # yes (normalised)
        {"id": "3", "video": "vA", "pred": "two", "error": None},  # yes (number word)
        {"id": "11", "video": "vB", "pred": "square", "error": None},  # no
        {"id": "5", "video": "vB", "pred": None, "error": "RuntimeError: cannot decode"},  # answer error
    ]
    (out / "parts" / "shard-0-of-2.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines[:2]))
    (out / "parts" / "shard-1-of-2.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines[2:]))
    return root, out


def test_metrics_of_a_hand_made_prediction_file(tmp_path, capsys):
    root, out = _hand_made(tmp_path)
    code = main(["--dataset", "custom", "--root", str(root), "--out", str(out), "--merge", "--no-progress"])
    assert code == 2  # finished, with an answer error counted
    report = json.loads((out / "metrics-exact.json").read_text())
    overall = report["overall"]
    assert (overall["questions"], overall["judged"], overall["yes"], overall["no"]) == (5, 3, 2, 1)
    assert overall["accuracy"] == pytest.approx(2 / 3) and "score" not in overall  # exact: no score
    assert (overall["missing_video"], overall["answer_error"], overall["judge_error"]) == (1, 1, 0)
    assert report["by_type"]["count"]["accuracy"] == 1.0 and report["by_type"]["count"]["answer_error"] == 1
    assert report["by_type"]["color"]["missing_video"] == 1 and report["by_type"]["object"]["accuracy"] == 0.0
    assert report["missing_videos"] == 1 and "cannot decode" in report["answer_error_examples"][0]
    # merged predictions in annotation order, one per answerable question
    merged = [json.loads(line)["id"] for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert merged == ["7", "3", "11", "5"]
    judged = {j["id"]: j for j in map(json.loads, (out / "judgments-exact.jsonl").read_text().splitlines())}
    assert judged["7"]["judge_pred"] == "yes" and judged["11"]["judge_pred"] == "no" and "5" not in judged
    md = (out / "metrics-exact.md").read_text()
    assert "| **all** | 5 | 3 | 66.7 | 1 | 1 | 0 |" in md and "score" not in md
    assert md in capsys.readouterr().out
    assert (out / "missing_videos.txt").read_text().splitlines()[1] == "vC\t1"
