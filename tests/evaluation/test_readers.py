"""Annotation layouts and video lookup: joins by question_id, ActivityNet codes and v_ prefixes, LLaMA-VID
field variants, extensions, missing videos and --strict."""

from __future__ import annotations

import json

import pytest

from evaluation.readers import (
    DatasetError,
    VideoIndex,
    candidate_names,
    locate_videos,
    read_combined_file,
    read_dataset,
)
from evaluation.runner import RunError, make_plan
from tests.evaluation.layouts import (
    ANET_CODE,
    ANET_NAMES,
    touch_videos,
    write_llamavid,
    write_split,
    write_videollava,
)


def _by_id(items):
    return {i.id: i for i in items}


def _assert_matches_truth(items, rows):
    got = _by_id(items)
    assert set(got) == {r["id"] for r in rows}
    for r in rows:
        item = got[r["id"]]
        assert (item.video, item.question, item.answer) == (r["video"], r["question"], r["answer"]), r["id"]


def test_videollava_join_is_by_question_id_even_when_answers_are_shuffled(tmp_path, rows):
    folder = write_videollava(tmp_path, rows)
    # the fixture really is misaligned: pairing by position (the common script's bug) gives wrong answers
    questions = json.loads((folder / "test_q.json").read_text())
    answers = json.loads((folder / "test_a.json").read_text())
    by_position = sum(q["question_id"] != a["question_id"] for q, a in zip(questions, answers, strict=True))
    assert by_position > len(rows) // 2

    ds = read_dataset("msvd", tmp_path)
    _assert_matches_truth(ds.items, rows)
    assert [i.id for i in ds.items] == [r["id"] for r in rows]  # test_q.json order kept
    assert {i.type for i in ds.items} == {r["type"] for r in rows}
    assert ds.videos_dir == (folder / "videos").resolve()
    assert any("same order" in n for n in ds.notes)
    lookup = locate_videos(ds)
    assert not lookup.missing and len(lookup.paths) == 5


def test_msrvtt_videos_all_folder_and_gpt_zero_shot_nesting(tmp_path, rows):
    write_videollava(tmp_path / "GPT_Zero_Shot_QA", rows, "MSRVTT_Zero_Shot_QA", videos="videos/all")
    ds = read_dataset("msrvtt", tmp_path)
    _assert_matches_truth(ds.items, rows)
    assert ds.videos_dir.name == "all"
    assert not locate_videos(ds).missing


def test_activitynet_release_layout_codes_and_v_prefix(tmp_path, rows):
    anet_rows = [{**r, "video": f"v_{r['video']}"} for r in rows]  # video files carry v_, test_q.json does not
    write_split(tmp_path / "dataset", anet_rows, type_codes=True, strip_v=True)
    videos = sorted(dict.fromkeys(r["video"] for r in anet_rows))
    exts = [".mp4", ".mkv", ".webm", ".avi", ".mp4"]
    for name, ext in zip(videos, exts, strict=True):
        touch_videos(tmp_path / "videos", [name], ext=ext)
    ds = read_dataset("activitynet", tmp_path)
    assert ds.files[0].parent.name == "dataset"
    got = _by_id(ds.items)
    for r in rows:
        item = got[r["id"]]
        assert item.video == r["video"]  # as annotated: no v_
        assert item.answer == r["answer"]
        assert item.type == ANET_NAMES[ANET_CODE[r["type"]]]
    lookup = locate_videos(ds)
    assert not lookup.missing
    assert sorted(p.suffix for p in lookup.paths.values()) == sorted(exts)
    assert all(p.stem.startswith("v_") for p in lookup.paths.values())


def test_activitynet_string_codes_and_unknown_codes(tmp_path):
    (tmp_path / "test_q.json").write_text(json.dumps([
        {"video_name": "a", "question_id": "v_a_0", "question": "q0"},
        {"video_name": "a", "question_id": "v_a_1", "question": "q1"}]))
    (tmp_path / "test_a.json").write_text(json.dumps([
        {"question_id": "v_a_1", "answer": "no", "type": 12},
        {"question_id": "v_a_0", "answer": "yes", "type": "3"}]))
    items = read_dataset("activitynet", tmp_path).items
    assert [(i.id, i.answer, i.type) for i in items] == [("v_a_0", "yes", "yes_no"), ("v_a_1", "no", "type_12")]


