"""Retrieval on a needle timeline longer than the answer's budget: the retrieved selection holds the needle
and answers as the needle alone does; a uniform subset of the same size misses it and answers otherwise.
Bundled synthetic model, real caches and search vectors (voco/search.py), a few seconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voco.data.needle import NEEDLE, draw_segment
from voco.search import VoCoKeyEmbedder
from voco.session import AnswerSession, RetrievedSegments, UniformSubset

QUESTION = "what color is the circle?"
SEGMENTS, SUBSET = 32, 4


@pytest.fixture(scope="module")
def model():
    from voco import VoCoModel

    torch.manual_seed(0)
    return VoCoModel.from_pretrained("synthetic").eval()


@pytest.fixture(scope="module")
def timeline(model):
    """(caches, needle index): plain backgrounds and one red circle, off the uniform subset's grid."""
    rng = np.random.default_rng(0)
    fps = model.voco.frames_per_segment
    uniform = set(UniformSubset().select(SEGMENTS, SUBSET))
    needle = next(int(i) for i in rng.permutation(SEGMENTS) if i not in uniform)
    segments = [draw_segment(rng, fps, 96, NEEDLE if t == needle else None) for t in range(SEGMENTS)]
    with torch.inference_mode():
        return model.compress(segments, batch_size=SEGMENTS), needle


@torch.inference_mode()
def test_retrieved_selection_answers_the_needle_question_uniform_does_not(model, timeline):
    caches, needle = timeline
    embedder = VoCoKeyEmbedder(model)
    scores = list(embedder.segment_vectors(caches) @ embedder.query_vector(QUESTION))
    alone, _ = AnswerSession(model, [caches[needle]], "all").answer(QUESTION, max_new_tokens=4)
    assert alone == NEEDLE[1], f"the model misreads the needle alone ({alone!r}): the check below means nothing"

    retrieved, stats = AnswerSession(model, caches, RetrievedSegments(max_segments=SUBSET)).answer(
        QUESTION, scores, max_new_tokens=4)
    used = [s.index for s in stats.segments_used]
    assert len(used) == SUBSET and needle in used, f"retrieval picked {used}, needle at {needle}"
    assert retrieved == alone

    uniform_used = UniformSubset().select(SEGMENTS, SUBSET)
    assert needle not in uniform_used
    uniform, _ = AnswerSession(model, [caches[i] for i in uniform_used], "all").answer(QUESTION, max_new_tokens=4)
    assert uniform != alone, "without the needle the model still answers its colour: the test cannot tell"


@torch.inference_mode()
def test_novelty_finds_a_green_needle_the_question_score_misses(model):
    """On the bundled synthetic model the question score ranks a green circle below plain backgrounds; mixed with the
    segment's novelty in the video (the default weight) it ranks first."""
    from voco.search import DEFAULT_NOVELTY_WEIGHT, video_scores

    rng = np.random.default_rng(0)
    needle = 11
    segments = [draw_segment(rng, model.voco.frames_per_segment, 96, ("circle", "green") if t == needle else None)
                for t in range(SEGMENTS)]
    embedder = VoCoKeyEmbedder(model)
    vectors = embedder.segment_vectors(model.compress(segments, batch_size=SEGMENTS))
    query = embedder.query_vector(QUESTION)

    question_only = video_scores(vectors, query, novelty_weight=0.0)
    assert needle not in RetrievedSegments(max_segments=SUBSET).select(SEGMENTS, SEGMENTS, question_only), \
        "the question score alone already finds the green needle: this test shows nothing"
    mixed = video_scores(vectors, query, DEFAULT_NOVELTY_WEIGHT)
    assert int(np.argmax(mixed)) == needle, np.argsort(-mixed)[:5]


def test_video_scores_standardise_within_the_video():
    from voco.search import video_scores

    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]], np.float32)
    query = np.array([0.0, 1.0], np.float32)
    question_only = video_scores(vectors, query, 0.0)
    assert question_only.mean() == pytest.approx(0.0, abs=1e-6) and question_only.std() == pytest.approx(1.0)
    assert int(np.argmax(video_scores(vectors, query, 2.0))) == 0  # the odd one out: 1.73 vs -0.58 (a tie at w = 1)
    assert not video_scores(vectors[:1], query, 2.0).any()  # one segment: nothing varies, all zeros
    with pytest.raises(ValueError, match="novelty_weight"):
        video_scores(vectors, query, -1.0)
