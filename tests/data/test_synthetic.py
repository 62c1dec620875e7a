"""Tests of the synthetic video-QA world (voco.data): determinism, ground truth, questions, CLI files."""

from __future__ import annotations

import json
import re
from collections import Counter

import av
import numpy as np
import pytest

from voco.data.questions import ANSWER_VOCAB, QUESTION_TYPES, make_questions, time_phase
from voco.data.synthetic import SPLITS, iter_split, main, make_example, read_annotations, video_seed_sequence
from voco.data.world import (
    BACKGROUND_COLORS,
    OBJECT_COLORS,
    ObjectTrack,
    Video,
    WorldConfig,
    generate_video,
    region_of,
)

SHORT = WorldConfig(min_seconds=3.0, max_seconds=8.0)


def _ground_truth_videos(count: int, split: str = "val") -> list[tuple[Video, list]]:
    return list(iter_split(split, count, base_seed=7, render=False))


def _referenced(video: Video, color: str, shape: str) -> ObjectTrack:
    """The one object "the <color> <shape>" names; fails when the reference is ambiguous or empty."""
    matches = [o for o in video.objects if o.shape == shape and color in o.colors]
    assert len(matches) == 1, f"'the {color} {shape}' names {len(matches)} objects in {video.video_id}"
    return matches[0]


# ---------------------------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_frames_and_questions():
    video_a, qas_a = make_example("train", 3, base_seed=5, config=SHORT)
    video_b, qas_b = make_example("train", 3, base_seed=5, config=SHORT)
    assert video_a.frames is not None and video_b.frames is not None
    assert np.array_equal(video_a.frames, video_b.frames)
    assert video_a.objects == video_b.objects and video_a.events == video_b.events
    assert qas_a == qas_b and len(qas_a) == 6
    # a plain int seed works too and is just as reproducible
    assert np.array_equal(generate_video(SHORT, 11).frames, generate_video(SHORT, 11).frames)


def test_splits_indices_and_seeds_give_different_videos():
    states = {tuple(video_seed_sequence(split, index, seed).generate_state(4))
              for split in SPLITS for index in range(20) for seed in (0, 1)}
    assert len(states) == len(SPLITS) * 20 * 2  # all seed streams distinct
    for index in range(3):
        videos = [make_example(split, index, 0, SHORT)[0] for split in SPLITS]
        assert len({v.video_id for v in videos}) == 3
        for first in range(3):
            for second in range(first + 1, 3):
                a, b = videos[first], videos[second]
                assert a.frames is not None and b.frames is not None
                assert a.frames.shape != b.frames.shape or not np.array_equal(a.frames, b.frames)


# ---------------------------------------------------------------------------------------------- ground truth
def test_rendered_pixels_match_ground_truth():
    config = WorldConfig(min_seconds=4.0, max_seconds=10.0)
    for index in range(6):
        video = generate_video(config, index)
        frames = video.frames  # [N, H, W, 3]
        assert frames is not None and frames.dtype == np.uint8
        assert frames.shape == (video.num_frames, 96, 96, 3)
        for frame_index in range(video.num_frames):
            frame = frames[frame_index]  # [H, W, 3]
            states = video.frame_states[frame_index]
            background = np.array(BACKGROUND_COLORS[video.background_at(frame_index)], dtype=np.uint8)
            if not states:
                assert np.all(frame == background)
            for state in states:
                color = np.array(OBJECT_COLORS[state.color], dtype=np.uint8)
                assert np.array_equal(frame[int(round(state.y)), int(round(state.x))], color)
                # the whole shape is drawn (not clipped, not covered): enough of its pixels near its centre
                reach = int(state.size * 0.65) + 1
                y0, x0 = max(int(state.y) - reach, 0), max(int(state.x) - reach, 0)
                patch = frame[y0:int(state.y) + reach + 1, x0:int(state.x) + reach + 1]  # [h, w, 3]
                assert np.all(patch == color, axis=-1).sum() >= 0.3 * state.size**2
            # colours of objects that are not on screen appear nowhere in the frame
            visible_colors = {state.color for state in states}
            for name, rgb in OBJECT_COLORS.items():
                if name not in visible_colors:
                    assert not np.any(np.all(frame == np.array(rgb, dtype=np.uint8), axis=-1)), name


