"""The pipeline end to end: resume after a kill, shards and their merge, refused resumes, answer errors,
missing videos; the tiny model through `ModelAnswerer`; `StoreAnswerer` against the assumed store API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from evaluation.answerers import StoreAnswerer, store_api_problem
from evaluation.cli import main
from evaluation.predictions import read_jsonl
from evaluation.readers import read_dataset
from evaluation.runner import make_plan, predict, todo_items
from tests.evaluation.layouts import touch_videos, write_split

REPO = Path(__file__).resolve().parents[2]
FAKE = "tests.evaluation.fakes:make"


@pytest.fixture
def dataset_root(tmp_path, rows):
    root = tmp_path / "data"
    write_split(root, rows)
    touch_videos(root / "videos", dict.fromkeys(r["video"] for r in rows))
    return root


def _args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["--dataset", "custom", "--root", str(root), "--out", str(out), "--no-progress", *extra]


def _ids(path: Path) -> list[str]:
    return [r["id"] for r in read_jsonl(path).records]


def test_resume_after_kill_answers_every_question_exactly_once(dataset_root, rows, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    part = out / "parts" / "main.jsonl"
    env = {**os.environ, "EVAL_FAKE_DELAY": "0.1"}
    cmd = [sys.executable, str(REPO / "scripts" / "eval_videoqa.py"), *_args(dataset_root, out, "--answerer", FAKE)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if part.exists() and part.read_bytes().count(b"\n") >= 4:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    before = _ids(part)
    assert 4 <= len(before) < len(rows)
    assert not (out / "predictions.jsonl").exists()
    with open(part, "ab") as handle:  # as if the kill had cut a line in half
        handle.write(b'{"id": "' + rows[-1]["id"].encode() + b'", "pred": "ye')

    monkeypatch.setenv("EVAL_FAKE_DELAY", "0")
    assert main(_args(dataset_root, out, "--answerer", FAKE)) == 0
    err = capsys.readouterr().err
    assert "cut by an earlier kill was dropped" in err
    assert f"answered {len(rows) - len(before)} questions" in err
    merged = _ids(out / "predictions.jsonl")
    assert merged == [r["id"] for r in rows]  # every id exactly once, in annotation order
    in_part = _ids(part)
    assert sorted(in_part) == sorted(merged) and not read_jsonl(part).torn_tail  # nothing answered twice
    assert in_part[: len(before)] == before

    assert main(_args(dataset_root, out, "--answerer", FAKE)) == 0  # a third run has nothing to do
    assert "every question already has a prediction" in capsys.readouterr().err
    assert len(_ids(part)) == len(rows)


def test_shards_then_merge(dataset_root, rows, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(dataset_root, out, "--answerer", FAKE, "--shard", "0/2")) == 0
    assert not (out / "predictions.jsonl").exists()  # a shard run does not judge
    assert main(_args(dataset_root, out, "--merge")) == 1
    err = capsys.readouterr().err
    assert "have no prediction" in err and "1/2 lacks" in err

    assert main(_args(dataset_root, out, "--answerer", FAKE, "--shard", "1/2")) == 0
    assert main(_args(dataset_root, out, "--answerer", FAKE, "--shard", "1/2")) == 0  # rerun: nothing to do
    assert "every question already has a prediction in shard 1/2" in capsys.readouterr().err
    videos_per_shard = [{r["video"] for r in read_jsonl(out / "parts" / f"shard-{i}-of-2.jsonl").records}
                        for i in range(2)]
    assert all(videos_per_shard) and not videos_per_shard[0] & videos_per_shard[1]  # split by video
    all_ids = [i for s in range(2) for i in _ids(out / "parts" / f"shard-{s}-of-2.jsonl")]
    assert Counter(all_ids) == Counter(r["id"] for r in rows)

    assert main(_args(dataset_root, out, "--merge")) == 0
    assert _ids(out / "predictions.jsonl") == [r["id"] for r in rows]
    report = json.loads((out / "metrics-exact.json").read_text())
    yes = sum(r["answer"] == "yes" for r in rows)  # the fake always answers "yes"
    assert report["overall"]["yes"] == yes and report["overall"]["judged"] == len(rows)
    assert main(_args(dataset_root, out, "--merge", "--shard", "0/2")) == 1


def test_resume_with_other_settings_is_refused(dataset_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(dataset_root, out, "--answerer", FAKE, "--limit", "3")) == 0
    assert main(_args(dataset_root, out, "--answerer", "tests.evaluation.fakes:make_other")) == 1
    assert "holds predictions made with other settings" in capsys.readouterr().err
    assert main(_args(dataset_root, out, "--answerer", "tests.evaluation.fakes:make_other", "--overwrite")) == 0
    assert len(_ids(out / "parts" / "main.jsonl")) == 30


def test_answer_errors_are_recorded_counted_and_retried(dataset_root, rows, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    bad = rows[0]["video"]
    monkeypatch.setenv("EVAL_FAKE_FAIL", bad)
    assert main(_args(dataset_root, out, "--answerer", FAKE)) == 2
    report = json.loads((out / "metrics-exact.json").read_text())
    n_bad = sum(r["video"] == bad for r in rows)
    assert report["overall"]["answer_error"] == n_bad and report["overall"]["judged"] == len(rows) - n_bad
    assert "cannot decode (test)" in report["answer_error_examples"][0]
    monkeypatch.delenv("EVAL_FAKE_FAIL")
    assert main(_args(dataset_root, out, "--answerer", FAKE)) == 0  # the failed ones are asked again
    assert f"answered {n_bad} questions" in capsys.readouterr().err
    assert json.loads((out / "metrics-exact.json").read_text())["overall"]["answer_error"] == 0


def test_missing_videos_skip_or_fail_with_strict(dataset_root, rows, tmp_path, capsys):
    gone = rows[-1]["video"]
    (dataset_root / "videos" / f"{gone}.mp4").unlink()
    out = tmp_path / "out"
    assert main(_args(dataset_root, out, "--answerer", FAKE, "--strict")) == 1
    err = capsys.readouterr().err
    assert "--strict: 1 of 5 videos have no file" in err and gone in err
    assert main(_args(dataset_root, out, "--answerer", FAKE)) == 0
    err = capsys.readouterr().err
    assert "1 videos have no file" in err and "missing_videos.txt" in err
    report = json.loads((out / "metrics-exact.json").read_text())
    assert report["overall"]["missing_video"] == sum(r["video"] == gone for r in rows)
    assert gone in (out / "missing_videos.txt").read_text()


def test_usage_errors(dataset_root, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert main(_args(tmp_path / "nowhere", out)) == 1
    assert "no such folder" in capsys.readouterr().err
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(_args(dataset_root, out, "--judge", "openai")) == 1
    assert "OPENAI_API_KEY" in capsys.readouterr().err
    assert main(_args(dataset_root, out, "--answerer", "no_such_module:make")) == 1
    assert "cannot import no_such_module" in capsys.readouterr().err
    assert main(_args(dataset_root, out, "--answerer", FAKE, "--shard", "0/2", "--overwrite")) == 1
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


def test_model_answerer_end_to_end(tiny_checkpoint, synth_videos, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "store", None)  # store not importable: --home falls back, with a note
    out = tmp_path / "out"
    args = _args(synth_videos, out, "--model", str(tiny_checkpoint), "--segment-seconds", "1.0",
                 "--max-new-tokens", "3", "--home", str(tmp_path / "home"))
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "--home" in err and "ignored" in err and "computing caches in memory" in err
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

    from ingest.frames import decode_video_segments
    from voco.segments import split_frames

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
    from evaluation.answerers import ModelAnswerer
    from ingest.probe import VideoError
    from voco import VoCoModel

    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video\n" * 20)
    answerer = ModelAnswerer(VoCoModel.from_pretrained(str(tiny_checkpoint)))
    with pytest.raises(VideoError, match="bad.mp4"):
        answerer.answer(bad, "what colour?")


# ---- store answerer against the assumed API --------------------------------------------------------


class _FakeModel:
    fingerprint = "f" * 64
    voco = SimpleNamespace(k=1, compressor="voco", segment_seconds=2.0, frames_per_segment=4)

    def answer(self, question, caches, max_new_tokens=32):
        return f"{caches[0]}|{question}|{max_new_tokens}"


def _install_fake_store(monkeypatch, calls: list, failing: set[str]):
    ingest, run, store = (types.ModuleType(n) for n in ("ingest", "ingest.run", "store"))

    def ingest_paths(paths, *, home=None, db_url=None, model="default", model_name=None, config=None,
                     progress=None, show_progress=False, store=None):
        calls.append(("ingest", [Path(p).name for p in paths], model_name, store is not None))
        files = []
        for n, p in enumerate(paths):
            bad = Path(p).stem in failing
            files.append(SimpleNamespace(path=str(p), status="failed" if bad else ("present" if n else "ingested"),
                                         video_id=None if bad else 100 + n, error=f"{p}: corrupt" if bad else None))
        return SimpleNamespace(files=files)

    class Store:
        @classmethod
        def open(cls, home=None, db_url=None, **kwargs):
            calls.append(("open", str(home), db_url))
            return cls()

        def load_caches(self, video_id, fingerprint, *, verify=False):
            calls.append(("load", video_id, fingerprint))
            return [f"cache{video_id}"]

        def close(self):
            calls.append(("close",))

    run.ingest_paths = ingest_paths
    ingest.run = run
    store.Store = Store
    for name, module in (("ingest", ingest), ("ingest.run", run), ("store", store)):
        monkeypatch.setitem(sys.modules, name, module)


def test_store_answerer_uses_the_assumed_store_api(dataset_root, rows, tmp_path, monkeypatch):
    calls: list = []
    bad = rows[-1]["video"]
    _install_fake_store(monkeypatch, calls, {bad})
    assert store_api_problem() is None
    plan = make_plan(read_dataset("custom", dataset_root))
    out = tmp_path / "out"
    answerer = StoreAnswerer(_FakeModel(), tmp_path / "home", model_name="default", max_new_tokens=5,
                             show_progress=False)
    stats = predict(todo_items(plan, out, None), plan, answerer, out)
    answerer.close()
    assert calls[0] == ("open", str(tmp_path / "home"), None)
    assert calls[1][0] == "ingest" and len(calls[1][1]) == 5 and calls[1][2:] == ("default", True)  # one batch
    loads = [c for c in calls if c[0] == "load"]
    assert len(loads) == 4 and {c[2] for c in loads} == {_FakeModel.fingerprint}  # once per usable video
    assert calls[-1] == ("close",)
    records = read_jsonl(out / "parts" / "main.jsonl").records
    n_bad = sum(r["video"] == bad for r in rows)
    assert stats.errors == n_bad
    assert all("corrupt" in r["error"] for r in records if r["video"] == bad)
    good = [r for r in records if r["video"] != bad]
    assert all(r["pred"].startswith("cache1") and r["pred"].endswith("|5") for r in good)


def test_store_api_mismatch_is_detected(monkeypatch):
    _install_fake_store(monkeypatch, [], set())
    monkeypatch.setattr(sys.modules["ingest.run"], "ingest_paths", lambda paths, home=None: None)
    assert "takes no" in store_api_problem()
    monkeypatch.setitem(sys.modules, "store", None)
    assert "not importable" in store_api_problem()


@pytest.mark.slow
def test_real_store_gives_the_in_memory_answers(tiny_checkpoint, synth_videos, tmp_path):
    """With the real ingest/store packages (skipped until they import and match the assumed API)."""
    if store_api_problem() is not None:
        pytest.skip(store_api_problem())
    base = ["--model", str(tiny_checkpoint), "--segment-seconds", "1.0", "--max-new-tokens", "3"]
    assert main(_args(synth_videos, tmp_path / "mem", *base)) == 0
    assert main(_args(synth_videos, tmp_path / "store", *base, "--home", str(tmp_path / "home"))) == 0
    assert json.loads((tmp_path / "store" / "run.json").read_text())["answerer"] == "store"
    mem = [(r["id"], r["pred"]) for r in read_jsonl(tmp_path / "mem" / "predictions.jsonl").records]
    stored = [(r["id"], r["pred"]) for r in read_jsonl(tmp_path / "store" / "predictions.jsonl").records]
    assert mem == stored
    # a second run reuses the stored caches (ingest reports them present)
    assert main(_args(synth_videos, tmp_path / "store2", *base, "--home", str(tmp_path / "home"))) == 0
