"""One PostgreSQL store, three entry points: `python -m ingest --db URL` writes it, and the app
(`python -m app --db URL`) and the evaluation (`StoreAnswerer(..., db_url=URL)`) read the same videos."""

import socket
from pathlib import Path

import pytest

from tests.fixtures.videos import pattern_frames, write_video


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, postgres_server):
    from ingest.__main__ import main as ingest_main
    from voco.tiny import tiny_model

    root = tmp_path_factory.mktemp("shared")
    tiny_model("llama", k=1).save_pretrained(root / "model")
    video = write_video(root / "clip.mp4", pattern_frames(30, seed=3))
    url = postgres_server.new_database()
    code = ingest_main([str(video), "--cache-root", str(root / "caches"), "--db", url, "--model", str(root / "model"),
                        "--threads", "1", "--json"])
    assert code == 0
    return root, video, url


def test_the_app_lists_the_videos_of_the_postgresql_store(ingested, monkeypatch, capsys):
    import gradio as gr

    from app.__main__ import main as app_main

    root, video, url = ingested
    launched = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: launched.append(self))
    with socket.socket() as probe:  # a free port: the app checks it can listen before building the UI, and
        probe.bind(("127.0.0.1", 0))  # 7860 may be taken by another app on this machine
        port = probe.getsockname()[1]
    assert app_main(["--home", str(root / "caches"), "--db", url, "--model", str(root / "model"),
                     "--no-upload", "--port", str(port)]) == 0
    assert launched and "VoCo Video QA: 1 video" in capsys.readouterr().out  # the one python -m ingest stored


def test_the_evaluation_reuses_the_postgresql_store_without_ingesting_again(ingested):
    from evaluation.answerers import StoreAnswerer
    from store import Store
    from voco import VoCoModel

    root, video, url = ingested
    model = VoCoModel.from_pretrained(str(root / "model")).eval()
    answerer = StoreAnswerer(model, root / "caches", db_url=url, model_name=str(root / "model"),
                             max_new_tokens=2, show_progress=False)
    try:
        assert answerer.prepare([video]) == {}
        with Store.open(root / "caches", url) as store:
            (stored,) = store.list_videos()
        assert stored.status == "ready" and answerer.video_ids and list(answerer.video_ids.values()) == [stored.id]
        assert isinstance(answerer.answer(video, "What happens?"), str)
        assert answerer.last_timings["segments"] == stored.num_segments
    finally:
        answerer.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_replica(root, url, port, log_path):
    import subprocess
    import sys

    log = open(log_path, "w")  # noqa: SIM115 - the process writes it until the test stops it
    return subprocess.Popen([sys.executable, "-m", "app", "--home", str(root / "caches"), "--db", url, "--model",
                             str(root / "model"), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=str(Path(__file__).resolve().parents[1]))


def _client(port, process, log_path, timeout_s=120.0):
    import time

    from gradio_client import Client

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"app replica on port {port} exited: {log_path.read_text()[-2000:]}")
        try:
            return Client(f"http://127.0.0.1:{port}/", verbose=False)
        except Exception:  # noqa: BLE001 - not listening yet
            time.sleep(0.5)
    pytest.fail(f"app replica on port {port} did not start in {timeout_s:.0f} s: {log_path.read_text()[-2000:]}")


def test_two_app_replicas_on_one_store_serve_what_either_one_took_in(ingested, tmp_path):
    """Issue 29: `python -m app` twice on one PostgreSQL store and cache root. A video uploaded through replica A
    (its /upload endpoint; A ingests it) is listed, searched and answered by replica B."""
    import time

    from gradio_client import handle_file

    root, _, url = ingested
    new = write_video(tmp_path / "second.mp4", pattern_frames(20, seed=11))
    ports, logs = (_free_port(), _free_port()), (tmp_path / "a.log", tmp_path / "b.log")
    replicas = [_start_replica(root, url, p, log) for p, log in zip(ports, logs, strict=True)]
    try:
        a, b = (_client(p, r, log) for p, r, log in zip(ports, replicas, logs, strict=True))
        before = {v["id"] for v in b.predict(api_name="/videos")}
        job = a.predict(video=handle_file(str(new)), api_name="/upload")
        assert job["name"] == "second.mp4" and job["status"] in ("queued", "ingesting", "ready")
        deadline = time.monotonic() + 120
        while job["status"] in ("queued", "ingesting") and time.monotonic() < deadline:
            time.sleep(0.5)
            job = a.predict(job_id=job["job_id"], api_name="/upload_status")
        assert job["status"] == "ready", job
        listed = {v["id"]: v for v in b.predict(api_name="/videos")}
        assert set(listed) == before | {job["video_id"]} and listed[job["video_id"]]["name"] == "second.mp4"
        answer = b.predict(video_id=job["video_id"], question="What happens?", max_new_tokens=3, api_name="/ask")
        assert answer["segments_total"] == listed[job["video_id"]]["segments"] > 0
        hits = b.predict(query="a moving pattern", top=50, api_name="/search")
        assert job["video_id"] in {h["video_id"] for h in hits}  # B's search index took in A's video
        with pytest.raises(Exception, match="no upload"):  # a job id belongs to the replica that issued it
            b.predict(job_id=job["job_id"], api_name="/upload_status")
    finally:
        for r in replicas:
            r.terminate()
        for r in replicas:
            r.wait(timeout=30)
