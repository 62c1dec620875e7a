"""Moment search in the app (app/search.py, app/ui.py): weak matches marked, a hit opens its video and segment,
and timeline captions short at any video length. The browser test (test_browser.py) clicks the same things."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest

from app.search import POOL, WEAK_COSINE, find_moments, table_rows, weak_cut
from app.service import USED_MARK, ChatService, timeline_caption
from app.ui import build_ui
from store import SegmentInfo, Store
from voco.search import ConceptEvidenceEmbedder
from voco.text_encoders import MiniLMEncoder

# what the evidence tower writes for a segment (SlotProjector.phrase): a library with no phone in it
PHRASES = ["tabby cat animal", "two people", "red sports car vehicle", "coffee mug container", "wall clock"]


class Library:
    """A stand-in `MomentSearch`: one segment per vector, scored by inner product with the embedder's query."""

    def __init__(self, embedder, vectors: np.ndarray):
        self.embedder, self.vectors, self.asked = embedder, vectors, []

    def search(self, text: str, top: int = 10) -> list[dict]:
        self.asked.append(top)
        scores = self.vectors @ self.embedder.query_vector(text)
        order = np.argsort(-scores, kind="stable")[:top]
        return [{"video_id": 1, "path": "/v/a.mp4", "segment": int(i), "start_s": float(i), "end_s": i + 1.0,
                 "score": round(float(scores[i]), 4)} for i in order]


class PhraseEmbedder(ConceptEvidenceEmbedder):
    """The concept-evidence embedder's query side (the real all-MiniLM-L6-v2), without a model."""

    def __init__(self, encoder):
        self.encoder = encoder


class Scripted:
    """An embedder with no absolute scale (as `voco-keys`): the query's scores are given."""

    def __init__(self, scores):
        self.scores = np.asarray(scores, np.float32)

    def query_vector(self, text: str) -> np.ndarray:
        return self.scores


@pytest.fixture(scope="module")
def minilm():
    return MiniLMEncoder()


def test_a_text_that_nothing_in_the_library_shows_gets_only_weak_hits(minilm):
    library = Library(PhraseEmbedder(minilm), minilm.encode(PHRASES))
    phone = find_moments(library, "a phone", 3)
    assert len(phone) == 3 and all(h["weak"] for h in phone), phone  # search still returns its best
    assert all(h["score"] < WEAK_COSINE for h in phone)
    cat = find_moments(library, "a cat", 3)
    assert [h["segment"] for h in cat][0] == PHRASES.index("tabby cat animal")
    assert [h["weak"] for h in cat] == [False, True, True], cat  # the cat, then only weaker neighbours
    assert library.asked == [3, 3]  # a cosine needs no other scores than the hits'


def test_without_an_absolute_scale_a_hit_is_weak_unless_it_stands_out():
    scores = [0.5] * 40 + [0.4, 0.6] * 10 + [3.0]  # one segment far above the library's other scores
    library = Library(Scripted(scores), np.eye(len(scores), dtype=np.float32))
    hits = find_moments(library, "the needle", 5)
    assert [h["segment"] for h in hits][:1] == [len(scores) - 1]
    assert [h["weak"] for h in hits] == [False, True, True, True, True]
    assert library.asked == [POOL]  # the cut reads the library's scores, not only the hits'
    flat = Library(Scripted([1.0, 1.1, 0.9] * 10), np.eye(30, dtype=np.float32))
    assert all(h["weak"] for h in find_moments(flat, "anything", 5))  # nothing stands out: all weak
    assert weak_cut(False, []) == 0.0 and weak_cut(True, [0.1, 0.2]) == WEAK_COSINE


def test_equal_scores_come_in_video_then_segment_order():
    library = Library(Scripted([2.0, 1.0, 2.0, 2.0]), np.eye(4, dtype=np.float32))
    library.search = lambda text, top: [{"video_id": v, "path": "/v", "segment": s, "start_s": 0.0, "end_s": 1.0,
                                         "score": 2.0} for v, s in ((2, 0), (1, 3), (1, 1))]
    assert [(h["video_id"], h["segment"]) for h in find_moments(library, "x", 3)] == [(1, 1), (1, 3), (2, 0)]
    rows = table_rows([{"video_id": 1, "name": "a.mp4", "segment": 4, "start_s": 64.0, "end_s": 66.0,
                        "score": 0.7, "weak": False}, {"video_id": 2, "name": "b.mp4", "segment": 0, "start_s": 0.0,
                                                       "end_s": 2.0, "score": 0.2, "weak": True}])
    assert rows == [[1, "a.mp4", 4, "1:04-1:06", 0.7, "good"], [2, "b.mp4", 0, "0:00-0:02", 0.2, "weak"]]


