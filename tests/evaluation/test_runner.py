"""The pipeline end to end with the real tiny model on real synthetic videos: resume after a kill, shards and
their merge, refused resumes, answer errors, missing videos, `--answerer`; `StoreAnswerer` on the real store."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from evaluation.answerers import ModelAnswerer, StoreAnswerer
from evaluation.cli import main
from evaluation.judges import exact_match
from evaluation.predictions import read_jsonl
from evaluation.readers import read_dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def dataset_root(synth_videos, tmp_path):
    """A private copy of the three synthetic videos and their 9 questions (tests change the files)."""
    root = tmp_path / "data"
    shutil.copytree(synth_videos, root)
    return root


@pytest.fixture
def rows(dataset_root) -> list[dict]:
    return [{"id": i.id, "video": i.video, "question": i.question, "answer": i.answer}
            for i in read_dataset("custom", dataset_root).items]


@pytest.fixture
def model_args(tiny_checkpoint):
    def make(max_new_tokens: int = 3) -> list[str]:
        return ["--model", str(tiny_checkpoint), "--segment-seconds", "1.0", "--max-new-tokens", str(max_new_tokens)]

    return make


def _args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["--dataset", "custom", "--root", str(root), "--out", str(out), "--no-progress", *extra]


def _ids(path: Path) -> list[str]:
    return [r["id"] for r in read_jsonl(path).records]


def _preds(path: Path) -> list[tuple[str, str]]:
    return [(r["id"], r["pred"]) for r in read_jsonl(path).records]


def _resume_and_check(dataset_root, rows, out: Path, args: list[str], before: list[str], capsys) -> None:
    """Cut the part file's last line in half (as a kill would), rerun: every question exactly once."""
    part = out / "parts" / "main.jsonl"
    assert not (out / "predictions.jsonl").exists()
    with open(part, "ab") as handle:
        handle.write(b'{"id": "' + rows[-1]["id"].encode() + b'", "pred": "ye')
    capsys.readouterr()
    assert main(_args(dataset_root, out, *args)) == 0
    err = capsys.readouterr().err
    assert "cut by an earlier kill was dropped" in err
    assert f"answered {len(rows) - len(before)} questions" in err
    merged = _ids(out / "predictions.jsonl")
    assert merged == [r["id"] for r in rows]  # every id exactly once, in annotation order
    in_part = _ids(part)
    assert sorted(in_part) == sorted(merged) and not read_jsonl(part).torn_tail  # nothing answered twice
    assert in_part[: len(before)] == before

    assert main(_args(dataset_root, out, *args)) == 0  # a third run has nothing to do
    assert "every question already has a prediction" in capsys.readouterr().err
    assert len(_ids(part)) == len(rows)


def test_resume_answers_every_question_exactly_once(dataset_root, rows, model_args, tmp_path, capsys):
    """A run stopped after 4 questions (here by --limit) resumes with the other 5; see the kill test below."""
    out = tmp_path / "out"
    assert main(_args(dataset_root, out, *model_args(), "--limit", "4")) == 0
    (out / "predictions.jsonl").unlink()
    before = _ids(out / "parts" / "main.jsonl")
    assert before == [r["id"] for r in rows[:4]]
    _resume_and_check(dataset_root, rows, out, model_args(), before, capsys)


