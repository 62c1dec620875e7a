"""Zero-shot answers from a stock checkpoint equal its own transformers `.generate()` (issue 24).

A plain checkpoint (as transformers saves it, no voco.json) with the `full` compressor: one segment's caches are the
KV of its vision tokens computed on `[<seg>, V_1 .. V_n]`, placed after the prompt's prefix and read by the
question. When the prefix is exactly that start token (the tokenizer's <bos>, or the start token a tokenizer without
one is given), the two-stage answer is the single pass transformers runs on `[<seg>, <image> x n, question]`, so the
greedy tokens must be the same. What differs with a longer prefix (a system prompt before the video) is stated in
docs/models.md ("Use your own model"): the vision tokens never see text before them, because a cache is computed
once per segment and serves every question.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from voco import VoCoModel
from voco.config import PromptTemplate
from voco.families import family_of
from voco.generation import GenerationConfig, generate_tokens
from voco.tiny import save_plain_checkpoint

QUESTION = "what color is the circle?"
NEW_TOKENS = 10


def generate_as_transformers(model: VoCoModel, theirs, segment: np.ndarray) -> list[int]:
    """Greedy answer tokens of the family's transformers model `theirs` on [prefix, placeholders, question]."""
    config = theirs.config
    prefix, suffix = model.prompt_ids(QUESTION)
    n = model.vision_embeds([segment]).shape[1]
    pixels = model.pixel_values([segment])  # [F, 3, S, S]
    if config.model_type == "llava":  # frames as images, one after another
        placeholder, inputs = config.image_token_index, {"pixel_values": pixels}
    elif config.model_type in ("idefics3", "smolvlm"):  # frames as one sample's images, each global (no tiles)
        placeholder, inputs = config.image_token_id, {"pixel_values": pixels[None]}
    else:
        placeholder, inputs = config.video_token_index, {"pixel_values_videos": pixels[None]}
    ids = torch.tensor([prefix + [placeholder] * n + suffix], device=model.device)
    with torch.no_grad():
        out = theirs.generate(input_ids=ids, **inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    tokens = out[0, ids.shape[1]:].tolist()
    eos = model.tokenizer.eos_token_id
    return tokens[: tokens.index(eos)] if eos in tokens else tokens


def _llava7b_oracle(device: str, layers: int) -> None:
    """LLaVA-1.5-7B's real shapes (random weights, `layers` decoder layers, fp32): its transformers model built
    around the same parts answers one 576-token segment as the full caches do."""
    from voco.tiny import llava7b_model

    model = llava7b_model(layers, 24 if device == "cuda" else 2, device=device, dtype=torch.float32,
                          compressor="full", prompt=PromptTemplate(system="", prefix="", question="\n{question} "
                                                                   "ASSISTANT:"))
    theirs = family_of(model.config).assemble(model.config, model.vision_tower, model.projector, model.lm.model,
                                              model.lm.lm_head).eval()
    segment = np.random.default_rng(5).integers(0, 256, (1, 336, 336, 3), dtype=np.uint8)
    mine = list(generate_tokens(model, QUESTION, model.compress([segment]), GenerationConfig(NEW_TOKENS)))
    assert mine and mine == generate_as_transformers(model, theirs, segment)


@pytest.mark.slow
def test_llava7b_shapes_answer_as_transformers_cpu():
    _llava7b_oracle("cpu", 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_llava7b_shapes_answer_as_transformers_gpu():
    from tests.fixtures.gpu import exact_fp32

    with exact_fp32():
        _llava7b_oracle("cuda", 32)


@pytest.mark.parametrize("model_type, frames", [("llava", 1), ("llava", 2), ("llava_next_video", 2),
                                               ("llava_onevision", 2), ("idefics3", 1), ("smolvlm", 2)])
def test_one_segment_answers_as_the_checkpoints_own_generate(model_type, frames, tmp_path):
    config = save_plain_checkpoint(model_type, tmp_path / "plain")
    start = "<segment>" if model_type.startswith("llava_") else ""  # <bos> comes with the tokenizer; Qwen2 has none
    prompt = PromptTemplate(system="", prefix=start, question="\n{question} ASSISTANT:")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # full reads no <voco>: no "not VoCo-tuned" warning
        model = VoCoModel.from_pretrained(tmp_path / "plain", compressor="full", frames_per_segment=frames,
                                          prompt=prompt)
    segment = np.random.default_rng(5).integers(0, 256, (frames, 40, 48, 3), dtype=np.uint8)
    mine = list(generate_tokens(model, QUESTION, model.compress([segment]), GenerationConfig(NEW_TOKENS)))

    # the family's transformers class on the same weights (the plain folder, plus the start token the loader
    # added for a tokenizer without <bos>), fed the same pixels with the family's placeholders
    model.save_pretrained(tmp_path / "same")
    theirs = family_of(config).model_class.from_pretrained(tmp_path / "same").eval()
    expected = generate_as_transformers(model, theirs, segment)
    assert len(mine) >= 3 and mine == expected, (mine, expected)
    prefix, _ = model.prompt_ids(QUESTION)
    assert prefix == [model.segment_start_id]  # the case the contract makes exact (module doc)
    again = VoCoModel.from_pretrained(tmp_path / "same")  # the saved VoCo checkpoint loads back as it was
    assert again.fingerprint == model.fingerprint
    assert torch.equal(again.compress([segment])[0].kv, model.compress([segment])[0].kv)


@pytest.mark.parametrize("model_type, compressor, k", [
    ("llava", "full", 1), ("llava_next_video", "full", 1), ("llava_onevision", "full", 1), ("idefics3", "full", 1),
    ("smolvlm", "full", 1), ("llava_onevision", "pool_frames", 1)])
def test_a_stock_checkpoint_ingested_zero_shot_is_answered_by_the_app(model_type, compressor, k, tmp_path):
    """`python -m ingest VIDEO --model PLAIN --compressor full` (or pool_frames), then the app (its model chosen as
    `python -m app` chooses it: the compressor the library was built with) answers as `/ask` does, for each
    family."""
    import json
    import subprocess
    import sys

    from app.__main__ import library_model, parse_args
    from app.service import ChatService
    from store import Store
    from tests.fixtures.videos import pattern_frames, write_video

    save_plain_checkpoint(model_type, tmp_path / "plain")
    video = write_video(tmp_path / "clip.mp4", pattern_frames(40, seed=3))  # 4 s at 10 fps
    home = tmp_path / "home"
    if model_type == "llava":  # the command line once; the other families in-process (no interpreter start-up)
        cmd = [sys.executable, "-m", "ingest", str(video), "--model", str(tmp_path / "plain"), "--compressor",
               "full", "--segment-seconds", "1", "--home", str(home), "--threads", "1", "--json"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "not been VoCo-tuned" not in done.stderr  # full caches read no <voco>
        (result,) = json.loads(done.stdout)["files"]
        assert result["status"] == "ingested" and result["segments"] == 4
    else:
        from ingest.config import IngestConfig
        from ingest.run import ingest_paths

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # full caches read no <voco>: no "not VoCo-tuned" warning
            summary = ingest_paths([str(video)], home=home, model=str(tmp_path / "plain"),
                                   config=IngestConfig(compressor=compressor, k=k, segment_seconds=1.0))
        assert summary.exit_code == 0 and summary.files[0].segments == 4, summary.text()
    with Store.open(home) as store:
        assert store.compressions([str((tmp_path / "plain").resolve())]) == [(compressor, k)]
        model = library_model(store, parse_args(["--home", str(home), "--model", str(tmp_path / "plain")]))
        assert (model.compressor.name, model.k) == (compressor, k)
        (stored,) = store.list_videos()
        assert stored.fingerprint == model.fingerprint  # the app reads the library it was given
        out = ChatService(store, model, model_name=str(tmp_path / "plain")).answer_dict(
            stored.id, "what is shown?", max_new_tokens=4)
        assert isinstance(out["answer"], str) and out["segments_used"] and out["segments_total"] == 4


# ---- pool_frames: each frame's token grid pooled by the family's own pooling ------------------------------------


def _loaded(folder, model_type: str, compressor: str, k: int, frames: int = 2) -> VoCoModel:
    start = "<segment>" if model_type.startswith("llava_") else ""
    return VoCoModel.from_pretrained(folder, compressor=compressor, k=k, frames_per_segment=frames,
                                     prompt=PromptTemplate(system="", prefix=start, question="\n{question} A:"))


def test_pool_frames_averages_each_frames_grid_as_next_videos_pooler(tmp_path):
    """LLaVA-1.5 (a 4 x 4 grid per frame) pooled to k = 4: each frame's 2 x 2 blocks averaged, as
    LLaVA-NeXT-Video's `AvgPool2d(stride)` pooler does, frame by frame (never across the two frames)."""
    save_plain_checkpoint("llava", tmp_path / "plain")
    full = _loaded(tmp_path / "plain", "llava", "full", 1)
    pooled = _loaded(tmp_path / "plain", "llava", "pool_frames", 4)
    segment = np.random.default_rng(2).integers(0, 256, (2, 40, 48, 3), dtype=np.uint8)
    with torch.no_grad():
        tokens = full.vision_embeds([segment])[0]  # [2 * 16, hidden]
        grids = tokens.reshape(2, 4, 4, -1).permute(0, 3, 1, 2)  # [frames, hidden, 4, 4]
        want = torch.nn.AvgPool2d(2)(grids).permute(0, 2, 3, 1).reshape(8, -1)  # [2 * 4, hidden]
        got = pooled.vision_embeds([segment])[0]
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-6)
    (cache,) = pooled.compress([segment])
    assert cache.kv.shape[-2] == 8 and pooled.fingerprint != full.fingerprint  # 8 of 32 tokens; caches never mix


def test_pool_frames_to_the_grids_own_size_is_the_full_cache(tmp_path):
    """OneVision (its own bilinear pooling gives a 2 x 2 grid per frame, then one image_newline per segment):
    pooling to that same size changes no token, so its caches equal `full`'s."""
    save_plain_checkpoint("llava_onevision", tmp_path / "plain")
    segment = np.random.default_rng(3).integers(0, 256, (2, 40, 48, 3), dtype=np.uint8)
    full = _loaded(tmp_path / "plain", "llava_onevision", "full", 1).compress([segment])[0]
    same = _loaded(tmp_path / "plain", "llava_onevision", "pool_frames", 4).compress([segment])[0]
    smaller = _loaded(tmp_path / "plain", "llava_onevision", "pool_frames", 1).compress([segment])[0]
    assert same.kv.shape == full.kv.shape and torch.allclose(same.kv, full.kv, atol=1e-5)
    assert smaller.kv.shape[-2] == 2 * 1 + 1  # one pooled token per frame, then the newline


def test_pool_frames_refuses_what_it_cannot_pool(tmp_path):
    save_plain_checkpoint("llava", tmp_path / "plain")
    with pytest.raises(ValueError, match="k = 5 tokens per frame must be a square"):
        _loaded(tmp_path / "plain", "llava", "pool_frames", 5)
    too_many = _loaded(tmp_path / "plain", "llava", "pool_frames", 25)
    with pytest.raises(ValueError, match="4 x 4 token grid cannot be pooled to 5 x 5"):
        too_many.compress([np.zeros((2, 32, 32, 3), np.uint8)])
    evidence = VoCoModel.from_pretrained("default", compressor="pool_frames", k=4)  # 4 slots x 6 words a frame
    with pytest.raises(ValueError, match=r"\(24\) are not a square grid: pool them with the `pool` compressor"):
        evidence.compress([np.zeros((1, 48, 64, 3), np.uint8)])


def test_segments_cached_alone_differ_from_one_pass_only_from_the_second(tmp_path):
    """scripts/probe_segment_isolation.py: one segment is the single pass exactly; with two, the second segment's
    KV was computed without the first before it, so the answer's distribution moves (docs/models.md, "Use your own
    model")."""
    from scripts.probe_segment_isolation import compare

    save_plain_checkpoint("llava", tmp_path / "plain")
    model = VoCoModel.from_pretrained(tmp_path / "plain", compressor="full", frames_per_segment=1,
                                      prompt=PromptTemplate(system="", prefix="", question="\n{question} ASSISTANT:"))
    model.save_pretrained(tmp_path / "same")
    theirs = family_of(model.config).model_class.from_pretrained(tmp_path / "same").eval()
    one, two = (compare(model, theirs, t, videos=3, tokens=4, seed=1) for t in (1, 2))
    assert one["first_token_same"] == one["answer_same"] == 1.0 and one["kl_first_token"] < 1e-6
    assert two["kl_first_token"] > 1e-5
