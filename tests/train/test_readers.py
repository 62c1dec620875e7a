"""Real-data readers (voco.train.readers) on tiny files made here: real PNG/JPEG images, real mp4s (PyAV)."""

import json
import logging

import av
import numpy as np
import pytest
import torch
from PIL import Image

from tests.fixtures.videos import pattern_frames, write_video
from tests.train.conftest import tiny_dict
from voco.tiny import tiny_model
from voco.train.config import ConfigError, config_from_dict
from voco.train.data import encode
from voco.train.datasets import DATASETS
from voco.train.readers import LlavaJsonData, MixData, VideoChatGPTData, WebVidData
from voco.train.readers.formats import CAPTION_PROMPTS
from voco.train.readers.media import BAD_ITEM, MISSING, NO_FRAMES, NO_MEDIA, UNDECODABLE, Media
from voco.video.frames import decode_video_segments


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama", image_resize="pad", frames_per_segment=2, segment_seconds=1.0)


def _image(path, size, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def _empty_video(path):
    """A valid AVI whose video stream holds no frames."""
    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        out.start_encoding()
        out.mux(stream.encode(None))
    return path


def _config(tmp_path, dataset, options, **data):
    return config_from_dict(tiny_dict(tmp_path, data={"dataset": dataset, "options": options,
                                                      "videos_per_batch": 2, "val_videos": 1, "test_videos": 1,
                                                      **data}))


def _chat(*turns, media="<image>"):
    out = []
    for i, (q, a) in enumerate(turns):
        out += [{"from": "human", "value": f"{media}\n{q}" if i == 0 else q}, {"from": "gpt", "value": a}]
    return out


@pytest.fixture
def llava_folder(tmp_path):
    root = tmp_path / "llava"
    (root / "images").mkdir(parents=True)
    _image(root / "images" / "wide.png", (24, 40), 0)
    _image(root / "images" / "tall.jpg", (40, 20), 1)
    _image(root / "images" / "square.png", (32, 32), 2)
    (root / "images" / "broken.jpg").write_text("not a picture")
    write_video(root / "clip.mp4", pattern_frames(25, 48, 64), fps=10)  # 2.5 s -> 3 segments of 1 s
    _empty_video(root / "empty.avi")
    items = [
        {"id": "wide", "image": "images/wide.png",
         "conversations": _chat(("what is it?", "a pattern"), ("which colour?", "grey"))},
        {"id": "tall", "image": "images/tall.jpg", "conversations": _chat(("describe it.", "noise"))},
        {"id": "square", "image": "images/square.png", "conversations": _chat(("and this?", "more noise"))},
        {"id": "clip", "video": "clip.mp4", "conversations": _chat(("what moves?", "a square"), media="<video>")},
        {"id": "broken", "image": "images/broken.jpg", "conversations": _chat(("what?", "nothing"))},
        {"id": "empty", "video": "empty.avi", "conversations": _chat(("what?", "nothing"), media="<video>")},
        {"id": "gone", "image": "images/gone.png", "conversations": _chat(("what?", "nothing"))},
        {"id": "text-only", "conversations": _chat(("hello", "hi"), media="")},
        {"id": "upside-down", "image": "images/square.png",
         "conversations": [{"from": "gpt", "value": "hi"}, {"from": "human", "value": "hello"}]},
        {"id": "two-images", "image": ["images/wide.png", "images/tall.jpg"], "conversations": _chat(("?", "!"))},
        "not an object",
    ]
    (root / "chat.json").write_text(json.dumps(items))
    return root


def _llava(tmp_path, llava_folder, **options):
    return _config(tmp_path, "llava_json", {"json": str(llava_folder / "chat.json"), "val_items": 1,
                                            "test_items": 1, "split_seed": 3, **options})


def test_llava_json_images_videos_and_bad_items(tmp_path, llava_folder, model, caplog):
    config = _llava(tmp_path, llava_folder)
    assert DATASETS[config.data.dataset] is LlavaJsonData
    with caplog.at_level(logging.WARNING, logger="voco.train.readers"):
        splits = {s: LlavaJsonData.build(config, model, None, s) for s in ("train", "val", "test")}
    problems = splits["train"].catalogue.problems
    assert dict(problems.counts) == {MISSING: 1, NO_MEDIA: 1, BAD_ITEM: 3}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3  # one line per kind, found when the file is read
    assert any("skipped 3 item(s), bad item" in line and "upside-down" in line and "#10" in line for line in lines)
    assert any("missing file" in line and "gone" in line for line in lines)
    ids = sorted(item.id for split in splits.values() for item in split.items)
    assert ids == ["broken", "clip", "empty", "square", "tall", "wide"]  # media problems show when loaded
    assert sum(len(s) for s in splits.values()) == 6 and len(splits["val"]) == len(splits["test"]) == 1

    side = model.config.vision_config.image_size
    data = splits["train"]
    data.items = _in_file_order(splits)
    by_id = {}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="voco.train.readers"):
        for index in range(len(data)):
            example = data.load(index)
            by_id[example.video_id] = example
            for seg in example.segments:
                assert seg.dtype == np.uint8 and seg.shape == (2, side, side, 3)
    assert set(by_id) == {"clip", "square", "tall", "wide"}  # broken and empty were skipped for the next item
    counts = data.catalogue.problems.counts
    assert counts[UNDECODABLE] == 1 and counts[NO_FRAMES] >= 1
    logged = sorted(r.getMessage().split("; e.g.")[0] for r in caplog.records)
    assert logged == ["llava_json: skipped 1 item(s), no frames", "llava_json: skipped 1 item(s), undecodable"]
    assert any("broken (" in r.getMessage() for r in caplog.records)
    assert len(by_id["clip"].segments) == 3
    assert by_id["wide"].qas[0].question == "which colour?"
    assert by_id["wide"].histories == [[("what is it?", "a pattern")]]
    assert by_id["tall"].qas[0].question == "describe it."  # the <image> tag and its newline are gone


