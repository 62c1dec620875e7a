"""`python -m ingest --follow` (issue 28): a recording stored while it is written, asked about before it ends."""

import threading
import time

import numpy as np
import pytest

from ingest.follow import LiveSource, Segmenter, follow
from store import Store, VideoStatus
from tests.fixtures.videos import pattern_frames, write_live


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from voco import VoCoModel
    from voco.tiny import tiny_model

    root = tmp_path_factory.mktemp("follow_model")
    tiny_model("llama", k=1).save_pretrained(root / "model")
    return VoCoModel.from_pretrained(root / "model", segment_seconds=1.0).eval(), str(root / "model")


def test_the_segmenter_cuts_by_the_rule_of_every_ingest():
    """Frames on screen at the centres of F slices, the thumbnail at the middle; a segment is cut once a frame at
    or past its end arrives; the frame on screen across a gap fills the segments it spans."""
    from voco.segments import segment_frame_indices

    times = [0.0, 0.3, 0.6, 0.9, 1.2, 1.5, 3.4, 3.7, 4.0, 4.3]  # a stall between 1.5 and 3.4
    cut = Segmenter(segment_seconds=1.0, frames_per_segment=2)
    segments = []
    for i, t in enumerate(times):
        segments += cut.push(t, np.full((1, 1, 3), i, np.uint8), np.full((1, 1, 3), i, np.uint8))
    assert [s.index for s in segments] == [0, 1, 2, 3]
    expected = segment_frame_indices(np.array(times), 4.0, 1.0, 2)
    assert [list(s.frames[:, 0, 0, 0]) for s in segments] == [list(e) for e in expected]
    assert [int(s.thumbnail[0, 0, 0]) for s in segments] == [1, 5, 5, 6]
    last = cut.close(4.6)
    assert last.index == 4 and (last.start_s, last.end_s) == (4.0, 4.6) and list(last.frames[:, 0, 0, 0]) == [8, 9]
    assert Segmenter(1.0, 1).close(0.2) is None


def test_a_growing_file_is_live_while_written_and_ready_when_it_ends(tiny, tmp_path):
    from app.lines import video_label
    from app.service import ChatService

    model, name = tiny
    source = tmp_path / "cam.ts"
    frames = pattern_frames(120, seed=5)  # 12 s at 10 fps, written in ~3 s
    writer = threading.Thread(target=write_live, args=(source, frames), kwargs={"speed": 4.0})
    writer.start()
    while not source.exists() or source.stat().st_size == 0:
        time.sleep(0.02)
    seen_live = []
    store = Store.open(tmp_path / "home")
    service = ChatService(store, model, model_name=name)

    def stored(state):  # answered while the writer is still writing
        if writer.is_alive() and state.segments >= 3 and not seen_live:
            (video,) = service.videos()
            answer = service.answer_dict(video.id, "what happens?", max_new_tokens=2)
            seen_live.append((video.status, answer["segments_total"], state.segments, answer["note"],
                              video_label(service, video)))
            # search sees it while it grows: the vectors its follower wrote so far
            hits = service.moments.search("what happens?", top=5)
            scores = service.moments.live_scores("what happens?", video.id, state.segments)
            seen_live.append(([(h["video_id"], h["segment"]) for h in hits], scores, video.id))

    result = follow(LiveSource.parse(str(source)), store=store, model=model, model_name=name,
                    idle_timeout_s=1.5, flush_s=0.0, on_stored=stored)
    writer.join()
    assert seen_live and seen_live[0][0] == VideoStatus.LIVE and 3 <= seen_live[0][1] == seen_live[0][2] < 12
    status, total, _, note, label = seen_live[0]
    assert note.startswith(f"live video: answered from what was stored up to 0:{total:02d}"), note
    assert "🔴 live" in label and f"{total} segments so far" in label
    hits, scores, live_id = seen_live[1]
    assert hits and all(v == live_id and 0 <= i < total for v, i in hits)
    assert len(scores) == total and np.ptp(scores) > 0  # ranked by the question, not the uniform sketch
    assert result.status == "ingested" and result.segments == 12
    (video,) = store.list_videos()
    assert video.status == VideoStatus.READY and video.num_segments == 12
    assert [s.index for s in store.segments(video.id)] == list(range(12))
    assert len(store.load_caches(video.id, model.fingerprint)) == 12
    again = follow(LiveSource.parse(str(source)), store=store, model=model, model_name=name, idle_timeout_s=0.5)
    assert again.status == "present" and again.video_id == video.id
    store.close()


def _follower(home, model_path, source, *extra):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "ingest", "--follow", str(source), "--home", str(home), "--model",
                             model_path, "--segment-seconds", "1", "--idle-timeout", "2", "--threads", "1", "--json",
                             *extra], stdin=subprocess.PIPE if source == "-" else None, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_a_pipe_is_followed_until_it_closes(tiny, tmp_path):
    import json

    _, name = tiny
    follower = _follower(tmp_path / "home", name, "-", "--name", "door camera")
    write_live(follower.stdin, pattern_frames(80, seed=6), speed=4.0)  # 8 s; closing the pipe ends the input
    out, err = follower.stdout.read(), follower.stderr.read()  # (its few progress lines fit the pipe's buffer)
    follower.wait(timeout=120)
    assert follower.returncode == 0, err.decode()[-2000:]
    result = json.loads(out)
    assert result["status"] == "ingested" and result["segments"] == 8 and result["path"] == "door camera"
    assert b"live: " in err and b"segments stored, up to 0:0" in err  # a progress line per stored batch
    with Store.open(tmp_path / "home") as store:
        (video,) = store.list_videos()
        assert video.status == VideoStatus.READY and video.path == "door camera" and video.num_segments == 8


