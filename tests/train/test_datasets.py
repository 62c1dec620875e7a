"""The dataset protocol, the class-mixture world, and training an assembled model (tiny stand-in) on it."""

from pathlib import Path

import numpy as np
import pytest
import torch

from voco import VoCoModel
from voco.tiny import TINY_ASSEMBLY_VOCO, TINY_CLASSES, tiny_assembled_model, tiny_assembly_spec
from voco.train.class_mixture import KINDS, THROUGHOUT, WHEN_ANSWERS, ClassMixtureSpec, ClassMixtureWorld, when_answer
from voco.train.config import ConfigError, config_from_dict
from voco.train.datasets import DATASETS, ClassMixtureData, SyntheticWorldData
from voco.train.loop import train
from voco.train.vision_inputs import segment_vision_embeds

NAMES = ["Egyptian cat", "tabby", "espresso", "coffee mug", "moped", "space shuttle", "daisy", "stage"]


def _world(similar: bool = False, **spec) -> ClassMixtureWorld:
    head = torch.randn(len(NAMES), 64, generator=torch.Generator().manual_seed(0))
    if similar:
        head[1] = head[0] + 0.5 * head[1]  # "tabby" looks like "Egyptian cat" to this classifier
    return ClassMixtureWorld(NAMES, head, frames_per_segment=1, spec=ClassMixtureSpec(**spec),
                             questions_per_video=6, seed=3)


def test_class_mixture_videos_are_deterministic_and_consistent():
    world = _world()
    a, b = world.load("train", 7), world.load("train", 7)
    assert [q.answer for q in a.qas] == [q.answer for q in b.qas]
    assert all(np.array_equal(x, y) for x, y in zip(a.segments, b.segments, strict=True))
    assert world.load("val", 7).video_id != a.video_id
    assert sorted(q.type for q in a.qas) == sorted(KINDS)  # distinct kinds while there are enough
    for index in range(30):
        example = world.load("train", index)
        probs = np.stack(example.segments)  # [T, 1 frame, 1, classes]
        np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
        by_kind = {q.type: q for q in example.qas}
        first = NAMES[int(probs[0, 0, 0].argmax())]
        if probs[0, 0, 0].max() > 0.5:  # a confident first frame shows the first scene
            assert first.lower() in by_kind["first"].answer.lower()
            assert first.lower() in by_kind["what"].answer.lower()
        assert by_kind["exists"].answer in ("Yes.", "No.")


def test_drift_names_frames_by_nearby_classes_and_leaves_undrifted_videos_alone():
    plain, zero = _world(similar=True), _world(similar=True, drift=0.0, drift_neighbours=3)
    assert all(np.array_equal(x, y) for x, y in zip(plain.load("train", 4).segments, zero.load("train", 4).segments,
                                                      strict=True))  # drift 0 draws nothing: old videos stay
    sure = dict(sharpness=(40.0, 40.0), noise=(0.0, 0.0), second_object=0.0)
    drifting = _world(similar=True, drift=1.0, drift_neighbours=1, **sure)
    assert int(drifting.nearest[0, 0]) == 1  # "tabby" is the nearest class to "Egyptian cat"
    rng = np.random.default_rng(0)
    assert all(int(drifting.frame(0, rng).argmax()) == 1 for _ in range(10))  # always called "tabby"
    assert int(_world(similar=True, **sure).frame(0, rng).argmax()) == 0
    for bad in ({"drift": 1.5}, {"drift_neighbours": 0}):
        with pytest.raises(ValueError, match="drift"):
            ClassMixtureSpec(**bad)


def test_min_scenes_makes_first_and_last_differ():
    world = _world(min_scenes=2, min_segments=2, max_segments=4)
    for index in range(20):
        by_kind = {q.type: q.answer for q in world.load("train", index).qas}
        assert by_kind["first"] != by_kind["last"] and ", then " in by_kind["what"]
    assert [q.answer for q in _world(min_scenes=1).load("train", 5).qas] == [
        q.answer for q in _world().load("train", 5).qas]  # the default draws as before
    world = _world(kinds=("exists", "exists", "what", "last"))
    world.questions_per_video = 4  # as many as listed kinds: each listed kind once, so "exists" twice
    for index in range(5):
        qas = world.load("train", index).qas
        assert sorted(q.type for q in qas) == ["exists", "exists", "last", "what"]
    with pytest.raises(ValueError, match="min_scenes"):
        ClassMixtureSpec(min_scenes=3, min_segments=2)
    with pytest.raises(ValueError, match="min_scenes"):
        ClassMixtureSpec(min_scenes=4, max_scenes=3, min_segments=4)


