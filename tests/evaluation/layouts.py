"""Dataset layouts for the tests, built from the synthetic world's questions (videos are empty files
unless a test needs real ones: the readers only look for names)."""

from __future__ import annotations

import json
import random
from pathlib import Path

# synthetic question type -> an ActivityNet-QA type code (0 motion .. 8 other)
ANET_CODE = {"motion": 0, "location": 1, "temporal": 2, "yes_no": 3, "what_color": 4, "what_object": 5,
             "when": 6, "count": 7}
ANET_NAMES = ("motion", "spatial", "temporal", "yes_no", "color", "object", "location", "number", "other")


def truth_rows(world, seed: int = 0) -> list[dict]:
    """One row per question with a non-sequential, non-monotonic question id."""
    rng = random.Random(seed)
    total = sum(len(qas) for _, qas in world)
    numbers = rng.sample(range(10_000, 99_999), total)
    rows = []
    for video, qas in world:
        for qa in qas:
            rows.append({"id": f"q{numbers[len(rows)]}", "video": video, "question": qa.question,
                         "answer": qa.answer, "type": qa.type})
    return rows


def touch_videos(folder: Path, names, ext: str = ".mp4", prefix: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{prefix}{name}{ext}").write_bytes(b"")


def write_split(folder: Path, rows, *, shuffle_seed: int = 1, type_codes: bool = False, strip_v: bool = False):
    """test_q.json in row order, test_a.json shuffled (the join must not rely on position)."""
    folder.mkdir(parents=True, exist_ok=True)
    questions = [{"video_name": r["video"][2:] if strip_v else r["video"], "question_id": r["id"],
                  "question": r["question"]} for r in rows]
    answers = [{"question_id": r["id"], "answer": r["answer"],
                "type": ANET_CODE[r["type"]] if type_codes else r["type"]} for r in rows]
    random.Random(shuffle_seed).shuffle(answers)
    assert [a["question_id"] for a in answers] != [q["question_id"] for q in questions]
    (folder / "test_q.json").write_text(json.dumps(questions), encoding="utf-8")
    (folder / "test_a.json").write_text(json.dumps(answers), encoding="utf-8")
    return questions, answers


def write_videollava(root: Path, rows, dataset_dir: str = "MSVD_Zero_Shot_QA", videos: str = "videos",
                     missing: tuple[str, ...] = ()) -> Path:
    folder = root / dataset_dir
    write_split(folder, rows)
    touch_videos(folder / videos, [v for v in dict.fromkeys(r["video"] for r in rows) if v not in missing])
    return folder


def write_llamavid(path: Path, rows, *, video_key: str = "video_id", id_key: str | None = "id",
                   repeat_ids: bool = False) -> None:
    """LLaMA-VID's single test_qa.json; `repeat_ids`: the id is the video's (repeats, as in LLaMA-VID)."""
    entries = []
    for r in rows:
        entry = {video_key: r["video"], "question": r["question"], "answer": r["answer"]}
        if id_key is not None:
            entry[id_key] = r["video"] if repeat_ids else r["id"]
        entries.append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries), encoding="utf-8")
