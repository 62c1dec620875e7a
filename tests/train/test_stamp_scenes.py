"""Training material of the default model (issue 30): scene questions and their answers, stamp scenes rendered
with exact truth, the scene bank read by the (tiny) evidence tower, and videos assembled from it. Stamps and
wallpapers here are tiny stand-ins written by the tests (the real ones come from scripts/get_training_data.sh)."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from voco.train.scene_questions import (
    CANT_TELL,
    CANT_TELL_QUESTIONS,
    COLOUR,
    COUNT,
    EXISTS,
    FIRST,
    LAST,
    WHAT,
    WHEN,
    SceneTruth,
    Thing,
    VideoTruth,
    ask,
    runs,
    when_answer,
)


def _video(**kw) -> VideoTruth:
    cat = Thing("cat", ("animal",), "orange", 1)
    cars = Thing("car", ("vehicle",), "red", 2)
    scenes = [SceneTruth((cat,)), SceneTruth((cars,), people=1), SceneTruth((cat,))]
    defaults = dict(scenes=scenes, scene_of_segment=[0, 0, 1, 1, 1, 2], starts=[0, 2, 4, 6, 8, 10],
                    vocabulary={"car": ("car", "cars", ("automobile",))}, absent_pool=("dog", "boat", "cat"))
    return VideoTruth(**{**defaults, **kw})


def test_when_answers_name_each_run_of_segments():
    video = _video()
    assert runs([0, 1, 5, 7, 8]) == [(0, 1), (5, 5), (7, 8)]
    assert when_answer(video, "cat") == "From 0:00 to 0:02 and at 0:10."
    assert when_answer(video, "vehicle") == "From 0:04 to 0:08."
    assert when_answer(_video(starts=[3600, 3602, 3700, 3702, 3704, 3990]), "person") == "From 1:01:40 to 1:01:44."


def test_when_is_asked_only_about_what_some_segment_reads():
    """A thing listed for its scene whose name (or hypernym) no segment's own evidence reads has no time to give:
    "when" falls back to its name, else is not asked (was: IndexError building an empty answer)."""
    video = _video(segment_words=[{"cat"}, {"cat"}, {"car"}, {"car"}, {"car"}, set()])
    when = _answers("when", video, 200)
    assert when and all(re.search(r"\d:\d\d", qa.answer) or qa.answer.startswith("There is no") for qa in when)
    assert not any("vehicle" in qa.question or "animal" in qa.question for qa in when if "There is no" not in qa.answer)
    assert {qa.answer for qa in when if "car" in qa.question or "automobile" in qa.question} <= {"From 0:04 to 0:08."}


def _answers(kind: str, video: VideoTruth, n: int = 60) -> list:
    rng = np.random.default_rng(0)
    return [qa for qa in (ask(kind, video, rng) for _ in range(n)) if qa is not None]


def test_sibling_no_asks_about_a_thing_of_a_kind_the_video_shows():
    """`sibling`: a yes/no question's absent thing is one sharing a hypernym with what is seen (a dog where a cat
    is); at 0 the questions are drawn exactly as before the option existed (the bundled recipe's data)."""
    video = _video(siblings=("dog",))

    def noes(sibling: float) -> list[str]:
        rng = np.random.default_rng(0)
        qas = [ask("exists", video, rng, sibling=sibling) for _ in range(80)]
        return [qa.question for qa in qas if qa is not None and qa.answer == "No."]

    assert noes(1.0) and all("dog" in q for q in noes(1.0))
    plain = np.random.default_rng(0)
    assert noes(0.0) == [qa.question for qa in (ask("exists", _video(), plain) for _ in range(80))
                         if qa is not None and qa.answer == "No."]
    assert not all("dog" in q for q in noes(0.0))


def test_answers_follow_the_truth():
    video = _video()
    assert {qa.answer for qa in _answers("what", video)} == {"A cat, then two cars and a person, then a cat."}
    assert {qa.answer for qa in _answers("first", video)} == {"A cat."}
    exists = _answers("exists", video)
    assert {qa.answer for qa in exists} == {"Yes.", "No."}
    assert all("dog" in qa.question or "boat" in qa.question for qa in exists if qa.answer == "No.")
    counts = {qa.question: qa.answer for qa in _answers("count", video)}
    assert counts.get("How many cars are there?", "Two.") == "Two." and "None." in counts.values()
    colours = {qa.answer for qa in _answers("colour", video)}
    assert colours <= {"Orange.", "Red.", "There is no dog in the video.", "There is no boat in the video."}
    assert {qa.answer for qa in _answers("cant_tell", video)} == {CANT_TELL}
    after = {qa.question: qa.answer for qa in _answers("after", video)}
    assert after.get("What comes after the car?", "A cat.") == "A cat."


def test_training_wordings_are_not_the_evaluations():
    """The held-out evaluation asks in words no training template uses (issue 30)."""
    from evaluation import footage_qa as ev

    def shape(template: str) -> str:  # "What is {person} saying?" and "What is {the} saying?" read the same
        return re.sub(r"\{\w+\}", "{x}", template.lower())

    training = {shape(t) for group in (WHAT, EXISTS, FIRST, LAST, WHEN, COLOUR, COUNT, CANT_TELL_QUESTIONS)
                for t in group}
    evaluation = {shape(t) for group in (ev.WHAT, ev.EXISTS, ev.FIRST, ev.LAST, ev.WHEN, ev.COUNT, ev.COLOUR,
                                         ev.CANT_TELL) for t in group}
    assert not training & evaluation, training & evaluation


@pytest.fixture(scope="module")
def stamp_world(tmp_path_factory):
    """Four one-colour 'stamps' (a disc on transparency) and two wallpapers, with a catalogue naming them."""
    root = tmp_path_factory.mktemp("stamps")
    # "goat" and "taxi" are validation-only names (voco.train.scene_bank.val_name), the others train; the tiny
    # random classifier reads most frames as a car first, so the vehicles give scenes whose leading slot is right
    colours = {"apple": (200, 30, 30), "frog": (40, 160, 60), "boat": (30, 90, 220), "cat": (240, 140, 30),
               "goat": (245, 245, 245), "taxi": (240, 220, 40)}
    rows = ["path\tname\thypernyms\tdescription"]
    for name, rgb in colours.items():
        image = np.zeros((60, 60, 4), np.uint8)
        yy, xx = np.mgrid[:60, :60]
        image[(yy - 30) ** 2 + (xx - 30) ** 2 < 28 ** 2] = (*rgb, 255)
        Image.fromarray(image).save(root / f"{name}.png")
        hyps = {"apple": "fruit,food", "frog": "animal", "boat": "vehicle", "cat": "animal", "goat": "animal",
                "taxi": "car,vehicle"}[name]
        rows.append(f"{name}.png\t{name}\t{hyps}\tA {name}.")
    (root / "catalogue.tsv").write_text("\n".join(rows) + "\n")
    walls = root / "walls"
    walls.mkdir()
    for i in range(2):
        Image.fromarray(np.full((90, 120, 3), 60 + 80 * i, np.uint8)).save(walls / f"wall{i}.jpg")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(walls / "goldfish.png")  # shows a thing: never used
    return root


def test_render_scene_measures_colour_and_counts(stamp_world):
    from voco.train.stamps import Backgrounds, SceneSpec, StampCatalogue, render_scene

    catalogue = StampCatalogue.load(stamp_world, stamp_world / "catalogue.tsv")
    backgrounds = Backgrounds.find([stamp_world / "walls"])
    assert [p.name for p in backgrounds.paths] == ["wall0.jpg", "wall1.jpg"]
    rng = np.random.default_rng(0)
    want = {"apple": "red", "frog": "green", "boat": "blue", "cat": "orange", "goat": "white", "taxi": "yellow"}
    for _ in range(12):
        frames, truth = render_scene(catalogue, backgrounds, SceneSpec(views=2, many=0.5), rng)
        assert frames.shape == (2, 240, 320, 3) and frames.dtype == np.uint8
        assert 1 <= len(truth.things) <= 3 and len({t.name for t in truth.things}) == len(truth.things)
        for thing in truth.things:
            assert thing.colour == want[thing.name] and 1 <= thing.count <= 3


@pytest.fixture(scope="module")
def tiny_evidence(tmp_path_factory):
    from voco.config import VoCoConfig
    from voco.model import VoCoModel
    from voco.tiny import TINY_ASSEMBLY_VOCO, tiny_evidence_spec

    voco = {**TINY_ASSEMBLY_VOCO, "k": 2, "frames_per_segment": 1, "prompt": {"segment_label": " {start}"}}
    return VoCoModel.from_assembly(tiny_evidence_spec(tmp_path_factory.mktemp("m")), VoCoConfig(**voco))


def test_bank_and_videos(stamp_world, tiny_evidence, tmp_path):
    from voco.train.scene_bank import BankSpec, SceneBank
    from voco.train.scene_videos import SceneVideos, SceneVideoSpec

    torch.set_num_threads(1)
    spec = BankSpec(stamps=str(stamp_world), stamp_table=str(stamp_world / "catalogue.tsv"),
                    backgrounds=(str(stamp_world / "walls"),), train_scenes=12, val_scenes=4)
    bank = SceneBank.build_or_load(tiny_evidence.vision_tower, spec, tmp_path)
    assert bank.slots["train"].shape[:2] == (12, 3) and bank.slots["val"].shape[0] == 4
    assert {t.name for truth in bank.truths["val"] for t in truth.things} <= {"goat", "animal", "taxi", "car",
                                                                              "vehicle"}
    again = SceneBank.build_or_load(tiny_evidence.vision_tower, spec, tmp_path)  # from the cache
    np.testing.assert_array_equal(again.slots["train"], bank.slots["train"])
    assert [t.things for t in again.truths["train"]] == [t.things for t in bank.truths["train"]]
    usable = [t for t in bank.truths["train"] if t.things]
    if not usable:
        pytest.skip("the tiny random classifier grounded no thing in these scenes")
    videos = SceneVideos(bank, SceneVideoSpec(max_segments=6, people=0.5), "train",
                         tiny_evidence.vision_tower.person_id, questions_per_video=4)
    a, b = videos.load(3), videos.load(3)
    assert [q.question for q in a.qas] == [q.question for q in b.qas] and len(a.times) == len(a.segments)
    assert all(s.shape == (1, 3, 6) for s in a.segments) and len(a.histories) == len(a.qas)
    for i in range(8):
        example = videos.load(i)
        shown = videos.shown(example.segments)
        for qa in example.qas:
            if qa.type == "exists" and qa.answer == "No.":
                assert not any(f" {w}" in qa.question for w in shown if len(w) > 3), (qa.question, shown)


def test_the_default_recipe_runs_end_to_end_on_stand_ins(stamp_world, tmp_path):
    """configs/default.yaml's stages (full view, summary view, compress with KV distillation, long videos) and
    its data, on the tiny evidence stand-in and tiny stamps: trains, validates, exports a loadable model whose
    answers carry the time labels."""
    import yaml

    from voco import VoCoModel
    from voco.tiny import tiny_evidence_spec
    from voco.train.config import config_from_dict
    from voco.train.loop import train

    recipe = yaml.safe_load((Path(__file__).parents[2] / "configs" / "default.yaml").read_text())
    spec = tiny_evidence_spec(tmp_path / "parts")
    recipe["model"]["assembly"] = {k: v for k, v in spec.to_dict().items() if v is not None}
    recipe["model"]["voco"]["frames_per_segment"] = 1
    bank = {"stamps": str(stamp_world), "stamp_table": str(stamp_world / "catalogue.tsv"),
            "backgrounds": [str(stamp_world / "walls")], "train_scenes": 40, "val_scenes": 24}
    recipe["data"].update(options={**recipe["data"]["options"], "bank": bank, "cache": str(tmp_path / "bank")},
                          videos_per_batch=2, val_videos=2, test_videos=2, questions_per_video=3)
    for stage in recipe["stages"]:
        stage["steps"] = 1
        stage["warmup_steps"] = 0
        if "options" in stage:
            stage["options"].update(min_segments=4, max_segments=6)
    recipe.update(output_dir=str(tmp_path / "run"), export_dir=str(tmp_path / "export"), threads=1,
                  eval_max_new_tokens=3)
    metrics = train(config_from_dict(recipe), progress=False, log=lambda *a: None)
    assert set(metrics["test"]["accuracy"]) <= {"what", "exists", "first", "last", "after", "when", "colour",
                                                 "count", "cant_tell"}
    model = VoCoModel.from_pretrained(tmp_path / "export")
    assert model.voco.prompt.segment_label == " {start}" and model.voco.answer_segments == 64
    assert (tmp_path / "export" / "MODEL_CARD.md").read_text().count("evidence") >= 1


def test_renamed_videos_say_the_same_about_other_names():
    """A renamed video swaps names one for one in its evidence and its truth: the answers still read off the
    evidence, slots show the new name's hypernyms, the person slot keeps its name, and no hypernym is drawn."""
    from voco.evidence.tower import FIELDS, HYPERNYMS, NAME
    from voco.train.scene_videos import Renamer

    words = ("animal", "cat", "dog", "person", "taxi", "tiger", "vehicle", "zebra")
    hypernyms = {"cat": ("animal",), "dog": ("animal",), "taxi": ("vehicle",), "tiger": ("cat", "animal"),
                 "zebra": ("animal",)}
    index = {w: i for i, w in enumerate(words)}

    def slot(name, hyps=()):
        row = np.full(FIELDS, -1.0, dtype=np.float32)
        row[NAME], row[1] = index[name], 0.9
        row[HYPERNYMS:HYPERNYMS + len(hyps)] = [index[h] for h in hyps]
        return row

    segments = [np.stack([slot("person"), slot("dog", ("animal",))])[None],
                np.stack([slot("taxi", ("vehicle",)), slot("dog", ("animal",))])[None]]
    truths = [SceneTruth((Thing("dog", ("animal",), "brown", 1),), people=1),
              SceneTruth((Thing("taxi", ("vehicle",), "yellow", 2),))]
    renamer = Renamer(words, hypernyms, index["person"])
    assert sorted(words[i] for i in renamer.pool) == ["dog", "taxi", "tiger", "zebra"]  # "cat" is a hypernym
    for seed in range(10):
        out, renamed = renamer(segments, truths, np.random.default_rng(seed))
        names = [[words[int(r[NAME])] for r in s[0]] for s in out]
        assert names[0][0] == "person" and names[0][1] == names[1][1] and names[1][0] != names[1][1]
        for s in out:
            for r in s[0]:
                shown = tuple(words[int(h)] for h in r[HYPERNYMS:] if h >= 0)
                assert shown == hypernyms.get(words[int(r[NAME])], ())
        assert renamed[0].things[0].name == names[0][1] and renamed[1].things[0].name == names[1][0]
        assert renamed[1].things[0].colour == "yellow" and renamed[1].things[0].count == 2
        assert renamed[0].people == 1
    assert segments[0][0][1][NAME] == index["dog"]  # the bank's arrays are left as they were


def test_absent_sets_how_often_a_thing_question_is_about_something_not_there():
    rng = np.random.default_rng(0)
    for absent, low, high in ((0.0, 0, 0), (0.5, 0.4, 0.6), (1.0, 1, 1)):
        when = [qa for qa in (ask("when", _video(), rng, absent=absent) for _ in range(300)) if qa is not None]
        share = np.mean([qa.answer.startswith("There is no") for qa in when])
        assert low <= share <= high, (absent, share)