def test_absent_things_are_unlike_the_video():
    world = _world(similar=True)
    rng = np.random.default_rng(0)
    assert {world.absent([0], rng) for _ in range(50)} <= set(range(2, 8))  # never "tabby" (similar)
    assert world.absent(list(range(8)), rng) in range(8)  # nothing qualifies: the least similar, no endless search


def test_when_answers():
    assert when_answer([(0, 6)], 0, 6) == THROUGHOUT
    assert when_answer([(0, 2), (2, 6)], 0, 6) == WHEN_ANSWERS[0]
    assert when_answer([(0, 2), (2, 4), (4, 6)], 1, 6) == WHEN_ANSWERS[1]
    assert when_answer([(0, 2), (2, 6)], 1, 6) == WHEN_ANSWERS[2]


def test_features_take_the_same_path_as_frames(tmp_path):
    model = tiny_assembled_model(tmp_path)
    frames = [np.random.default_rng(i).integers(0, 256, (2, 40, 48, 3), dtype=np.uint8) for i in range(3)]
    with torch.no_grad():
        features = [f.numpy() for f in model.vision_features(frames).reshape(3, 2, 1, -1)]
    torch.testing.assert_close(segment_vision_embeds(model, features), segment_vision_embeds(model, frames))


def _assembled_config(tmp_path, **top):
    spec = tiny_assembly_spec(tmp_path / "parts")
    data = {
        "output_dir": str(tmp_path / "run"), "eval_every": 1000, "save_every": 1000, "eval_max_new_tokens": 4,
        "model": {"init": "assembled", "assembly": spec.to_dict(), "voco": dict(TINY_ASSEMBLY_VOCO)},
        "data": {"dataset": "class_mixture", "options": {"max_segments": 4}, "questions_per_video": 3,
                 "videos_per_batch": 2, "val_videos": 2, "test_videos": 2},
        "stages": [{"name": "mixture", "steps": 4, "lr": 1e-2, "train": ["projector", "voco_embedding", "adapters"]}],
    }
    data.update(top)
    return config_from_dict(data)


def test_assembled_model_trains_on_class_mixtures_and_exports(tmp_path):
    config = _assembled_config(tmp_path, export_dir=str(tmp_path / "export"))
    assert DATASETS[config.data.dataset] is ClassMixtureData
    metrics = train(config, resume=False, progress=False, log=lambda *_: None)
    assert set(metrics["test"]["accuracy"]) <= set(KINDS) and metrics["blind_baseline"] == {}
    exported = tmp_path / "export"
    assert (exported / "assembly.json").is_file() and not (exported / "model.safetensors").exists()
    model = VoCoModel.from_pretrained(exported)
    before = tiny_assembled_model(tmp_path / "parts")
    assert model.fingerprint != before.fingerprint  # trained parts moved and were saved
    assert "class_mixture" in (exported / "MODEL_CARD.md").read_text()
    history = (Path(config.output_dir) / "last" / "trainer_state.json").read_text()
    assert '"stage": "mixture"' in history


def test_dataset_configs_fail_loudly(tmp_path):
    with pytest.raises(ConfigError, match="data.dataset must be one of"):
        _assembled_config(tmp_path, data={"dataset": "imagenet"})
    with pytest.raises(ConfigError, match="data.options"):
        _assembled_config(tmp_path, data={"dataset": "class_mixture", "options": {"scenes": 3}})
    with pytest.raises(ConfigError, match="need the synthetic world"):
        _assembled_config(tmp_path, stages=[{"name": "s", "steps": 1, "probe_weight": 0.5}])
    with pytest.raises(ConfigError, match="model.assembly is required"):
        _assembled_config(tmp_path, model={"init": "assembled"})
    with pytest.raises(ConfigError, match="not options"):
        config_from_dict({"model": {}, "data": {"options": {"x": 1}}, "stages": [{"name": "s", "steps": 1}]})
    assert SyntheticWorldData.synthetic_world and len(TINY_CLASSES) == 8


