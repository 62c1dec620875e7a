"""The evaluation answers through the app's session with its segment selection: `--segments all|uniform|retrieved`
(and `--max-segments N`) change which segments each answer used, in memory and from the store alike."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from evaluation.cli import main
from evaluation.predictions import read_jsonl


@pytest.fixture
def dataset_root(synth_videos, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(synth_videos, root)
    return root


def _run(root: Path, out: Path, checkpoint: Path, *extra: str) -> dict[str, dict]:
    args = ["--dataset", "custom", "--root", str(root), "--out", str(out), "--no-progress", "--model",
            str(checkpoint), "--segment-seconds", "1.0", "--max-new-tokens", "2", *extra]
    assert main(args) == 0
    return {r["id"]: r for r in read_jsonl(out / "predictions.jsonl").records}


def _expected_tops(checkpoint: Path, root: Path, records: dict[str, dict]) -> dict[str, int]:
    """Each question's most relevant segment, computed here from the model's own search vectors (as the app)."""
    from voco import VoCoModel
    from voco.search import embedder_for, video_scores
    from voco.video.frames import decode_video_segments

    model = VoCoModel.from_pretrained(str(checkpoint), segment_seconds=1.0)
    embedder = embedder_for(model)
    vectors = {}
    for video in {r["video"] for r in records.values()}:
        segments = decode_video_segments(root / "videos" / f"{video}.mp4", segment_seconds=1.0,
                                         frames_per_segment=model.voco.frames_per_segment,
                                         max_side=2 * model.config.vision_config.image_size)
        vectors[video] = embedder.segment_vectors(model.compress(segments), frames=segments)
    return {qid: int(np.argmax(video_scores(vectors[r["video"]], embedder.query_vector(r["question"]),
                                            embedder.novelty_weight))) for qid, r in records.items()}


def test_segments_option_changes_the_segments_used(dataset_root, tiny_checkpoint, tmp_path):
    everything = _run(dataset_root, tmp_path / "all", tiny_checkpoint, "--segments", "all")
    uniform = _run(dataset_root, tmp_path / "uniform", tiny_checkpoint, "--segments", "uniform", "--max-segments", "2")
    retrieved = _run(dataset_root, tmp_path / "retr", tiny_checkpoint, "--segments", "retrieved", "--max-segments", "1")
    default = _run(dataset_root, tmp_path / "default", tiny_checkpoint)  # retrieved: all segments when they fit
    tops = _expected_tops(tiny_checkpoint, dataset_root, everything)
    for qid, rec in everything.items():
        n = rec["timings"]["segments"]
        assert n >= 2 and rec["timings"]["segments_used"] == list(range(n)) and not rec["timings"]["subset"]
        assert default[qid]["timings"]["segments_used"] == list(range(n))
        assert uniform[qid]["timings"]["segments_used"] == [0, n - 1] and uniform[qid]["timings"]["subset"]
        assert retrieved[qid]["timings"]["segments_used"] == [tops[qid]], qid
    assert set(tops.values()) - {0}, tops  # retrieval picked something other than the uniform subset's first
    run = json.loads((tmp_path / "retr" / "run.json").read_text())
    assert (run["segments"], run["max_segments"]) == ("retrieved", 1)


def test_store_answerer_retrieves_the_same_segments_from_stored_vectors(dataset_root, tiny_checkpoint, tmp_path):
    memory = _run(dataset_root, tmp_path / "mem", tiny_checkpoint, "--segments", "retrieved", "--max-segments", "1")
    stored = _run(dataset_root, tmp_path / "store", tiny_checkpoint, "--segments", "retrieved", "--max-segments", "1",
                  "--home", str(tmp_path / "home"))
    for qid, rec in memory.items():
        assert stored[qid]["timings"]["segments_used"] == rec["timings"]["segments_used"], qid
        assert stored[qid]["pred"] == rec["pred"]


def test_max_segments_needs_a_subset_selection(dataset_root, tiny_checkpoint, tmp_path, capsys):
    args = ["--dataset", "custom", "--root", str(dataset_root), "--out", str(tmp_path / "o"), "--model",
            str(tiny_checkpoint), "--segments", "all", "--max-segments", "2"]
    assert main(args) == 1
    assert "--max-segments N needs" in capsys.readouterr().err
