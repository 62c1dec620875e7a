"""Real processes: a SIGKILL mid-run loses nothing, and two ingests on one folder never duplicate work."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from ingest.config import IngestConfig
from ingest.run import ingest_paths
from store import Store
from store.models import Cache
from tests.fixtures.videos import pattern_frames, write_video

ROOT = Path(__file__).resolve().parents[2]

# Ingest with a pause after every stored batch: slow enough to be killed mid-run, no hook in the product.
SLOW_DRIVER = """
import sys, time
from ingest.config import IngestConfig
from ingest.run import ingest_paths
home, model, *paths = sys.argv[1:]
pause = lambda event: time.sleep(0.25) if event.kind == "batch" else None
ingest_paths(paths, home=home, model=model, progress=pause,
             config=IngestConfig(segment_seconds=1.0, batch_size=1, torch_threads=1))
"""


def _db_args(db_url: str | None) -> list[str]:
    return ["--db", db_url] if db_url else []


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}


def _count_segments(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM segments").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def _assert_consistent(store: Store, fingerprint: str, expect_ready: int) -> None:
    videos = store.list_videos()
    assert len(videos) == expect_ready and all(v.status == "ready" for v in videos), videos
    for video in videos:
        caches = store.load_video_caches(video.id, fingerprint, verify=True)
        assert caches.kv.shape[0] == video.num_segments == video.segments_done
    files = [p for p in store.home.caches.rglob("*") if p.is_file() and p.suffix != ".vectors"]  # search vectors
    assert len(files) == expect_ready, files  # one pack per video: no chunk, no temp file left
    assert all(p.name.startswith("pack-") for p in files)


def test_sigkill_mid_run_then_resume_finishes_only_what_is_missing(tmp_path, model_dir, model):
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(3):
        write_video(videos / f"v{i}.mp4", pattern_frames(60, seed=i))  # 6 s: 6 segments each
    home = tmp_path / "home"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_DRIVER, str(home), str(model_dir), str(videos)],
                            cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while _count_segments(home / "voco.db") < 4:
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "the ingest subprocess made no progress"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    stored = _count_segments(home / "voco.db")
    assert 4 <= stored < 18

    with Store.open(home) as store:  # after the kill: no row points at a missing or short file
        with store.read() as s:
            rows = s.execute(select(Cache.file, Cache.offset, Cache.nbytes)).all()
        for file, offset, nbytes in rows:
            path = home / file
            assert path.is_file() and path.stat().st_size >= offset + nbytes

    summary = ingest_paths([videos], home=home, model=model, model_name="tiny",
                           config=IngestConfig(segment_seconds=1.0, batch_size=2))
    assert [f.status for f in summary.files].count("ingested") + [f.status for f in summary.files].count(
        "present") == 3
    assert summary.segments == 18 - stored  # stored work was kept, only the rest was computed
    with Store.open(home) as store:
        _assert_consistent(store, model.fingerprint, expect_ready=3)
    again = ingest_paths([videos], home=home, model=model, model_name="tiny", config=IngestConfig(segment_seconds=1.0))
    assert [f.status for f in again.files] == ["present"] * 3 and again.segments == 0


def test_two_processes_on_one_folder_ingest_each_video_exactly_once(tmp_path, model_dir, model, db_url):
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(3):
        write_video(videos / f"v{i}.mp4", pattern_frames(30, seed=10 + i))
    home = tmp_path / "home"
    Store.open(home, db_url).close()  # (not needed for correctness; keeps the two starts comparable)
    cmd = [sys.executable, "-m", "ingest", str(videos), "--home", str(home), "--model", str(model_dir),
           "--segment-seconds", "1", "--batch-size", "1", "--threads", "1", "--json", *_db_args(db_url)]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err.decode()[-3000:]
    summaries = [json.loads(out) for out, _ in outputs]
    for path in sorted({f["path"] for s in summaries for f in s["files"]}):
        statuses = sorted(f["status"] for s in summaries for f in s["files"] if f["path"] == path)
        assert statuses == ["ingested", "present"], (path, statuses)
    assert sum(s["segments_compressed"] for s in summaries) == 3 * 3
    with Store.open(home, db_url) as store:
        _assert_consistent(store, model.fingerprint, expect_ready=3)


@pytest.mark.slow
def test_repeated_kills_at_random_moments_never_corrupt_the_store(tmp_path, model_dir, model):
    import random

    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(2):
        write_video(videos / f"v{i}.mp4", pattern_frames(50, seed=20 + i))
    home = tmp_path / "home"
    rng = random.Random(0)
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", SLOW_DRIVER, str(home), str(model_dir), str(videos)],
                                cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(3.0, 8.0))
        proc.kill()
        proc.wait()
    summary = ingest_paths([videos], home=home, model=model, model_name="tiny",
                           config=IngestConfig(segment_seconds=1.0))
    assert summary.exit_code == 0
    with Store.open(home) as store:
        _assert_consistent(store, model.fingerprint, expect_ready=2)


# A paused-then-resumed process: JSON summary on stdout; chunks of one segment, so every batch is a write.
PAUSING_DRIVER = """
import json, sys, time
from ingest.config import IngestConfig
from ingest.run import ingest_paths
home, db, model, lease, *paths = sys.argv[1:]
pause = lambda event: time.sleep(0.2) if event.kind == "batch" else None
summary = ingest_paths(paths, home=home, db_url=db or None, model=model, progress=pause,
                       config=IngestConfig(segment_seconds=1.0, batch_size=1, chunk_segments=1, torch_threads=1,
                                           lease_s=float(lease)))
