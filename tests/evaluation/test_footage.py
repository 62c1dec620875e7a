"""The held-out footage evaluation: its labels load and point at real files, its videos are cut as the models cut
them, questions are balanced, and answers are judged by the rules the module documents."""

import numpy as np
import pytest

from evaluation.footage import heldout_videos, load_footage, photo_video
from evaluation.footage_long import degenerate
from evaluation.footage_qa import KINDS, Question, clock_times, correct, named_things, said_number, video_questions


@pytest.fixture(scope="module")
def footage():
    return load_footage()


def test_labels_name_existing_files_and_consistent_words(footage):
    assert len(footage.photos) == 14 and len(footage.clips) == 3
    for f in (*footage.photos, *footage.clips):
        assert f.path().is_file(), f.file
        assert f.subject and f.refer and f.seen.get("noun"), f.id
        assert not f.present & set(f.avoid), (f.id, f.present & set(f.avoid))
        if f.colour:
            assert f.colour["accepted"] and f.colour["thing"].startswith("the "), f.id
    assert not set(footage.absent) & {"", None}


def test_photo_video_scenes_fall_on_segment_boundaries(footage):
    rng = np.random.default_rng(0)
    pixels = {p.id: np.full((60, 80, 3), i * 10, np.uint8) for i, p in enumerate(footage.photos[:3])}
    video = photo_video(list(footage.photos[:3]), pixels, rng)
    assert [s.footage.id for s in video.scenes] == [p.id for p in footage.photos[:3]]
    assert all(s.start_s % 2 == 0 and s.end_s % 2 == 0 for s in video.scenes)
    assert len(video.segments) == int(video.scenes[-1].end_s // 2)
    assert all(seg.shape == (1, 240, 320, 3) for seg in video.segments)
    # each segment's frame comes from its own scene (the fake photos are flat grey levels)
    for i, seg in enumerate(video.segments):
        assert int(seg.mean()) == int(pixels[video.scene_of_segment(i).footage.id].mean())


@pytest.mark.slow
def test_every_video_gets_balanced_questions(footage):
    videos = heldout_videos(footage, 0)
    rng = np.random.default_rng(0)
    questions = [q for v in videos for q in video_questions(v, footage, rng)]
    exists = [q.truth for q in questions if q.kind == "exists"]
    assert exists.count("yes") == exists.count("no") == 2 * len(videos)
    assert {q.kind for q in questions} == set(KINDS)
    assert len(videos) == 41


@pytest.mark.parametrize("kind, truth, answer, ok", [
    ("what", (("cat", "kitten"), ("rocket",)), "A cat, then a rocket.", True),
    ("what", (("cat", "kitten"), ("rocket",)), "A cat.", False),
    ("what", (("cat",),), "A catalogue.", False),            # whole words only
    ("what", (("cat",),), "Two cats.", True),                 # plurals count
    ("exists", "yes", "Yes.", True),
    ("exists", "yes", "Yes, at 0:02.", True),
    ("exists", "no", "Yes.", False),
    ("first", (("cat",), ["rocket"]), "A cat.", True),
    ("first", (("cat",), ["rocket"]), "A cat, then a rocket.", False),
    ("when", [(4.0, 10.0)], "From 0:04 to 0:08.", True),
    ("when", [(4.0, 10.0)], "At 0:10.", True),
    ("when", [(4.0, 10.0)], "From 0:00 to 0:08.", False),
    ("when", [(4.0, 10.0)], "In the middle of the video.", False),
    ("when", [(3600.0, 3612.0)], "At 1:00:04.", True),
    ("absent", None, "There is no dog in the video.", True),
    ("absent", None, "At 0:02.", False),
    ("absent", None, "It does not appear at 0:02.", False),
    ("count", 2, "Two.", True),
    ("count", 2, "2 people.", True),
    ("count", 1, "Two.", False),
    ("colour", ("orange", "ginger"), "It is orange.", True),
    ("colour", ("orange",), "Red.", False),
    ("cant_tell", None, "I can't tell from the video.", True),
    ("cant_tell", None, "He is saying hello.", False),
])
def test_judging(kind, truth, answer, ok):
    assert correct(Question(kind, "?", truth), answer) is ok


def test_helpers():
    assert clock_times("From 1:02 to 1:00:05.") == [62, 3605]
    assert said_number("There are three cats.") == 3 and said_number("None.") == 0
    assert named_things("A cat, then a red car and two dogs.") == ["cat", "car", "dogs"]
    assert degenerate("A.\n\nA.\n\nA.") and degenerate("a tripod, a, then, a tripod, a, then, a tripod, a")
    assert not degenerate("A cat, then a car, then a dog.")


def test_evidence_rule_reads_the_models_own_slots(footage):
    """The evidence-rule diagnostic answers from the default model's evidence slots: yes and the segments' times for
    a word some segment's slots show (or a synonym of it), no and "not there" for a word none shows."""
    from evaluation.footage_eval import EvidenceRule
    from voco import VoCoModel

    rule = EvidenceRule(VoCoModel.from_pretrained("default"))
    video = next(v for v in heldout_videos(footage, 0) if len(v.scenes) == 2)
    slots = rule.slots(video)
    assert len(slots) == len(video.segments) and all(frame for frame in slots)
    name = slots[-1][0][0]
    shown = [i for i, frame in enumerate(slots) if any(name in words for _, words, _, _ in frame)]

    def ask(kind: str, subject: str) -> str:
        return rule.answer(video, Question(kind, "", None, subject))

    assert ask("exists", name) == "Yes." and ask("exists", "unicorn") == "No."
    assert ask("exists", f"the {name}") == "Yes."
    times = clock_times(ask("when", name))  # the first and last start of each run of segments showing it
    starts = [video.times[i][0] for i in shown]
    assert times[0] == starts[0] and times[-1] == starts[-1] and set(times) <= set(starts)
    assert ask("absent", "unicorn") == "There is no unicorn in the video."
    assert ask("cant_tell", "") == "I can't tell from the video."
    assert correct(Question("first", "", ((slots[0][0][0],), ["zzz"])), ask("first", ""))
