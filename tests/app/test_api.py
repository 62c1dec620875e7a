"""The app's named endpoints, called through gradio_client against a launched app."""

import logging
import threading
import time

import gradio as gr
import pytest

from app.lines import NO_ANSWER_BUBBLE, TIME_OPTION, waiting_line
from app.service import NO_ANSWER, USED_MARK, ChatService, ServiceLimits
from app.ui import build_ui
from store import Store

gradio_client = pytest.importorskip("gradio_client")


def launch(home, model, name, tmp_path_factory):
    store = Store.open(home)
    service = ChatService(store, model, model_name=name, upload_dir=tmp_path_factory.mktemp("uploads"))
    demo = build_ui(service, tmp_path_factory.mktemp("thumbs"))
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    return demo, url, service


@pytest.fixture(scope="module")
def app_url(library, tmp_path_factory):
    root, model = library
    demo, url, service = launch(root / "home", model, "tiny", tmp_path_factory)
    yield url, service, demo
    demo.close()
    service.store.close()


@pytest.fixture(scope="module")
def silent_app(silent_library, tmp_path_factory):
    root, model = silent_library
    demo, url, service = launch(root / "home", model, "silent", tmp_path_factory)
    yield demo, url, service
    demo.close()
    service.store.close()


def test_videos_and_ask_endpoints(app_url):
    url, service, _ = app_url
    client = gradio_client.Client(url, verbose=False)
    videos = client.predict(api_name="/videos")
    assert {v["id"] for v in videos} == {v.id for v in service.videos()}
    assert all(v["status"] == "ready" and v["segments"] > 0 for v in videos)
    result = client.predict(video_id=videos[0]["id"], question="what shape appears first?", max_new_tokens=6,
                            api_name="/ask")
    expected, stats = service.answer(videos[0]["id"], "what shape appears first?", max_new_tokens=6)
    assert result["answer"] == expected
    assert len(result["segments_used"]) == len(stats.segments_used) == videos[0]["segments"]
    segments = service.store.segments(videos[0]["id"])
    assert result["segments_used"] == [{"index": s.index, "start_s": s.start_s, "end_s": s.end_s} for s in segments]
    assert result["subset"] is False and result["segments_total"] == videos[0]["segments"]
    assert result["note"] == "" and 0 < result["tokens"] <= 6


BAD_REQUESTS = [
    ({"video_id": 999}, "no video with id 999"),
    ({"video_id": 0}, "video_id must be from 1 to 9223372036854775807, got 0"),
    ({"video_id": -1}, "video_id must be from 1 to 9223372036854775807, got -1"),
    ({"video_id": "abc"}, "video_id must be a whole number, got str 'abc'"),
    ({"video_id": 1.5}, "video_id must be a whole number, got 1.5"),
    ({"video_id": 2**63}, f"video_id must be from 1 to {2**63 - 1}, got {2**63}"),  # was: OverflowError
    ({"question": 5}, "question must be text, got int 5"),
    ({"question": "  "}, "ask a question first"),
    ({"max_new_tokens": "x"}, "max_new_tokens must be a whole number, got str 'x'"),
    ({"max_new_tokens": 0}, "max_new_tokens must be from 1 to 256, got 0"),
]


def test_bad_requests_get_their_reason_and_one_log_line(app_url, caplog, capfd):
    url, _, _ = app_url
    client = gradio_client.Client(url, verbose=False)
    caplog.set_level(logging.INFO, logger="app.ui")
    for change, reason in BAD_REQUESTS:
        request = {"video_id": 1, "question": "what?", "max_new_tokens": 4, **change}
        with pytest.raises(gradio_client.exceptions.AppError) as refused:
            client.predict(**request, api_name="/ask")
        assert reason in str(refused.value), (change, str(refused.value))
    lines = [r.getMessage() for r in caplog.records if r.name == "app.ui"]
    assert len(lines) == len(BAD_REQUESTS) and all(line.startswith("/ask refused: ") for line in lines)
    assert "Traceback" not in capfd.readouterr().err
    assert client.predict(api_name="/videos")  # still answering