def test_tracks_respect_world_rules():
    for video, _ in _ground_truth_videos(150):
        assert 1 <= len(video.objects) <= 5
        assert max(len(states) for states in video.frame_states) <= 3
        enters = sorted(o.enter_frame for o in video.objects)
        assert all(b - a >= video.fps for a, b in zip(enters[:-1], enters[1:], strict=True))
        pairs = [(o.shape, c) for o in video.objects for c in o.colors]
        assert len(pairs) == len(set(pairs))  # "the red circle" is never ambiguous
        for obj in video.objects:
            assert 0 <= obj.enter_frame < obj.leave_frame <= video.num_frames
            assert region_of(obj.start_x, obj.start_y, video.size) == obj.start_region
            first, last = obj.position(obj.enter_frame), obj.position(obj.leave_frame - 1)
            for x, y in (first, last):  # the path (a straight line) stays inside the frame
                assert obj.size / 2 <= x <= video.size - obj.size / 2
                assert obj.size / 2 <= y <= video.size - obj.size / 2
            moved_x, moved_y = last[0] - first[0], last[1] - first[1]
            expected = {"left": (moved_x < 0, moved_y == 0), "right": (moved_x > 0, moved_y == 0),
                        "up": (moved_y < 0, moved_x == 0), "down": (moved_y > 0, moved_x == 0),
                        "none": (moved_x == 0, moved_y == 0)}[obj.direction]
            assert all(expected)
            if obj.direction != "none":
                assert max(abs(moved_x), abs(moved_y)) >= 0.2 * video.size - 1e-6
        kinds = Counter(event.kind for event in video.events)
        assert kinds["enter"] == len(video.objects)
        assert kinds["background_change"] == len(video.backgrounds) - 1
        assert kinds["color_change"] == sum(o.new_color is not None for o in video.objects)


def test_noise_flag_changes_pixels_but_not_ground_truth():
    clean = generate_video(SHORT, 3)
    noisy = generate_video(WorldConfig(min_seconds=3.0, max_seconds=8.0, noise_std=8.0), 3)
    assert clean.objects == noisy.objects and clean.events == noisy.events
    assert clean.frames is not None and noisy.frames is not None
    difference = np.abs(clean.frames.astype(np.int16) - noisy.frames.astype(np.int16))
    assert 2.0 < difference.mean() < 12.0


# ---------------------------------------------------------------------------------------------- questions
def test_answers_are_valid_and_match_ground_truth():
    type_counts: Counter[str] = Counter()
    yes_no_answers: Counter[str] = Counter()
    for video, qas in _ground_truth_videos(150):
        assert len(qas) == 6 and len({qa.question for qa in qas}) == 6
        for qa in qas:
            type_counts[qa.type] += 1
            assert qa.type in QUESTION_TYPES
            assert re.fullmatch(r"[a-z0-9]+", qa.answer), qa
            assert qa.answer in ANSWER_VOCAB[qa.type], qa
            assert qa.question.endswith("?") and qa.question == qa.question.lower()
            _check_against_ground_truth(video, qa)
            if qa.type == "yes_no":
                yes_no_answers[qa.answer] += 1
    assert set(type_counts) == set(QUESTION_TYPES)
    yes_share = yes_no_answers["yes"] / sum(yes_no_answers.values())
    assert 0.4 <= yes_share <= 0.6, yes_no_answers


