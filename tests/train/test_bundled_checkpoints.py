"""The bundled default model (assembled from installed packages + trained parts in the repo) is small in git,
documented, and answers in words. The synthetic-world model: test_synthetic_checkpoint.py."""

from pathlib import Path

import pytest

from voco import VoCoModel

BUNDLED = Path(__file__).resolve().parents[2] / "voco" / "checkpoints"
DEFAULT = BUNDLED / "default"


def test_default_is_an_assembly_small_in_git():
    assert sorted(p.name for p in DEFAULT.iterdir() if p.suffix in (".json", ".safetensors")) == [
        "assembly.json", "metrics.json", "trained.safetensors", "voco.json"]
    size = sum(p.stat().st_size for p in DEFAULT.rglob("*") if p.is_file())
    assert size < 25 * 2**20
    card = (DEFAULT / "MODEL_CARD.md").read_text()
    assert "python -m voco.train --config configs/default.yaml" in card


@pytest.mark.slow
def test_default_answers_an_open_question_in_words():
    """The assembled model (135M LM, pretrained parts from packages: a slow test) never answers an open
    question with nothing."""
    import numpy as np

    model = VoCoModel.from_pretrained("default")
    frames = np.full((model.voco.frames_per_segment, 240, 320, 3), (230, 120, 20), dtype=np.uint8)
    caches = model.compress([frames, frames])
    assert caches[0].kv.shape[-2] == model.k == 2
    answer = model.answer("What is happening in this video?", caches, max_new_tokens=24)
    assert len(answer.split()) >= 2, answer


@pytest.mark.slow
def test_previous_default_stays_loadable_by_name():
    """The class-name model (the default before the evidence tower) loads as "classnames" and keeps its own
    search embedder and k; the new default reads frames through its evidence tower."""
    from voco.search import ClassEvidenceEmbedder, ConceptEvidenceEmbedder, embedder_for

    old = VoCoModel.from_pretrained("classnames")
    assert old.k == 1 and isinstance(embedder_for(old), ClassEvidenceEmbedder)
    new = VoCoModel.from_pretrained("default")
    assert isinstance(embedder_for(new), ConceptEvidenceEmbedder)
    assert old.fingerprint != new.fingerprint