def test_an_empty_answer_says_so_in_the_api_and_the_chat(silent_app):
    demo, url, service = silent_app
    (video,) = service.videos()
    result = gradio_client.Client(url, verbose=False).predict(
        video_id=video.id, question="What is happening in this video?", max_new_tokens=4, api_name="/ask")
    assert result["answer"] == "" and result["note"] == NO_ANSWER

    respond = next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "respond")
    *_, (history, _, stats, timeline, turns) = respond("What is happening in this video?", [], [], video.id, 4, 0.0)
    assert len(timeline) == video.num_segments  # the final update marks the used segments on the timeline
    assert all(caption.startswith(USED_MARK) for _, caption in timeline)
    assert history[-1] == {"role": "assistant", "content": NO_ANSWER_BUBBLE}
    assert stats.endswith(NO_ANSWER)
    assert turns == [("What is happening in this video?", "")]  # the empty answer goes on as it was


def test_a_chat_warning_keeps_the_typed_question_and_the_stats(silent_app):
    """No video picked: the question stays in the box (was: wiped); an empty question: stats untouched (was:
    cleared silently); both say why in a warning."""
    demo, _, service = silent_app
    respond = next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "respond")
    earlier = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    for question, video_id in (("What is in the video?", None), ("   ", service.videos()[0].id)):
        with pytest.warns(UserWarning) as warned:
            (history, box, stats, timeline, turns), = list(respond(question, earlier, [("q", "a")], video_id, 4, 0.0))
        assert history == earlier and box == question and turns == [("q", "a")]
        assert stats == timeline == {"__type__": "update"}  # left as they were
        assert any(("Pick a video first" if video_id is None else "question is empty") in str(w.message)
                   for w in warned)


ANSWER_WITH_TIMES = "From 0:02 to 0:04 and at 0:02 again, then 1:02:05."  # the last one past the video's end


def test_the_ask_endpoint_lists_the_answers_times_with_their_segments(app_url, scripted_answer):
    url, service, _ = app_url
    video = max(service.videos(), key=lambda v: v.num_segments)
    spans = service.loaded(video.id).spans
    scripted_answer(ANSWER_WITH_TIMES)
    result = gradio_client.Client(url, verbose=False).predict(video_id=video.id, question="when?", max_new_tokens=2,
                                                              api_name="/ask")
    assert result["answer"] == ANSWER_WITH_TIMES
    assert result["times"] == [{"text": text, "seconds": seconds, "segment": spans[i].to_dict()} for text, seconds, i
                               in [("0:02", 2.0, 2), ("0:04", 4.0, 4), ("0:02", 2.0, 2), ("1:02:05", 3725.0, -1)]]


def test_time_buttons_under_the_answer_select_their_segment_on_the_timeline(app_url, scripted_answer):
    _, service, demo = app_url
    video = max(service.videos(), key=lambda v: v.num_segments)
    last = service.loaded(video.id).spans[-1]
    scripted_answer(ANSWER_WITH_TIMES)
    fns = {getattr(f.fn, "__name__", ""): f for f in demo.fns.values()}
    *_, (history, _, _, timeline, turns) = fns["respond"].fn("when?", [], [], video.id, 2, 0.0)
    assert history[-1]["options"] == [{"label": f"{TIME_OPTION}{t}", "value": t} for t in ("0:02", "0:04", "1:02:05")]
    assert sum(caption.startswith(USED_MARK) for _, caption in timeline) == video.num_segments  # still marked
    assert turns == [("when?", ANSWER_WITH_TIMES)]

    show_time = fns["show_time"]  # wired: a click on a chat option -> the timeline's selected thumbnail
    chat, gallery = (next(b for b in demo.blocks.values() if b.elem_id == name) for name in ("chat", "timeline"))
    assert (chat._id, "option_select") in [tuple(t[:2]) for t in show_time.targets]
    assert show_time.outputs[0]._id == gallery._id
    update, moment = show_time.fn(video.id, gr.SelectData(None, {"index": 1, "value": "0:04"}))
    assert update["selected_index"] == 4 and moment == "**0:04** · segment #4 · 0:04-0:05"
    update, moment = show_time.fn(video.id, gr.SelectData(None, {"index": 2, "value": "1:02:05"}))
    assert update["selected_index"] == video.num_segments - 1
    assert moment.startswith(f"**1:02:05** · segment #{last.index} · ")
    assert show_time.fn(None, gr.SelectData(None, {"index": 0, "value": "0:04"}))[1] == ""