RECIPES = {"configs/llava7b_voco_image.yaml": "llava_json", "configs/llava7b_voco_video.yaml": "mix"}


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_7b_recipes_parse_validate_and_name_missing_paths(recipe, tmp_path, monkeypatch):
    """The stage-2 / stage-3 recipes load as written (paths are resolved when training starts) and a missing
    path fails with the option and the path it names."""
    from voco.tiny import tiny_model
    from voco.train.build import build_model
    from voco.train.config import load_config

    root = Path(__file__).resolve().parents[2]
    config = load_config(root / recipe)
    assert config.command.startswith("torchrun") and recipe in config.command
    assert config.data.dataset == RECIPES[recipe] and config.engine.kind == "fsdp"
    assert config.engine.precision == "bf16" and config.engine.gradient_checkpointing and config.resume == "auto"
    stage = config.stages[-1]
    assert stage.lr == 2e-5 and stage.warmup_steps == round(0.03 * stage.steps)
    monkeypatch.chdir(tmp_path)  # relative paths: nothing of the recipe exists here
    with pytest.raises(FileNotFoundError, match=f"no checkpoint at '{config.model.path}'"):
        build_model(config.model)
    first = "data.options.json" if RECIPES[recipe] == "llava_json" else r"data.options.sources\[0\].options.csv"
    with pytest.raises(FileNotFoundError, match=rf"{first}: no such file or folder 'data/"):
        DATASETS[config.data.dataset].build(config, tiny_model(), None, "train")


def test_image_recipe_is_two_epochs_of_llava_665k():
    from voco.train.config import load_config

    config = load_config(Path(__file__).resolve().parents[2] / "configs/llava7b_voco_image.yaml")
    global_batch = 8 * config.data.videos_per_batch  # the command's --nproc_per_node 8
    assert global_batch == 128 and config.stages[0].steps == -(-2 * config.data.train_videos // global_batch)  # ceil


def test_answers_name_a_class_by_its_one_token_word_when_asked():
    """answer_names: word -> "A cat." for "Egyptian cat" when the LM reads " cat" as one token; whole names
    otherwise; questions keep the full names."""
    from voco.train.class_mixture import answer_name

    vocabulary = {" cat", " mug", " shuttle", " stage"}  # what a BPE vocabulary might hold as single tokens

    def tokenizer(text, add_special_tokens=False):  # the call answer_name makes of a transformers tokenizer
        return {"input_ids": [0] if text in vocabulary else list(range(len(text)))}

    expected = {"Egyptian cat": "cat", "tabby": "tabby", "espresso": "espresso", "coffee mug": "mug",
                "moped": "moped", "space shuttle": "shuttle", "daisy": "daisy", "stage": "stage"}
    assert {n: answer_name(n, tokenizer) for n in NAMES} == expected
    head = torch.randn(len(NAMES), 64, generator=torch.Generator().manual_seed(0))
    kinds = ("first", "exists")
    world = ClassMixtureWorld(NAMES, head, 1, ClassMixtureSpec(answer_names="word", kinds=kinds),
                              questions_per_video=2, seed=3, answer_names=[expected[n] for n in NAMES])
    full = ClassMixtureWorld(NAMES, head, 1, ClassMixtureSpec(kinds=kinds), questions_per_video=2, seed=3)
    for i in range(20):
        asked, said = sorted(world.load("train", i).qas, key=lambda qa: qa.type)  # exists, first
        asked_full, whole = sorted(full.load("train", i).qas, key=lambda qa: qa.type)
        shown = next(n for n in NAMES if n.lower() in whole.answer.lower())
        assert expected[shown] in said.answer and (shown == expected[shown] or shown not in said.answer)
        assert asked.question == asked_full.question  # questions name things as before
    with pytest.raises(ValueError, match="answer_names must be one of"):
        ClassMixtureSpec(answer_names="short")