@pytest.mark.parametrize("video_key", ["video_id", "video_name", "video"])
def test_llamavid_single_file_variants(tmp_path, rows, video_key):
    write_llamavid(tmp_path / "MSVD-QA" / "test_qa.json", rows, video_key=video_key, id_key="question_id")
    touch_videos(tmp_path / "MSVD-QA" / "video", dict.fromkeys(r["video"] for r in rows), ext=".avi")
    ds = read_dataset("msvd", tmp_path)
    _assert_matches_truth(ds.items, rows)
    assert ds.videos_dir.name == "video"
    assert not locate_videos(ds).missing


def test_llamavid_repeating_and_absent_ids_are_made_unique(tmp_path, rows):
    write_llamavid(tmp_path / "a.json", rows, repeat_ids=True)  # LLaMA-VID: "id" is the video id, repeated
    notes: list[str] = []
    items = read_combined_file(tmp_path / "a.json", notes=notes)
    assert len({i.id for i in items}) == len(rows)
    first_video = rows[0]["video"]
    assert [i.id for i in items if i.video == first_video][:2] == [f"{first_video}_0", f"{first_video}_1"]
    assert any("repeat" in n for n in notes)

    write_llamavid(tmp_path / "b.json", rows, id_key=None)
    notes = []
    items = read_combined_file(tmp_path / "b.json", notes=notes)
    assert len({i.id for i in items}) == len(rows)
    assert any("no question id" in n for n in notes)
    assert [i.answer for i in items] == [r["answer"] for r in rows]


def test_llamavid_missing_field_names_the_file_and_fields(tmp_path):
    path = tmp_path / "test_qa.json"
    path.write_text(json.dumps([{"video_id": "x", "answer": "yes", "id": 1}]))
    with pytest.raises(DatasetError) as err:
        read_combined_file(path)
    message = str(err.value)
    assert str(path) in message and "question" in message and "'answer', 'id', 'video_id'" in message


def test_join_errors_name_the_files(tmp_path, rows):
    write_split(tmp_path, rows)
    answers = json.loads((tmp_path / "test_a.json").read_text())
    (tmp_path / "test_a.json").write_text(json.dumps(answers[:-3]))
    with pytest.raises(DatasetError, match=r"test_a\.json: no answer for 3 of the 30 questions"):
        read_dataset("custom", tmp_path)

    questions = json.loads((tmp_path / "test_q.json").read_text())
    (tmp_path / "test_q.json").write_text(json.dumps(questions + questions[:1]))
    with pytest.raises(DatasetError, match=r"test_q\.json: question_id is not unique"):
        read_dataset("custom", tmp_path)

    (tmp_path / "test_q.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"test_q\.json: not valid JSON"):
        read_dataset("custom", tmp_path)


def test_no_annotations_says_where_it_looked(tmp_path):
    with pytest.raises(DatasetError, match="MSVD_Zero_Shot_QA") as err:
        read_dataset("msvd", tmp_path)
    assert "--questions/--answers" in str(err.value)
    with pytest.raises(DatasetError, match="no such folder"):
        read_dataset("msvd", tmp_path / "nope")


def test_video_names_extensions_and_numeric_ids(tmp_path):
    touch_videos(tmp_path, ["clip"], ext=".mkv")
    touch_videos(tmp_path, ["clip"], ext=".mp4")  # mp4 preferred when both exist
    touch_videos(tmp_path / "sub", ["v_abc"], ext=".WEBM")
    touch_videos(tmp_path, ["video7010"], ext=".mov")
    touch_videos(tmp_path, ["vid12"], ext=".m4v")
    touch_videos(tmp_path, ["notes"], ext=".txt")
    index = VideoIndex(tmp_path)
    assert index.find("clip").suffix == ".mp4"
    assert index.find("clip.avi").suffix == ".mp4"  # a name given with an extension
    assert index.find("abc").name == "v_abc.WEBM"  # v_ added, recursive, extension case ignored
    assert index.find("v_abc") is not None
    assert index.find("7010").name == "video7010.mov"  # MSRVTT-QA's integer video ids
    assert index.find("12").name == "vid12.m4v"
    assert index.find("notes") is None
    assert candidate_names("v_x") == ["v_x", "x"]


def test_missing_videos_are_listed_and_strict_fails(tmp_path, rows):
    gone = rows[0]["video"]
    write_videollava(tmp_path, rows, missing=(gone,))
    ds = read_dataset("msvd", tmp_path)
    plan = make_plan(ds)
    assert plan.missing_videos == [gone]
    assert {i.video for i in plan.missing_items} == {gone}
    assert len(plan.answerable) + len(plan.missing_items) == len(rows)
    with pytest.raises(RunError, match=f"--strict: 1 of 5 videos have no file.*{gone}"):
        make_plan(ds, strict=True)
    assert make_plan(ds, limit=4).items == ds.items[:4]
