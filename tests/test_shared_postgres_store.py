"""One PostgreSQL store, three entry points: `python -m ingest --db URL` writes it, and the app
(`python -m app --db URL`) and the evaluation (`StoreAnswerer(..., db_url=URL)`) read the same videos."""

import socket

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
