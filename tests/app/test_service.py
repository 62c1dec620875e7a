"""The chat service, called directly (no Gradio)."""

import threading
import time

import pytest

from app.service import NO_ANSWER, USED_MARK, ChatService, ServiceBusy, ServiceError, ServiceLimits
from store import Store
from voco.session import RetrievedSegments


@pytest.fixture
def service(library, store, tmp_path):
    _, model = library
    return ChatService(store, model, model_name="tiny", upload_dir=tmp_path / "uploads")


def test_lists_and_searches_the_stored_videos(service):
    videos = service.videos()
    assert len(videos) == 3 and all(v.status == "ready" for v in videos)
    assert [v.id for v in service.videos("00001")] == [v.id for v in videos if "00001" in v.path]
    assert service.videos("no such name") == []


def test_timeline_has_one_thumbnail_per_segment(service):
    video = service.videos()[0]
    frames = service.timeline(video.id)
    assert len(frames) == video.num_segments
    assert all(jpeg[:2] == b"\xff\xd8" for jpeg, _ in frames)  # JPEG magic


def test_answer_streams_and_reports_its_cost(service):
    video = service.videos()[0]
    updates = list(service.ask(video.id, "what shape appears first?", max_new_tokens=8))
    final = updates[-1]
    assert final.stats is not None and all(u.stats is None for u in updates[:-1])
    assert len(final.stats.segments_used) == final.stats.segments_total == video.num_segments
    assert not final.stats.subset
    assert final.stats.cache_tokens == video.num_segments  # k = 1
    assert final.stats.compression == service.vision_tokens_per_segment()
    assert final.stats.ttft_ms > 0 and 0 < final.stats.tokens <= 8
    assert "segments" in final.stats.summary()
    # the streamed text grows monotonically to the answer
    texts = [u.text for u in updates[:-1]]
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:], strict=False))


def test_caches_are_loaded_once_and_reused(service, monkeypatch):
    video = service.videos()[0]
    calls = []
    real = service.store.load_caches
    monkeypatch.setattr(service.store, "load_caches", lambda *a, **k: calls.append(a) or real(*a, **k))
    for question in ("what color is the circle?", "how many objects appear?", "what shape is first?"):
        service.answer(video.id, question, max_new_tokens=2)
    assert len(calls) == 1


def test_lru_is_bounded(library, store):
    _, model = library
    service = ChatService(store, model, limits=ServiceLimits(cached_videos=2))
    for video in service.videos():
        service.caches(video.id)
    assert len(service._timelines.lru) == 2


def test_same_answer_as_the_model_on_the_same_caches(service, library):
    _, model = library
    video = service.videos()[0]
    text, _ = service.answer(video.id, "which shape appears first?", max_new_tokens=6)
    assert text == model.answer("which shape appears first?", service.caches(video.id), max_new_tokens=6)


def test_history_is_passed_to_the_model(service, library):
    _, model = library
    video = service.videos()[0]
    history = [("what shape appears first?", "circle")]
    text, _ = service.answer(video.id, "and what color is it?", history=history, max_new_tokens=6)
    expected = model.answer("and what color is it?", service.caches(video.id), max_new_tokens=6, history=history)
    assert text == expected


def test_video_longer_than_the_context_uses_a_uniform_subset(service, monkeypatch):
    video = max(service.videos(), key=lambda v: v.num_segments)
    prefix, suffix = service.model.prompt_ids("what happens?")
    limit = len(prefix) + len(suffix) + 4 + 5  # room for exactly 5 segments of k = 1
    monkeypatch.setattr(service.model.config.text_config, "max_position_embeddings", limit)
    text, stats = service.answer(video.id, "what happens?", max_new_tokens=4)
    assert len(stats.segments_used) == 5 < stats.segments_total and stats.subset
    assert "uniformly" in stats.note
    used = stats.segments_used
    assert used[0].index == 0 and used[-1].index == video.num_segments - 1  # spans the whole video
    segments = {s.index: s for s in service.store.segments(video.id)}
    assert all((u.start_s, u.end_s) == (segments[u.index].start_s, segments[u.index].end_s) for u in used)
    assert f"-{used[-1].end_s:.0f} s" in stats.summary() and f"{used[0].start_s:.0f}-" in stats.summary()  # times
    assert stats.to_dict()["segments_used"][0] == {"index": 0, "start_s": used[0].start_s, "end_s": used[0].end_s}


def test_a_retrieved_selection_answers_from_the_relevant_segments(library, store, monkeypatch):
    _, model = library
    asked = []

    def relevance(question, video_id, timeline):  # the last segment is the relevant one
        asked.append((question, video_id))
        return [float(i == len(timeline) - 1) for i in range(len(timeline))]

    service = ChatService(store, model, selector=RetrievedSegments(neighbours=1, sketch_share=0), relevance=relevance)
    video = max(service.videos(), key=lambda v: v.num_segments)
    prefix, suffix = model.prompt_ids("what happens?")
    monkeypatch.setattr(model.config.text_config, "max_position_embeddings", len(prefix) + len(suffix) + 4 + 2)
    _, stats = service.answer(video.id, "what happens?", max_new_tokens=4)
    last = video.num_segments - 1
    assert [s.index for s in stats.segments_used] == [last - 1, last] and asked == [("what happens?", video.id)]
    assert "most relevant to the question" in stats.note
    marked = [caption for _, caption in service.timeline(video.id, {s.index for s in stats.segments_used})]
    assert [c.startswith(USED_MARK) for c in marked] == [i >= last - 1 for i in range(video.num_segments)]