def test_timeline_captions_are_short_at_any_video_length():
    def segment(index, start):
        return SegmentInfo(index, start, start + 2.0, b"jpeg", "image/jpeg")

    assert timeline_caption(segment(2, 4.0), used=False) == "0:04"
    assert timeline_caption(segment(1862, 3725.0), used=False) == "1:02:05"  # was "#1862 3725-3727 s"
    assert timeline_caption(segment(17999, 35998.0), used=True) == f"{USED_MARK}9:59:58"


@pytest.fixture(scope="module")
def ui(library, tmp_path_factory):
    root, model = library

    store = Store.open(root / "home")
    service = ChatService(store, model, model_name="tiny")
    demo = build_ui(service, tmp_path_factory.mktemp("thumbs"))
    yield service, {getattr(f.fn, "__name__", ""): f for f in demo.fns.values()}, demo
    store.close()


def test_a_clicked_hit_picks_its_video_and_selects_its_segment(ui):
    service, fns, demo = ui
    other, video = sorted(service.videos(), key=lambda v: v.id)[:2]
    hits = [{"video_id": video.id, "name": "x.mp4", "segment": 2, "start_s": 2.0, "end_s": 3.0, "score": 0.1,
             "weak": True}]
    open_hit, select = fns["open_hit"], fns["select"]
    table = next(b for b in demo.blocks.values() if b.elem_id == "search-hits")
    assert (table._id, "select") in [tuple(t[:2]) for t in open_hit.targets]  # wired to a click on the table

    # another video is picked: the picker changes to the hit's video, whose `select` then selects the segment
    picker, focus, timeline, moment, question = open_hit.fn(hits, other.id, "", gr.SelectData(None, {
        "index": [0, 1], "value": "x.mp4"}))
    assert picker["value"] == video.id and video.id in [value for _, value in picker["choices"]]
    assert focus == (video.id, 2) and question == "What happens at 0:02?"
    info, timeline, chat, moment, focus = select.fn(video.id, focus)
    assert timeline["selected_index"] == service.timeline_position(video.id, 2)
    assert len(timeline["value"]) == video.num_segments and chat == [] and focus is None
    assert moment == "**0:02** · segment #2 · 0:02-0:03"
    assert select.fn(video.id, None)[1] == select.fn(video.id, (other.id, 2))[1]  # a plain pick selects nothing

    # its video is already picked (no change event): the segment is selected at once
    picker, focus, timeline, moment, question = open_hit.fn(hits, video.id, "zzz", gr.SelectData(None, {
        "index": [0, 3], "value": "0:02-0:03"}))
    assert picker == {"__type__": "update"} and focus is None
    assert timeline["selected_index"] == service.timeline_position(video.id, 2)
    assert moment == "**0:02** · segment #2 · 0:02-0:03" and question == "What happens at 0:02?"
    stale = open_hit.fn(hits, video.id, "", gr.SelectData(None, {"index": [5, 0], "value": 1}))  # a row since gone
    assert stale[1] is None and all(part == {"__type__": "update"} for i, part in enumerate(stale) if i != 1)


def test_a_clicked_thumbnail_shows_its_whole_segment_under_the_timeline(ui):
    service, fns, _ = ui
    video = sorted(service.videos(), key=lambda v: v.id)[0]
    show_segment = fns["show_segment"].fn
    assert show_segment(video.id, gr.SelectData(None, {"index": 1, "value": None})) == "segment #1 · 0:01-0:02"
    assert show_segment(video.id, gr.SelectData(None, {"index": 999, "value": None})) == {"__type__": "update"}
    assert show_segment(None, gr.SelectData(None, {"index": 0, "value": None})) == {"__type__": "update"}