print(json.dumps(summary.to_dict()))
"""


def _stored_segments(home: Path, db_url: str | None) -> int:
    from sqlalchemy import func

    from store.models import Segment

    with Store.open(home, db_url) as store, store.read() as s:
        return s.scalar(select(func.count(Segment.id)))


@pytest.mark.parametrize(  # ~20 s each (real processes); the logic is the same on both back ends
    "db_url", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)], indirect=True)
def test_a_paused_process_whose_video_another_finished_reports_it_present(tmp_path, model_dir, model, db_url):
    """SIGSTOP past the lease: another ingest takes the video over and finishes it; the paused one, resumed,
    loses its claim at its next write and reports the video as present (done by another worker), exit 0."""
    long = write_video(tmp_path / "long.mp4", pattern_frames(100))  # 10 s: 10 segments
    home, lease = tmp_path / "home", 1.0
    Store.open(home, db_url).close()
    proc = subprocess.Popen([sys.executable, "-c", PAUSING_DRIVER, str(home), db_url or "", str(model_dir),
                             str(lease), str(long)], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while _stored_segments(home, db_url) < 2:
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "the ingest subprocess made no progress"
            time.sleep(0.05)
        proc.send_signal(signal.SIGSTOP)
        time.sleep(lease + 0.5)  # its heartbeat lapses
        other = ingest_paths([long], home=home, db_url=db_url, model=model, model_name="tiny",
                             config=IngestConfig(segment_seconds=1.0, lease_s=lease))
        assert [f.status for f in other.files] == ["ingested"] and 0 < other.segments < 10
        proc.send_signal(signal.SIGCONT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err.decode()[-3000:]
    (result,) = json.loads(out)["files"]
    assert (result["status"], result["error"], result["segments"]) == ("present", None, 10), result
    with Store.open(home, db_url) as store:
        _assert_consistent(store, model.fingerprint, expect_ready=1)


def test_disk_full_ends_with_per_file_reasons_and_the_next_run_resumes(tmp_path, model, db_url):
    """The database refuses every write (as SQLite does with `database or disk is full`) from the moment the
    first video is done: the other files fail with that reason, the final claim release fails too, and
    still the run returns its summary (exit 2); once there is room again the next run finishes the rest."""
    from sqlalchemy import event

    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(3):
        write_video(videos / f"v{i}.mp4", pattern_frames(40, seed=30 + i))
    config = IngestConfig(segment_seconds=1.0, batch_size=2, chunk_segments=2, lease_s=1.0)
    full = {"on": False, "refused": 0}
    with Store.open(tmp_path / "home", db_url, lease_s=1.0) as store:
        dbapi_error = store.engine.dialect.loaded_dbapi.OperationalError

        @event.listens_for(store.engine, "before_cursor_execute")
        def refuse_writes(conn, cursor, statement, parameters, context, executemany):
            if full["on"] and statement.lstrip().split(" ", 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
                full["refused"] += 1
                raise dbapi_error("database or disk is full")

        def fill_after_first(event_):
            if event_.kind == "done" and event_.status == "ingested":
                full["on"] = True

        summary = ingest_paths([videos], model=model, model_name="tiny", config=config, store=store,
                               progress=fill_after_first)
        assert summary.exit_code == 2 and full["refused"] > 0
        statuses = [f.status for f in summary.files]
        assert statuses[0] == "ingested" and statuses[1:] == ["failed", "failed"], summary.text()
        assert all("disk is full" in f.error for f in summary.files[1:]), summary.text()
        full["on"] = False
        rerun = ingest_paths([videos], model=model, model_name="tiny", config=config, store=store)
        assert [f.status for f in rerun.files] == ["present", "ingested", "ingested"], rerun.text()
        assert rerun.exit_code == 0
        _assert_consistent(store, model.fingerprint, expect_ready=3)
