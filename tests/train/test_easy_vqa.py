"""easy-VQA behind the dataset protocol (the easy-vqa package's real files), and a short training run on it."""

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.train.conftest import tiny_dict
from voco.train.build import build_model
from voco.train.config import ConfigError, config_from_dict, load_config
from voco.train.datasets import DATASETS, make_dataset
from voco.train.loop import train
from voco.train.readers import MixData, easy_vqa
from voco.train.readers.easy_vqa import COLORS, KIND_OF_ANSWER, SHAPES, EasyVQAData, EasyVQAOptions

ROOT = Path(__file__).resolve().parents[2]
KINDS = {"shape", "color", "yes_no"}


def _config(tmp_path, options=None, **data):
    model = {**tiny_dict(tmp_path)["model"], "image_size": 64, "patch_size": 16}  # easy-VQA's own 64 px
    return config_from_dict(tiny_dict(tmp_path, model=model, data={
        "dataset": "easy_vqa", "options": options or {}, "questions_per_video": 4, "videos_per_batch": 2,
        "val_videos": 2, "test_videos": 2, **data}))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    config = _config(tmp_path_factory.mktemp("easy_vqa"))
    return config, build_model(config.model)


def _image_ids(dataset) -> set[str]:
    return {item.media.path.stem for item in dataset.items}


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_each_split_loads_images_as_one_still_segment_with_its_questions(setup, split):
    config, model = setup
    dataset = make_dataset(config, model, split)
    assert DATASETS["easy_vqa"] is EasyVQAData and isinstance(dataset, EasyVQAData)
    assert f"/{'test' if split == 'test' else 'train'}/images/" in str(dataset.items[0].media.path)
    for index in (0, 1, len(dataset.items) - 1):
        example = dataset.load(index)
        assert len(example.segments) == 1
        frames = example.segments[0]
        assert frames.dtype == np.uint8 and frames.shape == (2, 64, 64, 3)  # [F, H, W, 3], frames_per_segment 2
        picture = np.array(Image.open(dataset.items[index].media.path).convert("RGB"))
        assert np.array_equal(frames[0], picture) and np.array_equal(frames[1], picture)  # 64 px: no resampling
        assert 1 <= len(example.qas) <= config.data.questions_per_video
        for qa in example.qas:
            assert qa.question.endswith("?") and qa.answer in KIND_OF_ANSWER
            assert qa.type == KIND_OF_ANSWER[qa.answer]
        assert example.video_id.startswith(f"easy_vqa-{'test' if split == 'test' else 'train'}-")
    again = make_dataset(config, model, split).load(3)  # deterministic: the same item, pixels and questions
    first = dataset.load(3)
    assert again.video_id == first.video_id and again.qas == first.qas
    assert np.array_equal(again.segments[0], first.segments[0])


def test_splits_are_disjoint_and_val_is_the_last_train_images(setup):
    config, model = setup
    train_ids, val_ids = (_image_ids(make_dataset(config, model, s)) for s in ("train", "val"))
    assert len(val_ids) == 200 and len(train_ids) == 3800 and not train_ids & val_ids
    assert max(int(i) for i in train_ids) < min(int(i) for i in val_ids)
    test = make_dataset(config, model, "test")
    assert len(_image_ids(test)) == 1000
    kinds = {qa.type for i in range(40) for qa in test.load(i).qas}
    assert kinds == KINDS


def test_options_shape_the_items(tmp_path):
    config = _config(tmp_path, {"val_images": 10, "max_questions": 2, "max_images": 30, "answers": "sentence"})
    model = build_model(config.model)
    train_split = make_dataset(config, model, "train")
    assert len(train_split.items) == 30 and len(make_dataset(config, model, "val").items) == 10  # 2 <= 4 per item
    example = train_split.load(0)
    assert len(example.qas) == 2 and [qa.type for qa in example.qas][0] == "shape"  # the package lists it first
    answers = {qa.answer for i in range(30) for qa in train_split.load(i).qas}
    assert answers <= {f"{w.capitalize()}." for w in (*SHAPES, *COLORS, "yes", "no")} and answers


@pytest.mark.parametrize("options, field", [
    ({"val_images": 0}, "val_images"), ({"max_questions": -1}, "max_questions"), ({"max_images": -2}, "max_images"),
    ({"answers": "paragraph"}, "answers"), ({"val_imgs": 5}, "val_imgs"), ({"val_images": "many"}, "val_images"),
])
def test_bad_options_fail_naming_the_field(tmp_path, options, field):
    with pytest.raises(ConfigError, match=rf"data\.options.*{field}"):
        _config(tmp_path, options)
    with pytest.raises(ConfigError, match="leave data.world and data.captions unset"):
        _config(tmp_path, captions=True)


def test_missing_package_says_how_to_install(setup, monkeypatch):
    config, model = setup
    monkeypatch.setattr(easy_vqa, "_CATALOGUES", {})
    monkeypatch.setitem(sys.modules, "easy_vqa", None)  # import easy_vqa now fails
    with pytest.raises(ModuleNotFoundError, match="pip install easy-vqa"):
        make_dataset(config, model, "train")


def test_mix_takes_easy_vqa_as_a_source():
    catalogue = MixData.catalogue(MixData.Options(sources=[{"dataset": "easy_vqa", "options": {"max_images": 5}}]), 4)
    assert {split: len({i.media.path for i in items}) for split, items in catalogue.splits.items()} == \
        {"train": 5, "val": 5, "test": 5}


def test_two_training_steps_on_easy_vqa_write_a_checkpoint(tmp_path):
    config = _config(tmp_path, {"max_images": 20, "val_images": 20}, train_videos=60)  # 20 images x 3 items
    config.stages[0].steps = 2
    logs: list[str] = []
    metrics = train(config, resume=False, progress=False, log=logs.append)
    final = Path(config.output_dir) / "final"
    assert (final / "model.safetensors").is_file() and (final / "metrics.json").is_file()
    assert metrics["steps"] == 2 and set(metrics["test"]["accuracy"]) <= KINDS and metrics["blind_baseline"] == {}
    assert metrics["validation"]["step"] == 2 and set(metrics["validation"]["accuracy"]) <= KINDS
    assert any(line.startswith("test (8 questions)") for line in logs)  # 2 test items x 4 questions


def test_recipe_loads_and_its_train_videos_is_one_epoch():
    config = load_config(ROOT / "configs/easy_vqa.yaml")
    assert config.command == "python -m voco.train --config configs/easy_vqa.yaml"
    assert config.data.dataset == "easy_vqa" and config.model.init == "pretrained" and config.model.path == "synthetic"
    options = EasyVQAOptions(**config.data.options)
    catalogue = EasyVQAData.catalogue(options, config.data.questions_per_video)
    assert config.data.train_videos == len(catalogue.splits["train"])
