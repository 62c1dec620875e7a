"""Prediction files: torn tails after a kill, one writer per part, shards, merge."""

from __future__ import annotations

import json

import pytest

from evaluation.predictions import (
    JsonlAppender,
    PredictionsError,
    Shard,
    done_ids,
    merge_parts,
    read_jsonl,
    shard_of,
)


def _line(record: dict) -> str:
    return json.dumps(record) + "\n"


def test_torn_tail_is_ignored_then_cut_before_appending(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(_line({"id": "a", "pred": "x"}) + _line({"id": "b", "pred": "y"}) + '{"id": "c", "pr')
    read = read_jsonl(path)
    assert [r["id"] for r in read.records] == ["a", "b"] and read.torn_tail and not read.bad_lines

    with JsonlAppender(path) as writer:
        assert writer.recovered_torn_tail
        writer.write({"id": "c", "pred": "z"})
    lines = path.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["a", "b", "c"]
    assert not read_jsonl(path).torn_tail


def test_bad_line_in_the_middle_is_reported_not_fatal(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(_line({"id": "a"}) + "garbage\n" + _line({"id": "b"}))
    read = read_jsonl(path)
    assert [r["id"] for r in read.records] == ["a", "b"] and read.bad_lines == [2] and not read.torn_tail


def test_one_writer_per_part(tmp_path):
    path = tmp_path / "p.jsonl"
    with JsonlAppender(path), pytest.raises(PredictionsError, match="another process"):
        JsonlAppender(path)
    with JsonlAppender(path) as writer:  # free again once closed
        writer.write({"id": "a"})


def test_shards_partition_deterministically():
    keys = [f"video{i}" for i in range(200)]
    shards = [Shard(i, 3) for i in range(3)]
    owners = [[s for s in shards if s.owns(k)] for k in keys]
    assert all(len(o) == 1 for o in owners)
    assert all(sum(s.owns(k) for k in keys) > 40 for s in shards)  # roughly balanced
    assert shard_of("video0", 3) == shard_of("video0", 3)
    # pinned values: the split must never change between versions or processes (no hash() randomisation)
    assert [shard_of(f"video{i}", 4) for i in range(8)] == [0, 1, 2, 2, 2, 1, 0, 0]
    assert Shard.parse(" 2/5 ") == Shard(2, 5) and Shard(2, 5).filename == "shard-2-of-5.jsonl"
    for bad in ("5/5", "1", "-1/3", "a/b", "0/0"):
        with pytest.raises(ValueError):
            Shard.parse(bad)


def test_shard_of_is_stable_across_processes():
    import subprocess
    import sys

    code = "from evaluation.predictions import shard_of; print([shard_of(f'v{i}', 7) for i in range(20)])"
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": str(seed), "PYTHONPATH": "."}).stdout for seed in (1, 2)}
    assert len(outs) == 1
    assert outs.pop().strip() == str([shard_of(f"v{i}", 7) for i in range(20)])


def test_merge_dedupes_prefers_success_and_reports_missing(tmp_path):
    a, b = tmp_path / "main.jsonl", tmp_path / "shard-0-of-2.jsonl"
    a.write_text(_line({"id": "1", "pred": "x", "error": None})
                 + _line({"id": "2", "pred": None, "error": "boom"})
                 + _line({"id": "1", "pred": "x2", "error": None})  # duplicate: the first success stays
                 + _line({"id": "zz", "pred": "other dataset"}))
    b.write_text(_line({"id": "2", "pred": "y", "error": None})  # a success replaces the failure
                 + _line({"id": "3", "pred": None, "error": "bad video"})
                 + '{"id": "4"')  # torn
    result = merge_parts([a, b], ["1", "2", "3", "4"])
    assert [(r["id"], r["pred"]) for r in result.records] == [("1", "x"), ("2", "y"), ("3", None)]
    assert result.missing == ["4"] and not result.complete
    assert result.duplicates == 2 and result.unknown == 1 and result.torn == [str(b)]
    assert done_ids([a, b]) == {"1", "2", "zz"}  # failures are retried by the next run