def test_each_answer_is_given_the_chats_earlier_turns_and_a_refused_one_is_not_kept(app_url, scripted_answer,
                                                                                    monkeypatch):
    """The chat's turns live in a `gr.State` (not parsed back from the bubbles): each answer gets them as its
    history, an answered question joins them, a refused one does not."""
    _, service, demo = app_url
    video = service.videos()[0]
    respond = next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "respond")
    given = []
    real_ask = service.ask
    monkeypatch.setattr(service, "ask", lambda vid, q, history, **kw: given.append(list(history))
                        or real_ask(vid, q, history, **kw))
    scripted_answer("A cat.")
    *_, (history, _, _, _, turns) = respond("what is it?", [], [], video.id, 2, 0.0)
    assert turns == [("what is it?", "A cat.")]
    with pytest.warns(UserWarning, match="question is empty"):  # refused before asking: turns as they were
        *_, (history, _, _, _, turns) = respond("", history, turns, video.id, 2, 0.0)
    *_, (history, _, _, _, turns) = respond("and then?", history, turns, video.id, 2, 0.0)
    assert given == [[], [("what is it?", "A cat.")]]
    assert turns == [("what is it?", "A cat."), ("and then?", "A cat.")]


def test_the_upload_panel_reports_a_failed_upload_and_cleans_gradios_copy(app_url, tmp_path):
    _, service, demo = app_url
    fns = {getattr(f.fn, "__name__", ""): f.fn for f in demo.fns.values()}
    gradio_copy = tmp_path / "gradio-cache" / "clip.mp4"  # gradio hands the handler its own cached copy
    gradio_copy.parent.mkdir()
    gradio_copy.write_bytes(b"not a video" * 50)
    job_id, status, _, cancel, _ = fns["start_upload"](str(gradio_copy))
    # refused as it is read, before it is copied: the reason, without the server's paths
    assert status.startswith("⚠️ clip.mp4: not a readable video: ") and str(tmp_path) not in status
    assert job_id is None and cancel["visible"] is False
    assert not gradio_copy.exists()  # gradio's copy is deleted either way


def test_a_page_load_shows_the_library_as_it_is_now(library, own_home, tmp_path):
    """A video ingested by the CLI after the app started is in the picker of the next page load (was: only after
    Refresh)."""
    from app.service import ChatService
    from app.ui import build_ui
    from ingest.run import ingest_paths
    from tests.app.conftest import new_video

    _, model = library
    service = ChatService(own_home, model, model_name="tiny")
    demo = build_ui(service, tmp_path / "thumbs")
    (on_load,) = [f for f in demo.fns.values() if any(event == "load" for _, event in f.targets)]
    ingest_paths([str(new_video(tmp_path / "later.mp4", 3, seed=91))], store=own_home, model=model, model_name="tiny")
    choices, line = on_load.fn("")
    assert len(choices["choices"]) == 5 and any("later.mp4" in str(c) for c in choices["choices"])  # + the library
    assert line.startswith("4 videos ready"), line