def test_no_room_for_any_segment_is_refused_with_the_reason(service, monkeypatch):
    video = service.videos()[0]
    prefix, suffix = service.model.prompt_ids("what happens?")
    monkeypatch.setattr(service.model.config.text_config, "max_position_embeddings", len(prefix) + len(suffix) + 4)
    with pytest.raises(ServiceError, match="too long for the model's context.*at most 0 segments"):
        service.answer(video.id, "what happens?", max_new_tokens=4)


def test_bad_requests_raise_clear_errors(service):
    video = service.videos()[0]
    with pytest.raises(ServiceError, match="ask a question"):
        service.answer(video.id, "   ")
    with pytest.raises(ServiceError, match="longer than"):
        service.answer(video.id, "x" * 5000)
    with pytest.raises(ServiceError, match="no video with id 999"):
        service.answer(999, "what?")
    with pytest.raises(ServiceError, match="video_id must be a whole number, got 1.5"):
        service.answer(1.5, "what?")  # not silently video 1
    with pytest.raises(ServiceError, match="max_new_tokens must be from 1 to 256, got 0"):
        service.answer(video.id, "what?", max_new_tokens=0)  # not silently 1
    with pytest.raises(ServiceError, match="question must be text, got int"):
        service.answer(video.id, 5)
    with pytest.raises(ServiceError, match="no video with id 999"):
        service.timeline(999)


def test_an_empty_answer_says_the_model_gave_none(silent_library, tmp_path):
    root, model = silent_library
    with Store.open(root / "home") as store:
        service = ChatService(store, model, model_name="silent")
        (video,) = service.videos()
        text, stats = service.answer(video.id, "What is happening in this video?", max_new_tokens=4)
    assert text == ""
    assert stats.note == NO_ANSWER and stats.summary().endswith(f"· {NO_ANSWER}")


def test_the_answers_times_select_segments_of_the_whole_timeline(service, scripted_answer):
    video = max(service.videos(), key=lambda v: v.num_segments)
    spans = service.loaded(video.id).spans
    last = spans[-1]
    scripted_answer("From 0:01 to 0:02 and at 1:02:05.")  # the last time is past the video's end
    updates = list(service.ask(video.id, "when does the circle appear?", max_new_tokens=2))
    assert all(u.times == () for u in updates[:-1])  # the times come with the final text
    final = updates[-1]
    assert final.text == "From 0:01 to 0:02 and at 1:02:05."
    assert [(t.text, t.seconds, t.segment) for t in final.times] == [
        ("0:01", 1.0, spans[1]), ("0:02", 2.0, spans[2]), ("1:02:05", 3725.0, last)]
    assert service.times(video.id, final.text) == list(final.times)
    assert service.timeline_position(video.id, last.index) == len(service.timeline(video.id)) - 1


def test_the_api_answer_lists_each_time_with_its_segment(service, scripted_answer):
    video = service.videos()[0]
    scripted_answer("At 0:01.")
    result = service.answer_dict(video.id, "when?", max_new_tokens=2)
    segment = service.loaded(video.id).spans[1]
    assert result["answer"] == "At 0:01."
    assert result["times"] == [{"text": "0:01", "seconds": 1.0, "segment": segment.to_dict()}]
    _, stats = service.answer(video.id, "when?", max_new_tokens=2)
    timings = ("ttft_ms", "tokens_per_s", "waited_ms")
    assert {k: v for k, v in result.items() if k not in ("answer", "times", *timings)} == {
        k: v for k, v in stats.to_dict().items() if k not in timings}  # the other fields as before
    scripted_answer("A red circle.")
    assert service.answer_dict(video.id, "what?", max_new_tokens=2)["times"] == []


def test_refusals_name_files_without_the_servers_paths(library, own_home):
    """A damaged video is refused with its reason; the pack's path is given relative to the home."""
    _, model = library
    service = ChatService(own_home, model, model_name="tiny")
    video = service.videos()[0]
    root = own_home.home.root
    packs = [p for p in root.rglob("*") if p.is_file() and p.suffix == ".safetensors"]
    assert packs
    for pack in packs:
        pack.write_bytes(b"damaged")
    with pytest.raises(ServiceError) as refused:
        service.answer(video.id, "what?")
    message = str(refused.value)
    assert str(root) not in message and "/" + root.name not in message, message
    assert any(str(p.relative_to(root)) in message for p in packs), message


