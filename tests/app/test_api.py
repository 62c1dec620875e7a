"""The app's named endpoints, called through gradio_client against a launched app."""

import pytest

from app.service import ChatService
from app.ui import _pairs, build_ui

gradio_client = pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def app_url(library, tmp_path_factory):
    from store import Store

    root, model = library
    store = Store.open(root / "home")
    service = ChatService(store, model, model_name="tiny", upload_dir=tmp_path_factory.mktemp("uploads"))
    demo = build_ui(service, tmp_path_factory.mktemp("thumbs"))
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    yield url, service
    demo.close()
    store.close()


def test_videos_and_ask_endpoints(app_url):
    url, service = app_url
    client = gradio_client.Client(url, verbose=False)
    videos = client.predict(api_name="/videos")
    assert {v["id"] for v in videos} == {v.id for v in service.videos()}
    assert all(v["status"] == "ready" and v["segments"] > 0 for v in videos)
    answer = client.predict(video_id=videos[0]["id"], question="what shape appears first?", max_new_tokens=6,
                            api_name="/ask")
    expected, _ = service.answer(videos[0]["id"], "what shape appears first?", max_new_tokens=6)
    assert answer == expected


def test_a_failing_request_leaves_the_app_serving(app_url):
    url, _ = app_url
    client = gradio_client.Client(url, verbose=False)
    with pytest.raises(Exception, match="999|not"):
        client.predict(video_id=999, question="what?", api_name="/ask")
    with pytest.raises(Exception, match="ask a question"):
        client.predict(video_id=1, question="  ", api_name="/ask")
    assert client.predict(api_name="/videos")  # still answering


def test_chat_messages_become_question_answer_turns():
    messages = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
                {"role": "user", "content": "q2"}, {"role": "assistant", "content": "⚠️ error"},
                {"role": "user", "content": [{"type": "text", "text": "q3"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "a3"}]}]
    assert _pairs(messages) == [("q1", "a1"), ("q3", "a3")]