def _check_against_ground_truth(video: Video, qa) -> None:
    if qa.type == "count":
        if "background" in qa.question:
            expected = len(video.backgrounds) - 1
        elif "objects" in qa.question:
            expected = len(video.objects)
        else:
            plural = re.search(r"how many (\w+) appear", qa.question).group(1)
            expected = sum(o.shape == plural.removesuffix("es" if plural == "crosses" else "s")
                           for o in video.objects)
        assert qa.answer == str(expected), qa
    elif qa.type == "yes_no":
        color, shape = re.search(r"(?:is there|does) an? (\w+) (\w+)", qa.question).groups()
        present = any(o.shape == shape and color in o.colors for o in video.objects)
        assert qa.answer == ("yes" if present else "no"), qa
    elif qa.type in ("location", "motion", "when"):
        color, shape = re.search(r"the (\w+) (\w+) (?:when|at|move|appear|first)", qa.question).groups()
        obj = _referenced(video, color, shape)
        expected = {"location": obj.start_region, "motion": obj.direction,
                    "when": time_phase(obj.enter_frame, video.num_frames)}[qa.type]
        assert qa.answer == expected, qa
    elif qa.type == "what_object":
        color = re.search(r"(?:the|is) (\w+)(?: object)?\?", qa.question).group(1)
        matches = [o for o in video.objects if color in o.colors]
        assert len(matches) == 1 and qa.answer == matches[0].shape, qa
    elif qa.type == "what_color":
        shape = re.search(r"the (\w+)", qa.question).group(1)
        matches = [o for o in video.objects if o.shape == shape]
        assert len(matches) == 1, qa
        changed = re.search(r"turn into|change to", qa.question)
        expected = matches[0].new_color if changed else matches[0].color
        assert qa.answer == expected, qa
    elif qa.type == "temporal":
        order = sorted(video.objects, key=lambda o: o.enter_frame)
        if qa.answer in ("yes", "no"):
            first, second = re.findall(r"the (\w+ \w+)", qa.question)
            a, b = (_referenced(video, *name.split()) for name in (first, second))
            assert qa.answer == ("yes" if a.enter_frame < b.enter_frame else "no"), qa
        else:
            obj = order[0] if "first" in qa.question else order[-1]
            assert qa.answer == (obj.shape if "shape" in qa.question else obj.color), qa


def test_make_questions_is_seeded_and_respects_types():
    video = generate_video(SHORT, 21, render=False)
    assert make_questions(video, 1, n=5) == make_questions(video, 1, n=5)
    only = make_questions(video, 2, n=4, types=("count", "yes_no"))
    assert only and {qa.type for qa in only} <= {"count", "yes_no"}
    with pytest.raises(ValueError):
        make_questions(video, 0, types=("nonsense",))


# ---------------------------------------------------------------------------------------------- CLI / files
def test_cli_writes_readable_videos_and_joinable_annotations(tmp_path, capsys):
    out = tmp_path / "synth"
    code = main(["--out", str(out), "--videos", "3", "--seed", "4", "--split", "test",
                 "--min-seconds", "2", "--max-seconds", "5", "--questions", "4", "--no-progress"])
    assert code == 0
    summary = capsys.readouterr().out
    assert "wrote 3 test videos" in summary and "12 questions" in summary

    videos = sorted((out / "videos").iterdir())
    assert [p.suffix for p in videos] == [".mp4"] * 3  # no temp files left behind
    truths = [json.loads(line) for line in (out / "ground_truth.jsonl").read_text().splitlines()]
    assert [p.stem for p in videos] == sorted(t["video_id"] for t in truths)

    truth = truths[0]
    with av.open(str(out / "videos" / f"{truth['video_id']}.mp4")) as container:
        stream = container.streams.video[0]
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])  # [N, H, W, 3]
    assert decoded.shape[1:] == (96, 96, 3)
    assert abs(decoded.shape[0] - truth["duration_s"] * 8) <= 1 and decoded.shape[0] == truth["num_frames"]
    # colours survive h264 at crf 18: compare with the in-memory render of the same example
    index = int(truth["video_id"].rsplit("_", 1)[1])
    video, _ = make_example("test", index, 4, WorldConfig(min_seconds=2, max_seconds=5), 4)
    assert video.frames is not None
    assert np.abs(decoded.astype(np.int16) - video.frames.astype(np.int16)).mean() < 4.0

    questions = json.loads((out / "test_q.json").read_text())
    answers = json.loads((out / "test_a.json").read_text())
    assert len(questions) == len(answers) == 12
    assert {q["question_id"] for q in questions} == {a["question_id"] for a in answers}
    assert len({q["question_id"] for q in questions}) == 12
    assert {q["video_name"] for q in questions} <= {p.stem for p in videos}
    assert all(set(q) == {"video_name", "question_id", "question"} for q in questions)
    assert all(set(a) == {"question_id", "answer", "type"} for a in answers)
    joined = read_annotations(out)
    assert all(row["answer"] in ANSWER_VOCAB[row["type"]] for row in joined)


def test_cli_help_and_bad_size(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "test_q.json" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", "unused", "--size", "95"])
    assert exit_info.value.code == 2