def test_public_text_drops_server_paths():
    from app.validation import public_text

    home = "/srv/voco"
    assert public_text("/srv/voco/caches/3/a.pack: damaged", home) == "caches/3/a.pack: damaged"
    assert public_text("video 3 is not ready (failed: /data/in/cat.mp4: database error: x)", home) == \
        "video 3 is not ready (failed: cat.mp4: database error: x)"
    assert public_text("1/2 segments at 0:04/0:10", home) == "1/2 segments at 0:04/0:10"


def test_a_question_about_the_whole_library_reads_the_best_hits_of_every_video(service, monkeypatch):
    """No video: the segments search ranks highest across the library, grouped by video (in the order of their
    best hit), in time order, answered in one pass; the answer says which video each used segment is of."""
    hits = service.moments.search("a red circle", top=1000)
    assert len({h["video_id"] for h in hits}) == 3
    budget = 5
    monkeypatch.setattr(service.model.voco, "answer_segments", budget)
    result = service.answer_dict(None, "a red circle", max_new_tokens=3)
    sources = result["sources"]
    best = service.moments.search("a red circle", top=budget)  # (ties make it differ from a prefix of hits)
    assert sorted((s["video_id"], s["index"]) for s in sources) == sorted((h["video_id"], h["segment"]) for h in best)
    order = list(dict.fromkeys(h["video_id"] for h in best))
    assert [s["video_id"] for s in sources] == sorted((s["video_id"] for s in sources), key=order.index)
    for video_id in order:  # time order within a video, each named and timed as stored
        mine = [s for s in sources if s["video_id"] == video_id]
        assert [s["index"] for s in mine] == sorted(s["index"] for s in mine)
        spans = {sp.index: sp for sp in service.loaded(video_id).spans}
        assert all(s["start_s"] == spans[s["index"]].start_s and s["name"] == service.name(
            service.video(video_id).path) for s in mine)
    assert result["segments_total"] == budget and len(result["segments_used"]) == budget
    with pytest.raises(ServiceError, match="video_id must be a whole number"):
        service.answer_dict("all", "what?")


def test_the_library_timeline_places_the_stored_caches(service):
    import torch

    from app.library import library_timeline

    hits = service.moments.search("a shape", top=6)
    timeline, sources, scores = library_timeline(hits, service.loaded, str)
    by_hit = {(h["video_id"], h["segment"]): h["score"] for h in hits}
    assert [by_hit[(s.video_id, s.span.index)] for s in sources] == scores
    for cache, source in zip(timeline.caches, sources, strict=True):
        stored = service.loaded(source.video_id)
        place = [sp.index for sp in stored.spans].index(source.span.index)
        assert torch.equal(cache.kv, stored.caches[place].kv)
    with pytest.raises(ValueError, match="no segment of the library matches"):
        library_timeline([], service.loaded, str)


def test_questions_wait_in_line_with_their_place_and_past_it_the_app_is_busy(library, store, held_answers):
    _, model = library
    service = ChatService(store, model, limits=ServiceLimits(max_batch=1, max_queue=1))
    video = service.videos()[0]
    answers: dict[str, list] = {}

    def ask(name: str) -> None:
        answers[name] = list(service.ask(video.id, "what happens?", max_new_tokens=3))

    first = threading.Thread(target=ask, args=("first",))
    first.start()
    assert held_answers.reached.acquire(timeout=30)  # the first answer holds the batch's one place
    second = threading.Thread(target=ask, args=("second",))
    second.start()
    deadline = time.monotonic() + 30
    while service.engine.load() != (1, 1) and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(ServiceBusy, match="the app is busy: 1 questions are being answered and 1 are waiting; "
                                          "try again in a moment"):
        list(service.ask(video.id, "and now?", max_new_tokens=3))
    held_answers.gate.set()
    first.join(60)
    second.join(60)
    assert [u.queued for u in answers["second"] if u.queued is not None] == [1]  # its place, while it waited
    assert answers["second"][0].queued == 1 and answers["second"][-1].stats is not None
    assert answers["first"][-1].text == answers["second"][-1].text  # the same question, the same answer
    assert answers["second"][-1].stats.waited_ms > answers["first"][-1].stats.waited_ms
    assert "in line)" in answers["second"][-1].stats.summary()


def test_many_people_asking_at_once_get_the_answers_each_gets_alone(library, store):
    """Eight questions about three videos, asked at once (batched four at a time, the rest in line), answer as
    each does alone; row tiles make that bitwise, whoever shares a step."""
    _, model = library
    limits = ServiceLimits(max_batch=4, max_queue=8, row_tile=2)
    service = ChatService(store, model, limits=limits)
    videos = service.videos()
    asks = [(videos[i % len(videos)].id, f"what happens{'?' * (1 + i)}", 3 + i) for i in range(8)]
    alone = [service.answer(v, q, max_new_tokens=n)[0] for v, q, n in asks]  # one at a time
    got: dict[int, str] = {}

    def ask(i: int) -> None:
        v, q, n = asks[i]
        got[i] = service.answer(v, q, max_new_tokens=n)[0]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(asks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [got[i] for i in range(len(asks))] == alone