def _in_file_order(splits) -> list:
    order = ["wide", "tall", "square", "clip", "broken", "empty", "gone"]
    items = [item for split in splits.values() for item in split.items]
    return sorted(items, key=lambda item: order.index(item.id))


def test_every_bad_media_kind_is_counted_and_skipped(tmp_path, llava_folder, model):
    config = _llava(tmp_path, llava_folder, check_files=False, val_items=1, test_items=1)
    splits = {s: LlavaJsonData.build(config, model, None, s) for s in ("train", "val", "test")}
    data = splits["train"]
    data.items = _in_file_order(splits)
    for index in range(len(data)):
        data.load(index)
    assert {k: v for k, v in data.catalogue.problems.counts.items() if k != BAD_ITEM and k != NO_MEDIA} == \
        {MISSING: 1, UNDECODABLE: 1, NO_FRAMES: 1}  # check_files off: the missing file is found while loading


def test_frames_are_what_the_model_itself_would_read(tmp_path, llava_folder, model):
    """The squared uint8 frames preprocess to exactly the pixels of the original image / decoded video."""
    data = LlavaJsonData.build(_llava(tmp_path, llava_folder, val_items=1, test_items=1), model, None, "train")
    image = np.asarray(Image.open(llava_folder / "images" / "wide.png").convert("RGB"))
    segment = data.loader.segments(Media("image", llava_folder / "images" / "wide.png"))
    torch.testing.assert_close(model.pixel_values(segment), model.pixel_values([np.stack([image, image])]),
                               rtol=0, atol=0)
    clip = data.loader.segments(Media("video", llava_folder / "clip.mp4"))
    ingest = decode_video_segments(llava_folder / "clip.mp4", segment_seconds=1.0, frames_per_segment=2,
                                   max_side=2 * model.config.vision_config.image_size)
    assert len(clip) == len(ingest) == 3
    torch.testing.assert_close(model.pixel_values(clip), model.pixel_values(ingest), rtol=0, atol=0)


def test_multi_turn_loss_is_on_answer_tokens_only(tmp_path, llava_folder, model):
    data = LlavaJsonData.build(_llava(tmp_path, llava_folder), model, None, "train")
    data.items = [item for item in data.catalogue.splits["train"] + data.catalogue.splits["val"]
                  + data.catalogue.splits["test"] if item.id == "wide"]
    example = data.load(0)
    batch = encode(model, [example])
    (row,), (spans,) = batch.row_ids, batch.row_answer_spans
    assert len(spans) == 2 and spans[-1] == (batch.row_answer_start[0], len(row))
    said = [model.tokenizer.decode(row[a:b]) for a, b in spans]
    assert said == [" a pattern</s>", " grey</s>"]
    rest = [t for i, t in enumerate(row) if not any(a <= i < b for a, b in spans)]
    assert "what is it?" in model.tokenizer.decode(rest) and "pattern" not in model.tokenizer.decode(rest)
    assert batch.row_ids[0][: batch.row_answer_start[0]] == model.prompt_ids("which colour?",
                                                                             [("what is it?", "a pattern")])[1]


