"""Batching of the synthetic world: segments by the ingest rule, token ids, captions."""

import numpy as np

from voco.data.world import WorldConfig
from voco.segments import split_frames
from voco.train.build import build_model
from voco.train.data import CAPTION_QUESTION, encode, load_video
from voco.train.evaluate import question_template


def test_segments_follow_the_ingest_rule_and_rows_hold_answers(tiny_config):
    config = tiny_config()
    model = build_model(config.model)
    world = WorldConfig(size=32, fps=4, min_seconds=2.0, max_seconds=6.0)
    example = load_video("train", 1, world=world, base_seed=0, questions_per_video=3, frames_per_segment=2,
                         segment_seconds=2.0, captions=True)
    from voco.data.synthetic import make_example

    video, _ = make_example("train", 1, 0, world, 3)
    expected = split_frames(video.frames, video.fps, 2.0, 2)
    assert len(example.segments) == len(expected)
    assert all(np.array_equal(a, b) for a, b in zip(example.segments, expected, strict=True))
    assert example.qas[-1].question == CAPTION_QUESTION and example.qas[-1].type == "caption"
    batch = encode(model, [example])
    for ids, start, answer in zip(batch.row_ids, batch.row_answer_start, batch.row_answers, strict=True):
        assert ids[start:] == model.answer_ids(answer)
    assert batch.segment_counts == [len(expected)]


def test_question_template_blanks_entities():
    assert question_template("is there a red circle in the video?") == "is there a X X in the video?"
