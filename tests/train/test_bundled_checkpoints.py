"""The bundled models: the default (synthetic world) loads offline and answers about a generated clip; the
"real" model (assembled from installed packages + trained parts in the repo) is small in git and documented."""

from pathlib import Path

import pytest

from voco import VoCoModel
from voco.data.synthetic import make_example
from voco.segments import split_frames

BUNDLED = Path(__file__).resolve().parents[2] / "voco" / "checkpoints"
DEFAULT = BUNDLED / "default"
REAL = BUNDLED / "real"
pytestmark = pytest.mark.skipif(not (DEFAULT / "config.json").is_file(), reason="no bundled default model yet")


def test_default_loads_compresses_and_answers():
    model = VoCoModel.from_pretrained("default")
    assert model.k == 1 and model.voco.compressor == "voco" and model.voco.voco_tuned
    video, qas = make_example("test", 0)
    segments = split_frames(video.frames, video.fps, model.voco.segment_seconds, model.voco.frames_per_segment)
    caches = model.compress(segments)
    n = model.vision_embeds(segments[:1]).shape[1]
    assert n >= 64 and caches[0].k == 1  # compression ratio >= 64 vision tokens per kept token
    answer = model.answer(qas[0].question, caches, max_new_tokens=6)
    assert isinstance(answer, str) and answer
    scores = model.score(qas[0].question, caches, ["yes", "no", "red", "circle"])
    assert len(scores) == 4


def test_default_is_small_and_documented():
    size = sum(p.stat().st_size for p in DEFAULT.rglob("*") if p.is_file())
    assert size < 25 * 2**20
    card = (DEFAULT / "MODEL_CARD.md").read_text()
    assert "python -m voco.train --config configs/default.yaml" in card and "accuracy" in card


def test_real_is_an_assembly_small_in_git():
    assert sorted(p.name for p in REAL.iterdir() if p.suffix in (".json", ".safetensors")) == [
        "assembly.json", "metrics.json", "trained.safetensors", "voco.json"]
    size = sum(p.stat().st_size for p in REAL.rglob("*") if p.is_file())
    assert size < 25 * 2**20
    card = (REAL / "MODEL_CARD.md").read_text()
    assert "python -m voco.train --config configs/real.yaml" in card


@pytest.mark.slow
def test_real_answers_an_open_question_in_words():
    """The assembled model (135M LM, pretrained parts from packages: a slow test) never answers an open
    question with nothing."""
    import numpy as np

    model = VoCoModel.from_pretrained("real")
    frames = np.full((model.voco.frames_per_segment, 240, 320, 3), (230, 120, 20), dtype=np.uint8)
    caches = model.compress([frames, frames])
    assert caches[0].kv.shape[-2] == model.k == 1
    answer = model.answer("What is happening in this video?", caches, max_new_tokens=24)
    assert len(answer.split()) >= 2, answer