def test_a_follower_killed_mid_stream_resumes_without_losing_or_repeating_a_segment(tiny, tmp_path):
    import signal

    from ingest.search import MomentSearch
    from ingest.vectors import LiveVectors
    from store.search_vectors import read_vectors
    from voco.search import make_embedder

    model, name = tiny
    source, home = tmp_path / "cam.ts", tmp_path / "home"
    stop = threading.Event()
    writer = threading.Thread(target=write_live, args=(source, pattern_frames(160, seed=7)),
                              kwargs={"speed": 3.0, "stop": stop})
    writer.start()
    try:
        while not source.exists():
            time.sleep(0.05)
        first = _follower(home, name, source)
        deadline, stored = time.monotonic() + 60, []
        while len(stored) < 4 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.2)
            with Store.open(home) as store:
                videos = store.list_videos()
                stored = store.segments(videos[0].id) if videos else []
        assert len(stored) >= 4, first.communicate(timeout=5)[1].decode()[-2000:]
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        with Store.open(home) as store:
            (video,) = store.list_videos()
            assert video.status == VideoStatus.LIVE  # killed: still live, its stored segments kept
            kept = [(s.index, s.start_s, s.end_s) for s in store.segments(video.id)]
            # the search vectors written before the kill: searchable now, and what a restart takes back
            embedder = make_embedder(None, model)
            written = read_vectors(store, video.uid, video.fingerprint, embedder.name)
            assert written is not None and 1 <= len(written) <= len(kept)
            back = LiveVectors(store, embedder, video.fingerprint, video.id)
            back.load({i for i, _, _ in kept})
            assert sorted(back.vectors) == list(range(len(written)))
            assert {h["video_id"] for h in MomentSearch(store, model).search("a segment", top=3)} == {video.id}
        second = _follower(home, name, source)
        writer.join()
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, err.decode()[-2000:]
    finally:
        stop.set()
        writer.join()
    with Store.open(home) as store:
        (video,) = store.list_videos()
        segments = store.segments(video.id)
        assert video.status == VideoStatus.READY and video.num_segments == 16
        assert [s.index for s in segments] == list(range(16))  # none lost, none twice
        assert [(s.index, s.start_s, s.end_s) for s in segments][: len(kept)] == kept
        assert len(store.load_caches(video.id, video.fingerprint)) == 16


def test_a_source_that_is_no_video_fails_with_its_reason_and_is_recorded(tiny, tmp_path):
    from voco.video.probe import VideoError

    model, name = tiny
    bad = tmp_path / "notes.ts"
    bad.write_bytes(b"not a video" * 100)
    with Store.open(tmp_path / "home") as store:
        with pytest.raises(VideoError, match="notes.ts: cannot open it as a video stream"):
            follow(LiveSource.parse(str(bad)), store=store, model=model, model_name=name, idle_timeout_s=0.5)
        (video,) = store.list_videos()
        assert video.status == VideoStatus.FAILED and "cannot open it" in video.error
    with pytest.raises(VideoError, match="no such file"):
        LiveSource.parse(str(tmp_path / "missing.ts"))


def test_a_live_http_stream_is_followed_until_the_server_closes_it(tiny, tmp_path):
    """A URL FFmpeg opens (here a local HTTP server sending MPEG-TS as it is encoded, no length: a live stream)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Camera(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.end_headers()
            write_live(self.wfile, pattern_frames(60, seed=8), speed=4.0)  # 6 s; the connection closes at the end

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Camera)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    model, name = tiny
    url = f"http://127.0.0.1:{server.server_address[1]}/cam.ts"
    try:
        with Store.open(tmp_path / "home") as store:
            result = follow(LiveSource.parse(url), store=store, model=model, model_name=name, idle_timeout_s=2.0)
            assert result.status == "ingested" and result.segments == 6 and result.path == url
            (video,) = store.list_videos()
            assert video.status == VideoStatus.READY and video.path == url and video.num_segments == 6
    finally:
        server.shutdown()


def test_segments_without_a_live_vector_take_their_nearest_neighbours():
    from ingest.vectors import nearest_filled

    vectors = {0: np.zeros(2), 1: np.ones(2), 5: np.full(2, 5.0)}
    filled = nearest_filled(vectors, 7)
    assert sorted(filled) == list(range(7))
    assert [float(filled[i][0]) for i in range(7)] == [0, 1, 1, 1, 5, 5, 5]  # 3: 1 and 5 are as near; the first
    assert nearest_filled(vectors, 2) == vectors and nearest_filled({}, 3) == {}