def test_the_whole_library_is_a_choice_of_the_picker_and_of_the_api(app_url, scripted_answer):
    """Picked, a question goes to the segments of all videos that match it best; the stats say which videos and
    times were used; through the API, video_id null does the same and lists the sources."""
    from app.lines import WHOLE_LIBRARY, WHOLE_LIBRARY_LABEL

    url, service, demo = app_url
    fns = {getattr(f.fn, "__name__", ""): f for f in demo.fns.values()}
    choices, _ = fns["refresh"].fn("")
    assert choices["choices"][0] == (WHOLE_LIBRARY_LABEL, WHOLE_LIBRARY)
    info, timeline, *_ = fns["select"].fn(WHOLE_LIBRARY, None)
    assert info.startswith("**The whole library**") and timeline == []
    scripted_answer("A red circle.")
    *_, (history, _, stats, _, _) = fns["respond"].fn("a red circle?", [], [], WHOLE_LIBRARY, 2, 0.0)
    assert history[-1]["content"] == "A red circle."
    names = {service.name(v.path) for v in service.videos()}
    assert stats.startswith("seen in ") and any(f"{name} at " in stats for name in names), stats
    result = gradio_client.Client(url, verbose=False).predict(None, "a red circle?", 2, api_name="/ask")
    assert result["answer"] == "A red circle." and result["sources"]
    assert {s["video_id"] for s in result["sources"]} <= {v.id for v in service.videos()}


def test_asks_at_once_wait_in_line_and_past_it_the_api_says_busy(library, tmp_path_factory, held_answers):
    """One answering place and one place in line: the first /ask holds the batch, the second waits (the chat shows
    its place), the third is refused as busy; then both waiting ones are answered."""
    root, model = library
    store = Store.open(root / "home")
    service = ChatService(store, model, model_name="tiny", limits=ServiceLimits(max_batch=1, max_queue=1))
    demo = build_ui(service, tmp_path_factory.mktemp("thumbs"))
    demo.queue(default_concurrency_limit=1)  # the answer events have their own limit: the service's line decides
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        client = gradio_client.Client(url, verbose=False)
        video = service.videos()[0]
        results: dict[str, object] = {}

        def ask(name: str) -> None:
            results[name] = client.predict(video_id=video.id, question="what?", max_new_tokens=3, api_name="/ask")

        def chat() -> None:
            respond = next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "respond")
            results["chat"] = [stats for _, _, stats, _, _ in respond("what?", [], [], video.id, 3, 0.0)]

        first = threading.Thread(target=ask, args=("first",))
        first.start()
        assert held_answers.reached.acquire(timeout=60)
        second = threading.Thread(target=chat)
        second.start()
        deadline = time.monotonic() + 60
        while service.engine.load() != (1, 1) and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(gradio_client.exceptions.AppError, match="busy.*try again in a moment"):
            client.predict(video_id=video.id, question="what?", max_new_tokens=3, api_name="/ask")
        held_answers.gate.set()
        first.join(60)
        second.join(60)
        assert results["first"]["tokens"] > 0
        assert waiting_line(1) in results["chat"]  # the chat said where the question was while it waited
        assert results["chat"][-1].startswith(f"{len(results['first']['segments_used'])}/")  # then answered it
    finally:
        demo.close()
        store.close()


def test_the_upload_endpoints_take_a_file_and_refuse_bad_ones_with_the_reason(app_url, tmp_path):
    from gradio_client import handle_file

    from tests.app.conftest import new_video

    url, service, _ = app_url
    client = gradio_client.Client(url, verbose=False)
    bad = tmp_path / "notes.mp4"
    bad.write_bytes(b"not a video" * 50)
    with pytest.raises(Exception, match="not a readable video") as refused:
        client.predict(video=handle_file(str(bad)), api_name="/upload")
    assert str(tmp_path) not in str(refused.value)
    with pytest.raises(Exception, match="no upload 'nope'"):
        client.predict(job_id="nope", api_name="/upload_status")
    job = client.predict(video=handle_file(str(new_video(tmp_path / "api.mp4", 2, seed=77))), api_name="/upload")
    assert job["name"] == "api.mp4" and job["status"] in ("queued", "ingesting", "ready")
    service.job(job["job_id"]).finished.wait(60)
    done = client.predict(job_id=job["job_id"], api_name="/upload_status")
    assert done["status"] == "ready" and done["video_id"] in {v.id for v in service.videos()}
    service.store.remove(done["video_id"])  # the module's library stays as the other tests expect it