@pytest.mark.slow
def test_resume_after_kill_answers_every_question_exactly_once(dataset_root, rows, model_args, tmp_path, capsys):
    """SIGKILL a real run mid-way (a subprocess: ~10-30 s on a busy machine, hence slow)."""
    out = tmp_path / "out"
    part = out / "parts" / "main.jsonl"
    slow = model_args(max_new_tokens=48)  # longer answers, so the kill lands mid-run
    cmd = [sys.executable, str(REPO / "scripts" / "eval_videoqa.py"), *_args(dataset_root, out, *slow)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if part.exists() and part.read_bytes().count(b"\n") >= 2:
                break
            time.sleep(0.01)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    before = _ids(part)
    assert 2 <= len(before) < len(rows)
    _resume_and_check(dataset_root, rows, out, slow, before, capsys)


def test_shards_then_merge(dataset_root, rows, model_args, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(dataset_root, out, *model_args(), "--shard", "0/2")) == 0
    assert not (out / "predictions.jsonl").exists()  # a shard run does not judge
    assert main(_args(dataset_root, out, "--merge")) == 1
    err = capsys.readouterr().err
    assert "have no prediction" in err and "1/2 lacks" in err

    assert main(_args(dataset_root, out, *model_args(), "--shard", "1/2")) == 0
    assert main(_args(dataset_root, out, *model_args(), "--shard", "1/2")) == 0  # rerun: nothing to do
    assert "every question already has a prediction in shard 1/2" in capsys.readouterr().err
    videos_per_shard = [{r["video"] for r in read_jsonl(out / "parts" / f"shard-{i}-of-2.jsonl").records}
                        for i in range(2)]
    assert all(videos_per_shard) and not videos_per_shard[0] & videos_per_shard[1]  # split by video
    all_ids = [i for s in range(2) for i in _ids(out / "parts" / f"shard-{s}-of-2.jsonl")]
    assert Counter(all_ids) == Counter(r["id"] for r in rows)

    assert main(_args(dataset_root, out, "--merge")) == 0
    assert _ids(out / "predictions.jsonl") == [r["id"] for r in rows]
    report = json.loads((out / "metrics-exact.json").read_text())
    truth = {r["id"]: r["answer"] for r in rows}
    yes = sum(exact_match(truth[i], pred) for i, pred in _preds(out / "predictions.jsonl"))
    assert report["overall"]["yes"] == yes and report["overall"]["judged"] == len(rows)
    assert "score" not in report["overall"] and "score" not in (out / "metrics-exact.md").read_text()
    assert main(_args(dataset_root, out, "--merge", "--shard", "0/2")) == 1


def test_resume_with_other_settings_is_refused(dataset_root, model_args, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(dataset_root, out, *model_args(3), "--limit", "3")) == 0
    assert main(_args(dataset_root, out, *model_args(4))) == 1
    assert "holds predictions made with other settings" in capsys.readouterr().err
    assert main(_args(dataset_root, out, *model_args(4), "--overwrite")) == 0
    assert len(_ids(out / "parts" / "main.jsonl")) == 9


def test_answer_errors_are_recorded_counted_and_retried(dataset_root, rows, model_args, tmp_path, capsys):
    out = tmp_path / "out"
    bad = rows[0]["video"]
    video = dataset_root / "videos" / f"{bad}.mp4"
    good_bytes = video.read_bytes()
    video.write_bytes(b"not a video\n" * 20)
    assert main(_args(dataset_root, out, *model_args())) == 2
    report = json.loads((out / "metrics-exact.json").read_text())
    n_bad = sum(r["video"] == bad for r in rows)
    assert report["overall"]["answer_error"] == n_bad and report["overall"]["judged"] == len(rows) - n_bad
    assert f"{bad}.mp4" in report["answer_error_examples"][0]
    video.write_bytes(good_bytes)
    assert main(_args(dataset_root, out, *model_args())) == 0  # the failed ones are asked again
    assert f"answered {n_bad} questions" in capsys.readouterr().err
    assert json.loads((out / "metrics-exact.json").read_text())["overall"]["answer_error"] == 0


def test_missing_videos_skip_or_fail_with_strict(dataset_root, rows, model_args, tmp_path, capsys):
    gone = rows[-1]["video"]
    (dataset_root / "videos" / f"{gone}.mp4").unlink()
    out = tmp_path / "out"
    assert main(_args(dataset_root, out, *model_args(), "--strict")) == 1
    err = capsys.readouterr().err
    assert "--strict: 1 of 3 videos have no file" in err and gone in err
    assert main(_args(dataset_root, out, *model_args())) == 0
    err = capsys.readouterr().err
    assert "1 videos have no file" in err and "missing_videos.txt" in err
    report = json.loads((out / "metrics-exact.json").read_text())
    assert report["overall"]["missing_video"] == sum(r["video"] == gone for r in rows)
    assert gone in (out / "missing_videos.txt").read_text()


def make_model_answerer(args):
    """An `--answerer` factory: the real `ModelAnswerer`, built by hand as a user's plug-in would."""
    from voco import VoCoModel

    model = VoCoModel.from_pretrained(args.model, segment_seconds=args.segment_seconds)
    return ModelAnswerer(model, max_new_tokens=args.max_new_tokens)


def test_answerer_plug_in_gives_the_built_in_answers(dataset_root, model_args, tmp_path, capsys):
    assert main(_args(dataset_root, tmp_path / "built_in", *model_args())) == 0
    spec = "tests.evaluation.test_runner:make_model_answerer"
    assert main(_args(dataset_root, tmp_path / "plug_in", *model_args(), "--answerer", spec)) == 0
    assert _preds(tmp_path / "plug_in" / "predictions.jsonl") == _preds(tmp_path / "built_in" / "predictions.jsonl")
    assert json.loads((tmp_path / "plug_in" / "run.json").read_text())["answerer_spec"] == spec


def test_usage_errors(dataset_root, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert main(_args(tmp_path / "nowhere", out)) == 1
    assert "no such folder" in capsys.readouterr().err
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(_args(dataset_root, out, "--judge", "openai")) == 1
    assert "OPENAI_API_KEY" in capsys.readouterr().err
    assert main(_args(dataset_root, out, "--answerer", "no_such_module:make")) == 1
    assert "cannot import no_such_module" in capsys.readouterr().err
    assert main(_args(dataset_root, out, "--answerer", "builtins:vars")) == 1  # returns a dict
    assert "has no answer(video_path, question) method" in capsys.readouterr().err
    assert main(_args(dataset_root, out, "--shard", "0/2", "--overwrite")) == 1
    assert "would delete the other shards" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(_args(dataset_root, out, "--shard", "3/3"))


def test_help_runs_for_every_script():
    for script in ("eval_videoqa.py", "eval_msvd.py", "eval_msrvtt.py", "eval_activitynet.py"):
        done = subprocess.run([sys.executable, str(REPO / "scripts" / script), "--help"], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0 and "--shard I/N" in done.stdout and "--judge" in done.stdout
        assert ("--dataset {msvd" in done.stdout) == (script == "eval_videoqa.py")


# ---- with the tiny model ------------------------------------------------------------------------------


def test_model_answerer_end_to_end(dataset_root, model_args, tmp_path, capsys):
    out = tmp_path / "out"
    args = _args(dataset_root, out, *model_args())
    assert main(args) == 0
    records = read_jsonl(out / "predictions.jsonl").records
    assert len(records) == 9 and all(isinstance(r["pred"], str) and r["error"] is None for r in records)
    by_video: dict[str, list[dict]] = {}
    for r in records:
        by_video.setdefault(r["video"], []).append(r)
    for group in by_video.values():  # compressed once per video, then from the LRU
        assert [r["timings"]["cached"] for r in group] == [False, True, True]
        assert group[0]["timings"]["segments"] >= 2 and group[0]["timings"]["compress_s"] > 0
    run = json.loads((out / "run.json").read_text())
    assert run["answerer"] == "model" and run["segment_seconds"] == 1.0 and run["frames_per_segment"] == 2
    assert len(run["model_fingerprint"]) == 64
    report = json.loads((out / "metrics-exact.json").read_text())
    assert report["overall"]["questions"] == 9 and report["timings"]["videos_processed"] == 3

    # the same command with another segment length would mix settings: refused
    assert main([a if a != "1.0" else "1.5" for a in args]) == 1
    assert "other settings" in capsys.readouterr().err


def test_model_not_found_exits_1(synth_videos, tmp_path, capsys):
    assert main(_args(synth_videos, tmp_path / "out", "--model", str(tmp_path / "no_model"))) == 1
    assert "no checkpoint at" in capsys.readouterr().err


def test_decoding_follows_the_project_sampling_rule(synth_videos):
    import av

    from voco.segments import split_frames
    from voco.video.frames import decode_video_segments

    path = sorted((synth_videos / "videos").glob("*.mp4"))[0]
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    want = split_frames(frames, fps=8, segment_seconds=1.0, frames_per_segment=2)
    got = decode_video_segments(path, segment_seconds=1.0, frames_per_segment=2)
    assert len(got) == len(want) >= 2
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape and np.array_equal(a, b)
    small = decode_video_segments(path, segment_seconds=1.0, frames_per_segment=2, max_side=24)
    assert small[0].shape == (2, 24, 24, 3)


def test_model_answerer_reports_an_undecodable_video_as_that_question_error(tiny_checkpoint, tmp_path):
    from voco import VoCoModel
    from voco.video.probe import VideoError

    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video\n" * 20)
    answerer = ModelAnswerer(VoCoModel.from_pretrained(str(tiny_checkpoint)))
    with pytest.raises(VideoError, match="bad.mp4"):
        answerer.answer(bad, "what colour?")


def test_answer_past_the_model_position_budget_is_that_question_error(dataset_root, tiny_checkpoint, tmp_path):
    """The library's position-budget check reaches the evaluation as a recorded reason, not a silent answer."""
    out = tmp_path / "out"
    checkpoint = tmp_path / "short"
    shutil.copytree(tiny_checkpoint, checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    config["text_config"]["max_position_embeddings"] = 40  # a prompt alone is longer
    (checkpoint / "config.json").write_text(json.dumps(config))
    assert main(_args(dataset_root, out, "--model", str(checkpoint), "--segment-seconds", "1.0")) == 2
    records = read_jsonl(out / "predictions.jsonl").records
    assert records and all("ContextTooLong" in r["error"] and "budget is 40" in r["error"] for r in records)


# ---- the real store -----------------------------------------------------------------------------------


def test_store_answerer_gives_the_in_memory_answers(dataset_root, rows, model_args, tmp_path, capsys):
    """--home ingests the videos into a real store, answers from its caches exactly as in memory, and
    records a video ingest cannot read as its questions' error."""
    bad = rows[0]["video"]
    assert main(_args(dataset_root, tmp_path / "mem", *model_args())) == 0
    (dataset_root / "videos" / f"{bad}.mp4").write_bytes(b"not a video\n" * 20)
    home = tmp_path / "home"
    assert main(_args(dataset_root, tmp_path / "store", *model_args(), "--home", str(home))) == 2
    run = json.loads((tmp_path / "store" / "run.json").read_text())
    assert run["answerer"] == "store"
    stored = {r["id"]: r for r in read_jsonl(tmp_path / "store" / "predictions.jsonl").records}
    for qid, pred in _preds(tmp_path / "mem" / "predictions.jsonl"):
        if stored[qid]["video"] == bad:
            assert stored[qid]["pred"] is None and f"{bad}.mp4" in stored[qid]["error"]
        else:
            assert stored[qid]["pred"] == pred and stored[qid]["error"] is None

    from store import Store

    with Store.open(home) as store:
        ready = [v for v in store.list_videos() if v.status == "ready"]
    assert len(ready) == 2


def test_store_answerer_reuses_stored_caches(dataset_root, tiny_checkpoint, tmp_path):
    """A second answerer on the same home compresses nothing: the caches come from the store, and the
    answers are those computed in memory."""
    from voco import VoCoModel

    model = VoCoModel.from_pretrained(str(tiny_checkpoint), segment_seconds=1.0)
    videos = sorted((dataset_root / "videos").glob("*.mp4"))
    question = "what color is the circle?"
    compressed: list[int] = []
    real_compress = model.compress

    def counting_compress(segments, **kwargs):
        compressed.append(len(segments))
        return real_compress(segments, **kwargs)

    model.compress = counting_compress
    runs = []
    for _ in range(2):
        compressed.clear()
        answerer = StoreAnswerer(model, tmp_path / "home", max_new_tokens=3, show_progress=False)
        try:
            assert answerer.prepare(videos) == {}
            answers = [answerer.answer(v, question) for v in videos]
            assert answerer.last_timings["cached"] is False and answerer.last_timings["segments"] >= 2
        finally:
            answerer.close()
        runs.append((sum(compressed), answers))
    (first_segments, first), (second_segments, second) = runs
    assert first_segments >= 2 * len(videos) and second_segments == 0 and second == first
    memory = ModelAnswerer(model, max_new_tokens=3)
    assert [memory.answer(v, question) for v in videos] == first
