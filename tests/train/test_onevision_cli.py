"""End to end on the CPU: a tiny random LLaVA-OneVision checkpoint (Qwen2 LM, SigLIP) and a tiny LLaVA-format
dataset (PNG/JPEG images and an mp4) train through `python -m voco.train`'s entry point, save, reload with
`VoCoModel.from_pretrained`, and answer."""

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from tests.fixtures.videos import pattern_frames, write_video
from voco import VoCoModel
from voco.families import family_of
from voco.tiny import tiny_family_config, tiny_tokenizer
from voco.train.__main__ import main
from voco.video.frames import decode_video_segments


def _onevision_checkpoint(folder):
    """A plain OneVision folder as transformers saves it (no voco.json, no <voco> token, no <bos>)."""
    tokenizer = tiny_tokenizer(with_bos=False, with_voco=False)
    config = tiny_family_config("llava_onevision", vocab_size=len(tokenizer))
    torch.manual_seed(0)
    family_of(config).model_class(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _dataset(root):
    """Six images (two formats, three sizes) and a 2 s video, LLaVA conversation JSON, one chat multi-turn."""
    (root / "images").mkdir(parents=True)
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
    items = []
    for i, (name, rgb) in enumerate(list(colours.items()) * 2):
        size = [(24, 40), (40, 24), (32, 32)][i % 3]
        pixels = np.full((*size, 3), rgb, np.uint8)
        path = root / "images" / f"{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(pixels).save(path)
        chat = [{"from": "human", "value": "<image>\nwhat color is it?"}, {"from": "gpt", "value": name}]
        if i == 0:
            chat += [{"from": "human", "value": "is it bright?"}, {"from": "gpt", "value": "yes"}]
        items.append({"id": f"img{i}", "image": f"images/{i}.{'png' if i % 2 else 'jpg'}", "conversations": chat})
    write_video(root / "clip.mp4", pattern_frames(20, 48, 64), fps=10)
    items.append({"id": "clip", "video": "clip.mp4", "conversations": [
        {"from": "human", "value": "<video>\nwhat moves?"}, {"from": "gpt", "value": "a white square"}]})
    (root / "train.json").write_text(json.dumps(items))
    return root / "train.json"


def _video_data(root):
    """Stage-3 data: three clips with captions (WebVid style) and Video-ChatGPT questions on the same clips."""
    root.mkdir(parents=True)
    rows = []
    for i in range(3):
        write_video(root / f"{i}.mp4", pattern_frames(10 + 5 * i, 48, 64, seed=i), fps=10)
        (root / f"{i}.txt").write_text(f"a white square moves {['left', 'right', 'up'][i]}")
        rows += [{"video_id": str(i), "q": "how long is it?", "a": f"{1 + i * 0.5} seconds"},
                 {"video_id": str(i), "q": "what moves?", "a": "a white square"}]
    (root / "instruct.json").write_text(json.dumps(rows))
    return root


def _run(tmp_path, name, config) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"# python -m voco.train --config {path}\n" + yaml.safe_dump(config))
    assert main(["--config", str(path), "--no-progress"]) == 0


def _losses(out) -> list[float]:
    return [h["loss"] for h in json.loads((out / "last" / "trainer_state.json").read_text())["history"]]


COMMON = {"seed": 0, "eval_every": 1000, "save_every": 1000, "eval_max_new_tokens": 4, "threads": 1}