def test_videochatgpt_groups_questions_by_video(tmp_path, model, caplog):
    videos = tmp_path / "anet"
    videos.mkdir()
    for name, n in [("v_a", 12), ("v_b", 8), ("v_c", 6)]:
        write_video(videos / f"{name}.mp4", pattern_frames(n), fps=10)
    rows = [{"video_id": "v_a", "q": f"question {i}?", "a": f"answer {i}"} for i in range(3)]
    rows += [{"video_id": "v_b", "q": "what?", "a": "this"}, {"video_id": "v_c", "q": "why?", "a": "that"},
             {"video_id": "v_gone", "q": "where?", "a": "nowhere"}, {"video_id": "v_b", "q": "no answer"}]
    (tmp_path / "instruct.json").write_text(json.dumps(rows))
    config = _config(tmp_path, "videochatgpt", {"json": str(tmp_path / "instruct.json"), "video_folder": str(videos),
                                                "val_items": 1, "test_items": 1}, questions_per_video=2)
    with caplog.at_level(logging.WARNING, logger="voco.train.readers"):
        data = VideoChatGPTData.build(config, model, None, "train")
    every = sorted(i.id for s in data.catalogue.splits.values() for i in s)
    assert every == ["v_a#0", "v_a#1", "v_b#0", "v_c#0"]
    assert dict(data.catalogue.problems.counts) == {MISSING: 1, BAD_ITEM: 1}
    assert any("v_gone" in r.getMessage() for r in caplog.records)
    by_id = {i.id: i for s in data.catalogue.splits.values() for i in s}
    assert [c[0][0] for c in by_id["v_a#0"].chats] == ["question 0?", "question 1?"]
    data.items = [by_id["v_a#0"]]
    example = data.load(0)
    assert [q.answer for q in example.qas] == ["answer 0", "answer 1"] and len(example.segments) == 2
    assert encode(model, [example]).row_answer_spans[1] == [(encode(model, [example]).row_answer_start[1],
                                                             len(encode(model, [example]).row_ids[1]))]


def test_webvid_pairs_from_a_folder_and_from_a_csv(tmp_path, model):
    folder = tmp_path / "webvid"
    (folder / "00001").mkdir(parents=True)
    for i, n in enumerate([10, 14, 18, 9]):
        write_video(folder / "00001" / f"{i}.mp4", pattern_frames(n, seed=i), fps=10)
        if i < 3:
            (folder / "00001" / f"{i}.txt").write_text(f"clip number {i}\n")
    data = WebVidData.build(_config(tmp_path, "webvid", {"folder": str(folder), "val_items": 1, "test_items": 1}),
                            model, None, "train")
    assert dict(data.catalogue.problems.counts) == {BAD_ITEM: 1}  # 00001/3.mp4 has no caption
    example = data.load(0)
    assert example.qas[0].type == "caption" and example.qas[0].answer.startswith("clip number")
    assert example.qas[0].question in CAPTION_PROMPTS
    rows = "videoid,page_dir,name\n0,00001,first clip\n1,00001,second clip\n2,00001,third clip\n7,00001,gone\n"
    (tmp_path / "results.csv").write_text(rows)
    config = _config(tmp_path, "webvid", {"csv": str(tmp_path / "results.csv"), "video_folder": str(folder),
                                          "video_path": "{page_dir}/{videoid}.mp4", "caption_column": "name",
                                          "val_items": 1, "test_items": 1})
    data = WebVidData.build(config, model, None, "train")
    assert dict(data.catalogue.problems.counts) == {MISSING: 1}
    assert [i.chats[0][0][1] for s in data.catalogue.splits.values() for i in s] != []


def test_mix_concatenates_sources(tmp_path, llava_folder, model):
    folder = tmp_path / "pairs"
    folder.mkdir()
    for i in range(4):
        write_video(folder / f"{i}.mp4", pattern_frames(8, seed=i), fps=10)
        (folder / f"{i}.txt").write_text(f"caption {i}")
    sources = [{"dataset": "webvid", "options": {"folder": str(folder), "val_items": 1, "test_items": 1}},
               {"dataset": "llava_json", "options": {"json": str(llava_folder / "chat.json"), "val_items": 1,
                                                     "test_items": 1}}]
    data = MixData.build(_config(tmp_path, "mix", {"sources": sources}), model, None, "train")
    types = {item.type for item in data.items}
    assert types == {"caption", "conversation"} and len(data.items) == 2 + 4


def test_reader_configs_fail_loudly(tmp_path, model):
    with pytest.raises(ConfigError, match="write data.dataset: llava_json and put them under data.options"):
        config_from_dict(tiny_dict(tmp_path, data={"json": "llava_v1_5_mix665k.json", "image_folder": "images"}))
    with pytest.raises(ConfigError, match=r"^data.options: unknown keys \['jsn'\]"):  # the key named once
        _config(tmp_path, "llava_json", {"jsn": "x.json"})
    with pytest.raises(ConfigError, match="data.options.val_items: expected an integer"):
        _config(tmp_path, "llava_json", {"json": "x.json", "val_items": "many"})
    with pytest.raises(ConfigError, match="exactly one of folder"):
        _config(tmp_path, "webvid", {})
    with pytest.raises(ConfigError, match=r"sources\[0\]"):
        _config(tmp_path, "mix", {"sources": [{"dataset": "synthetic"}]})
    with pytest.raises(ConfigError, match="no synthetic world"):
        _config(tmp_path, "llava_json", {"json": "x.json"}, world={"size": 32})
    config = _config(tmp_path, "llava_json", {"json": str(tmp_path / "nowhere" / "llava_v1_5_mix665k.json")})
    with pytest.raises(FileNotFoundError, match=r"data.options.json: .*nowhere/llava_v1_5_mix665k.json"):
        LlavaJsonData.build(config, model, None, "train")
