"""The bundled model trained on the synthetic world loads offline and reads the video from its VoCo caches."""

from pathlib import Path

import pytest

from voco import VoCoModel
from voco.data.synthetic import make_example
from voco.segments import split_frames

# The bundled model trained on the synthetic video-QA world (the default before issue 11).
MODEL = "synthetic"
FOLDER = Path(__file__).resolve().parents[2] / "voco" / "checkpoints" / MODEL
pytestmark = pytest.mark.skipif(not (FOLDER / "config.json").is_file(), reason=f"no bundled {MODEL!r} model yet")

VIDEOS = 32  # seeded test-split videos (~25 what_color questions); about 5 s on one CPU core
MARGIN = 0.2  # measured: 16 of 26 right from the video's own caches, 4 of 26 from another video's


@pytest.fixture(scope="module")
def model():
    return VoCoModel.from_pretrained(MODEL)


def _caches(model, video):
    segments = split_frames(video.frames, video.fps, model.voco.segment_seconds, model.voco.frames_per_segment)
    return model.compress(segments)


def test_loads_offline_as_a_voco_model_with_high_compression(model):
    assert model.k == 1 and model.voco.compressor == "voco" and model.voco.voco_tuned
    video, qas = make_example("test", 0)
    caches = _caches(model, video)
    n = model.vision_embeds([split_frames(video.frames, video.fps, model.voco.segment_seconds,
                                          model.voco.frames_per_segment)[0]]).shape[1]
    assert n >= 64 and all(c.k == 1 for c in caches)  # compression ratio >= 64 vision tokens per kept token
    scores = model.score(qas[0].question, caches, [qas[0].answer, "no answer like this"])
    assert len(scores) == 2 and scores[0] > scores[1]


def test_answers_colour_questions_from_the_video_caches(model):
    """Colour questions answered from the video's own caches beat the same questions answered from another
    video's caches (the question-only floor, measured with the same model) by MARGIN: the answers are read
    from the caches, not guessed from the question."""
    videos = [make_example("test", i, base_seed=123) for i in range(VIDEOS)]
    caches = [_caches(model, video) for video, _ in videos]
    own = other = total = 0
    for i, (_, qas) in enumerate(videos):
        for qa in (qa for qa in qas if qa.type == "what_color"):
            total += 1
            own += _said(model, qa.question, caches[i]) == qa.answer
            other += _said(model, qa.question, caches[(i + 1) % VIDEOS]) == qa.answer
    assert total >= 15
    assert own / total >= other / total + MARGIN, (own, other, total)


def _said(model, question, caches) -> str:
    return model.answer(question, caches, max_new_tokens=6).strip().lower().rstrip(".")


def test_synthetic_is_small_and_documented():
    size = sum(p.stat().st_size for p in FOLDER.rglob("*") if p.is_file())
    assert size < 25 * 2**20
    card = (FOLDER / "MODEL_CARD.md").read_text()
    assert "python -m voco.train --config configs/synthetic.yaml" in card and "accuracy" in card
