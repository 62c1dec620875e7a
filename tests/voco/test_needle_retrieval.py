"""Retrieval on a needle timeline longer than the answer's budget: the retrieved selection holds the needle
and answers as the needle alone does; a uniform subset of the same size misses it and answers otherwise.
Bundled model, real caches and search vectors (voco/search.py), a few seconds."""

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
    return VoCoModel.from_pretrained("default").eval()


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
