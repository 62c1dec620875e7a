"""The Ray executor runs the same unit of work as the local one: same results, claims, resume and failures,
on SQLite and on a real PostgreSQL server (a local Ray on this machine).

ray.init takes ~3 s here, but every run starts its worker processes (torch and the model load in each:
~8 s on a busy 2-core machine), so the fast suite keeps one run per test on the pairing docs/guide.md describes (Ray +
PostgreSQL) and the SQLite variants are `slow`."""

import json
import shutil

import pytest
import torch
from safetensors import safe_open

from ingest.config import IngestConfig, RayConfig, UsageError
from ingest.progress import ProgressEvent
from ingest.run import ingest_paths
from store import Store
from tests.fixtures.videos import make_bad_files, pattern_frames, write_video
from tests.ingest.conftest import SEGMENT_SECONDS

ON_POSTGRES_FAST = pytest.mark.parametrize(
    "db_url", [pytest.param("sqlite", marks=pytest.mark.slow), "postgresql"], indirect=True)
CFG = IngestConfig(segment_seconds=SEGMENT_SECONDS, batch_size=2, torch_threads=1)


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _ray(workers=2):
    from ingest.executors.ray_executor import RayExecutor

    return RayExecutor(RayConfig(workers=workers))


@ON_POSTGRES_FAST
def test_ray_workers_ingest_like_the_local_executor(tmp_path, ray_cluster, db_url, model_dir, model, video_dir):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("h264.mp4", "vp8.webm", "vfr.mkv"):
        shutil.copy(video_dir / name, folder / name)
    zoo = make_bad_files(folder / "bad", video_dir / "h264.mp4")
    home = tmp_path / "home"
    events: list[ProgressEvent] = []
    summary = ingest_paths([folder], home=home, db_url=db_url, model=str(model_dir), config=CFG,
                           executor=_ray(), progress=events.append)
    local = ingest_paths([folder], home=tmp_path / "local", model=model, model_name="tiny", config=CFG)
    assert [(f.path, f.status, f.segments) for f in summary.files] == \
        [(f.path, f.status, f.segments) for f in local.files]
    assert summary.count("ingested") == 3 and summary.count("failed") == len(zoo) and summary.exit_code == 2
    assert summary.segments == local.segments == 3 + 3 + 4
    assert sorted(e.file_index for e in events if e.kind == "done") == list(range(len(summary.files)))
    with Store.open(home, db_url) as store, Store.open(tmp_path / "local") as reference:
        by_path = {v.path: v for v in reference.list_videos(status="ready")}
        for video in store.list_videos(status="ready"):
            got = store.load_video_caches(video.id, model.fingerprint, verify=True).kv
            want = reference.load_video_caches(by_path[video.path].id, model.fingerprint).kv
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6)  # same frames, same model, same bytes
        assert len(store.list_videos(status="failed")) == len(zoo)
        # the run brought the search index up to date (once, by one worker), as a local run does
        (index_file,) = (home / "index").glob("*.safetensors")
        with safe_open(str(index_file), "np") as f:
            rows = json.loads(f.metadata()["rows"])
        assert sorted(map(int, rows)) == sorted(v.id for v in store.list_videos(status="ready"))
    again = ingest_paths([folder / "h264.mp4", folder / "vp8.webm"], home=home, db_url=db_url,
                         model=str(model_dir), config=CFG, executor=_ray())
    assert [f.status for f in again.files] == ["present", "present"] and again.segments == 0


@pytest.mark.slow
def test_ray_resumes_what_a_local_run_left(tmp_path, ray_cluster, db_url, model_dir, model):
    long = write_video(tmp_path / "long.mp4", pattern_frames(80))  # 8 s: 8 segments, batches of 2
    home = tmp_path / "home"

    def stop_after_two_batches(event: ProgressEvent) -> None:
        if event.kind == "batch" and event.segments_done == 4:
            raise KeyboardInterrupt

    first = ingest_paths([long], home=home, db_url=db_url, model=model, model_name="tiny", config=CFG,
                         progress=stop_after_two_batches)
    assert first.interrupted and first.segments == 4
    resumed = ingest_paths([long], home=home, db_url=db_url, model=str(model_dir), model_name="tiny", config=CFG,
                           executor=_ray(workers=1))
    assert [f.status for f in resumed.files] == ["ingested"] and resumed.segments == 4  # only the missing half
    with Store.open(home, db_url) as store:
        (video,) = store.list_videos()
        assert store.load_video_caches(video.id, model.fingerprint, verify=True).kv.shape[0] == 8


def test_ray_needs_a_model_it_can_load_on_its_workers(tmp_path, one_video, model):
    with pytest.raises(UsageError, match="model name or folder"):
        ingest_paths([one_video], home=tmp_path / "home", model=model, config=CFG, executor=_ray())


def test_ray_workers_that_cannot_load_the_model_are_one_usage_error(tmp_path, ray_cluster, one_video):
    with pytest.raises(UsageError, match="Ray workers could not start.*no-such-model"):
        ingest_paths([one_video], home=tmp_path / "home", model=str(tmp_path / "no-such-model"), config=CFG,
                     executor=_ray(workers=1))


@pytest.mark.slow
def test_the_readme_command_ray_workers_on_postgresql(tmp_path, postgres_url, model_dir, video_dir):
    """python -m ingest DIR --executor ray --workers 2 --db postgresql+psycopg://... --cache-root DIR --json"""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("h264.mp4", "vp8.webm", "vfr.mkv"):
        shutil.copy(video_dir / name, folder / name)
    cmd = [sys.executable, "-m", "ingest", str(folder), "--executor", "ray", "--workers", "2", "--db", postgres_url,
           "--cache-root", str(tmp_path / "caches"), "--model", str(model_dir), "--segment-seconds", "1",
           "--threads", "1", "--json"]
    env = {**os.environ, "PYTHONPATH": str(root), "TQDM_DISABLE": "1"}
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert [f["status"] for f in summary["files"]] == ["ingested"] * 3 and summary["segments_compressed"] == 10
    again = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and json.loads(again.stdout)["present"] == 3


def test_ray_refuses_a_read_only_database_before_any_worker_starts(tmp_path, one_video, capsys):
    """Exit 1 with the reason; the model named does not exist, so a worker that started would say so instead."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    from ingest.__main__ import main

    home = tmp_path / "home"
    Store(home).close()
    read_only = f"sqlite:///file:{home / 'voco.db'}?mode=ro&uri=true"
    code = main([str(one_video), "--home", str(home), "--db", read_only, "--model", str(tmp_path / "no-model"),
                 "--executor", "ray"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "cannot be written" in err and "could not start" not in err


def test_a_file_whose_worker_died_after_finishing_it_is_reported_as_the_store_holds_it(tmp_path, model, one_video):
    """A Ray worker killed after it finished its video (e.g. while it returned the result): the summary says
    `ingested`, with the stored figures, not failed; a video it had not finished stays failed (None here)."""
    import time

    from ingest.executors.ray_executor import settled

    home = tmp_path / "home"
    before = time.time() - 1
    (done,) = ingest_paths([one_video], home=home, model=model, model_name="tiny", config=CFG).files
    with Store.open(home) as store:
        result = settled(store, one_video, model.fingerprint, before)
        assert (result.status, result.video_id, result.segments) == ("ingested", done.video_id, done.segments)
        assert settled(store, one_video, model.fingerprint, time.time() + 5).status == "present"  # an earlier run's
        assert settled(store, one_video, "another model", before) is None
        assert settled(store, tmp_path / "other.mp4", model.fingerprint, before) is None