def test_onevision_trains_through_the_cli_saves_reloads_and_answers(tmp_path):
    """Stage 2 (images + a video, LLaVA JSON) from a plain checkpoint, then stage 3 (WebVid + Video-ChatGPT)
    from stage 2's output, both through the CLI; each saved model reloads and answers."""
    checkpoint = _onevision_checkpoint(tmp_path / "onevision")
    data = _dataset(tmp_path / "data")
    image_out, video_out = tmp_path / "image", tmp_path / "video"
    stage2 = {
        **COMMON, "output_dir": str(image_out),
        "model": {"init": "pretrained", "path": str(checkpoint),
                  "voco": {"k": 1, "frames_per_segment": 2, "segment_seconds": 1.0}},
        "data": {"dataset": "llava_json", "options": {"json": str(data), "val_items": 1, "test_items": 1},
                 "videos_per_batch": 3, "val_videos": 1, "test_videos": 1, "train_videos": 5},
        "stages": [{"name": "voco", "steps": 8, "lr": 3e-3, "warmup_steps": 1,
                    "train": ["projector", "lm", "voco_embedding"]}],
    }
    with pytest.warns(UserWarning, match="not been VoCo-tuned"):  # a plain checkpoint gets a new <voco> token
        _run(tmp_path, "stage2", stage2)
    losses = _losses(image_out)
    assert len(losses) == 8 and np.mean(losses[-3:]) < np.mean(losses[:3])  # it learned something

    model = VoCoModel.from_pretrained(image_out / "final")
    assert type(model.config).model_type == "llava_onevision" and model.voco.voco_tuned
    plain = family_of(model.config).model_class.from_pretrained(checkpoint)
    lm_weight = model.lm.model.layers[0].self_attn.q_proj.weight
    theirs = plain.model.language_model.layers[0].self_attn.q_proj.weight
    assert not torch.equal(lm_weight, theirs)  # the decoder trained and the trained weights were saved
    segments = decode_video_segments(tmp_path / "data" / "clip.mp4", segment_seconds=1.0, frames_per_segment=2)
    answer = model.answer("what moves?", model.compress(segments), max_new_tokens=6)
    assert isinstance(answer, str) and answer.strip()
    image = np.asarray(Image.open(tmp_path / "data" / "images" / "1.png").convert("RGB"))
    assert model.answer("what color is it?", model.compress([np.stack([image, image])]), max_new_tokens=4).strip()

    videos = _video_data(tmp_path / "videos")
    split = {"val_items": 1, "test_items": 1}
    stage3 = {
        **COMMON, "output_dir": str(video_out),
        "model": {"init": "pretrained", "path": str(image_out / "final")},
        "data": {"dataset": "mix", "options": {"sources": [
            {"dataset": "webvid", "options": {"folder": str(videos), **split}},
            {"dataset": "videochatgpt", "options": {"json": str(videos / "instruct.json"),
                                                    "video_folder": str(videos), **split}}]},
                 "questions_per_video": 2, "videos_per_batch": 2, "val_videos": 1, "test_videos": 1,
                 "train_videos": 2},
        "stages": [{"name": "video", "steps": 3, "lr": 1e-3, "train": ["projector", "lm", "voco_embedding"]}],
    }
    _run(tmp_path, "stage3", stage3)
    assert len(_losses(video_out)) == 3
    video_model = VoCoModel.from_pretrained(video_out / "final")
    assert video_model.fingerprint != model.fingerprint
    assert video_model.answer("what moves?", video_model.compress(segments), max_new_tokens=6).strip()


def test_cli_names_the_missing_data_path(tmp_path):
    checkpoint = _onevision_checkpoint(tmp_path / "onevision")
    config = {
        "output_dir": str(tmp_path / "run"),
        "model": {"init": "pretrained", "path": str(checkpoint), "voco": {"k": 1, "frames_per_segment": 2}},
        "data": {"dataset": "llava_json", "options": {"json": str(tmp_path / "LLaVA-665K.json")}},
        "stages": [{"name": "voco", "steps": 1}],
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(FileNotFoundError, match=r"data.options.json: no such file or folder .*LLaVA-665K.json"), \
            pytest.warns(UserWarning, match="not been VoCo-tuned"):
        main(["--config", str(path), "--no-progress"])


@pytest.mark.slow
def test_readme_walkthrough_on_tiny_stand_ins(tmp_path, capsys):
    """The path of docs/models.md end to end: stage 2 -> stage 3 -> `python -m ingest` -> MSVD-QA evaluation (exact)."""
    from evaluation.cli import main as evaluate
    from ingest.__main__ import main as ingest

    test_onevision_trains_through_the_cli_saves_reloads_and_answers(tmp_path)
    model = str(tmp_path / "video" / "final")
    msvd = tmp_path / "MSVD_Zero_Shot_QA"
    (msvd / "videos").mkdir(parents=True)
    questions, answers = [], []
    for i in range(2):
        write_video(msvd / "videos" / f"clip{i}.avi", pattern_frames(15, 48, 64, seed=i), fps=10, fmt="avi",
                    codec="mpeg4")
        questions.append({"video_name": f"clip{i}", "question_id": i, "question": "what moves?"})
        answers.append({"question_id": i, "answer": "square"})
    (msvd / "test_q.json").write_text(json.dumps(questions))
    (msvd / "test_a.json").write_text(json.dumps(answers))
    home = tmp_path / "home"
    assert ingest([str(msvd / "videos"), "--home", str(home), "--model", model, "--no-progress"]) == 0
    out = tmp_path / "eval"
    assert evaluate(["--dataset", "msvd", "--root", str(msvd), "--model", model, "--home", str(home),
                     "--judge", "exact", "--out", str(out), "--no-progress", "--max-new-tokens", "6"]) == 0
    report = json.loads((out / "metrics-exact.json").read_text())
    assert report["overall"]["questions"] == 2
