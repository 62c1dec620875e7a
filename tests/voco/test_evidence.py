"""The evidence tower and slot projector (issue 30), on real word tables and the tiny stand-in classifier: colour
words, windows and blobs, class -> name/hypernym sums, slot layout as the LM reads it, and parity of the assembled
evidence model with the single-pass reference."""

import numpy as np
import pytest
import torch

from voco.colours import COLOURS, colour_index, dominant_colour
from voco.evidence.concepts import ConceptTable, Vocabulary
from voco.evidence.projector import COUNT_WORDS, NAME_END, SLOT_TOKENS, SlotProjector, plural
from voco.evidence.tower import COLOUR, COUNT, FIELDS, HYPERNYMS, NAME, SCORE, blobs, window_slices

QUESTION = "what is shown in the video?"


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("rgb, name", [((200, 30, 30), "red"), ((240, 140, 30), "orange"), ((240, 220, 40), "yellow"),
                                       ((40, 160, 60), "green"), ((30, 90, 220), "blue"), ((130, 50, 180), "purple"),
                                       ((250, 170, 190), "pink"), ((120, 70, 30), "brown"), ((10, 10, 10), "black"),
                                       ((245, 245, 245), "white"), ((128, 128, 128), "grey"), ((20, 30, 90), "blue")])
def test_basic_colour_words(rgb, name):
    assert COLOURS[int(colour_index(np.array(rgb, np.uint8)))] == name


def test_dominant_colour_follows_the_weights():
    image = np.zeros((4, 4, 3), np.uint8)
    image[:, :2] = (200, 30, 30)
    image[:, 2:] = (30, 90, 220)
    weights = np.zeros((4, 4))
    weights[:, 3] = 1.0
    assert dominant_colour(image) in ("red", "blue") and dominant_colour(image, weights) == "blue"


def test_windows_and_blobs():
    windows = window_slices(7, 9, 0.6)
    assert windows[0] == (slice(0, 7), slice(0, 9)) and len(windows) == 6
    assert all(r.stop - r.start == 5 and c.stop - c.start == 6 for r, c in windows[1:])
    mask = np.zeros((7, 7), bool)
    mask[0:2, 0:2] = mask[5:7, 5:7] = mask[3, 0] = True
    assert blobs(mask) == 3 and blobs(np.zeros((3, 3), bool)) == 0


def test_concept_table_sums_classes_into_names_and_hypernyms():
    table = ConceptTable(["tabby", "siamese", "beagle", "cab"], ["cat", "cat", "dog", "taxi"],
                         [["animal"], ["animal"], ["animal"], ["car", "vehicle"]])
    probs = torch.tensor([[0.3, 0.3, 0.1, 0.3]])
    names = probs @ table.name_matrix
    hyps = probs @ table.hypernym_matrix
    assert names[0, table.index["cat"]] == pytest.approx(0.6) and names[0, table.index["taxi"]] == pytest.approx(0.3)
    assert hyps[0, table.index["animal"]] == pytest.approx(0.7)
    assert hyps[0, table.index["vehicle"]] == pytest.approx(0.3)
    assert [table.words[i] for i in table.hypernym_ids(table.index["taxi"])] == ["car", "vehicle"]


def test_bundled_tables_cover_every_class_with_vocabulary_hypernyms():
    table = ConceptTable.load()
    vocab = Vocabulary.load()
    assert table.num_classes == 1000
    assert {h for hs in table.hypernyms.values() for h in hs} <= set(vocab.words)
    assert table.class_concepts[281] == "cat" and table.class_concepts[207] == "dog"  # tabby, golden retriever


@pytest.fixture(scope="module")
def tokenizer():
    """The bundled models' LM tokenizer (SmolLM2's, converted into the cache by ./setup.sh)."""
    from transformers import AutoTokenizer

    from voco.assembly import AssemblySpec, prepare_lm
    from voco.folders import resolve_checkpoint

    return AutoTokenizer.from_pretrained(prepare_lm(AssemblySpec.load(resolve_checkpoint("classnames")).lm_gguf))


def _slots(*rows) -> torch.Tensor:
    out = torch.full((1, 3, FIELDS), -1.0)
    for i, (name, score, colour, count, hyps) in enumerate(rows):
        out[0, i, NAME], out[0, i, SCORE], out[0, i, COLOUR], out[0, i, COUNT] = name, score, colour, count
        out[0, i, HYPERNYMS:HYPERNYMS + len(hyps)] = torch.tensor(hyps, dtype=torch.float32)
    return out


def test_slot_phrases_read_as_words(tokenizer):
    words = ("animal", "cat", "dog", "person")
    projector = SlotProjector(words, torch.randn(tokenizer.vocab_size + 8, 16), tokenizer, slots=3)
    slots = _slots((3, 1.0, -1, 2, []), (1, 0.9, COLOURS.index("brown"), 1, [0]), (2, 0.2, -1, 3, [0]))
    assert projector.describe(slots) == ["two people | brown cat animal | three dogs animal"]
    ids, mask = projector.token_ids(slots)
    assert [tokenizer.decode(i[m]) for i, m in zip(ids[0], mask[0], strict=True)] == [
        " two people", " brown cat animal", " three dogs animal"]
    assert ids.shape == (1, 3, SLOT_TOKENS) and mask[0, 1, NAME_END] and mask[0, 0, 0] and not mask[0, 1, 0]
    assert projector.summary_index(slots, 2).tolist() == [[NAME_END, SLOT_TOKENS + NAME_END]]
    assert projector(slots).shape == (1, 3 * SLOT_TOKENS, 16)
    assert plural("bus") == "buses" and plural("butterfly") == "butterflies" and plural("bow tie") == "bow ties"
    assert COUNT_WORDS[0] == "two"


def test_empty_frame_reads_as_padding_only(tokenizer):
    projector = SlotProjector(("cat",), torch.randn(tokenizer.vocab_size + 8, 16), tokenizer, slots=2)
    _, mask = projector.token_ids(torch.full((1, 2, FIELDS), -1.0))
    assert not mask.any()
    assert projector.summary_index(torch.full((1, 2, FIELDS), -1.0), 2).tolist() == [[NAME_END, NAME_END]]


@pytest.fixture(scope="module")
def evidence_model(tmp_path_factory):
    from voco.config import VoCoConfig
    from voco.model import VoCoModel
    from voco.tiny import TINY_ASSEMBLY_VOCO, tiny_evidence_spec

    voco = {**TINY_ASSEMBLY_VOCO, "k": 2, "frames_per_segment": 1,
            "prompt": {"segment_label": " {start}", "prefix": "{system} USER:"}}
    return VoCoModel.from_assembly(tiny_evidence_spec(tmp_path_factory.mktemp("evidence")), VoCoConfig(**voco))


def _segments(T: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (1, 40, 48, 3), dtype=np.uint8) for _ in range(T)]


def test_tower_fills_slots_with_words_of_its_table(evidence_model):
    tower = evidence_model.vision_tower
    slots = evidence_model.vision_features(_segments(4))
    assert slots.shape == (4, 3, FIELDS) and slots.dtype == torch.float32
    names = slots[..., NAME]
    assert (names[:, 0] >= 0).all() and set(names[names >= 0].long().tolist()) <= set(range(len(tower.words)))
    filled = names >= 0
    assert (slots[..., SCORE][filled] >= tower.config.min_score).all()
    assert (slots[..., SCORE][:, :-1] >= slots[..., SCORE][:, 1:]).all()  # best first
    assert ((slots[..., COLOUR][filled] >= -1) & (slots[..., COLOUR][filled] < len(COLOURS))).all()


def test_person_slot_comes_first(evidence_model, monkeypatch):
    tower = evidence_model.vision_tower
    monkeypatch.setattr(type(tower), "faces", property(lambda self: lambda frame: 2))  # OpenCV's output, 2 faces
    slots = tower.read(torch.from_numpy(_segments(1)[0]))
    assert int(slots[0, 0, NAME]) == tower.person_id and int(slots[0, 0, COUNT]) == 2
    assert tower.words[tower.person_id] == "person" and int(slots[0, 1, NAME]) != tower.person_id


def test_tower_reads_each_frame_once(evidence_model, monkeypatch):
    tower = evidence_model.vision_tower
    frames = torch.from_numpy(np.concatenate(_segments(3, seed=9)))
    first = tower(frames)
    read = []
    monkeypatch.setattr(tower, "read", lambda f: read.append(len(f)) or torch.zeros(len(f), 3, FIELDS))
    torch.testing.assert_close(tower(frames[[2, 0]]), first[[2, 0]])  # from the memo: nothing read
    tower(torch.cat([frames[:1], frames[:1] + 1]))  # one new frame
    assert read == [1]


def test_face_counter_finds_nobody_in_noise():
    from voco.evidence.people import FaceCounter

    rng = np.random.default_rng(0)
    assert FaceCounter()(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)) == 0


@pytest.mark.parametrize("T", [1, 4])
def test_evidence_model_two_stage_matches_single_pass_reference(evidence_model, T):
    from voco.reference import reference_logits

    segments = _segments(T, seed=T)
    caches = evidence_model.compress(segments)
    assert caches[0].k == 2
    two_stage = evidence_model.next_token_logits(QUESTION, caches)
    assert float((two_stage - reference_logits(evidence_model, QUESTION, segments)).abs().max()) < 1e-5


def test_evidence_model_saves_and_reloads(evidence_model, tmp_path):
    from voco import VoCoModel

    evidence_model.save_pretrained(tmp_path / "ck")
    loaded = VoCoModel.from_pretrained(tmp_path / "ck")
    assert loaded.fingerprint == evidence_model.fingerprint
    segments = _segments(2)
    torch.testing.assert_close(loaded.next_token_logits(QUESTION, loaded.compress(segments)),
                               evidence_model.next_token_logits(QUESTION, evidence_model.compress(segments)),
                               rtol=0, atol=0)


def test_search_vectors_read_the_slots_as_phrases(evidence_model):
    from voco.evidence.tower import FIELDS
    from voco.search import ConceptEvidenceEmbedder, embedder_for

    embedder = embedder_for(evidence_model)
    assert isinstance(embedder, ConceptEvidenceEmbedder) and embedder.name == "concept-minilm"
    tower = evidence_model.vision_tower
    slots = torch.full((2, 3, FIELDS), -1.0)
    slots[0, 0, NAME], slots[0, 0, SCORE] = tower.words.index("cat"), 0.9
    slots[1, 0, NAME], slots[1, 0, SCORE] = tower.words.index("boat"), 0.9
    vectors = embedder.vectors_from_slots(slots)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    kitten, ship = embedder.query_vector("a kitten"), embedder.query_vector("a ship at sea")
    assert vectors[0] @ kitten > vectors[1] @ kitten and vectors[1] @ ship > vectors[0] @ ship
    real = embedder.segment_vectors(evidence_model.compress(_segments(2)), frames=_segments(2))
    assert real.shape == (2, embedder.dim)


def test_identity_covers_the_evidence_settings(evidence_model):
    """Slots change with the tower's settings and tables, not only its weights: the identity must too."""
    import dataclasses

    tower = evidence_model.vision_tower
    before = evidence_model.fingerprint
    original = tower.config
    try:
        tower.config = dataclasses.replace(original, min_score=original.min_score + 0.01)
        evidence_model._fingerprint = None
        assert evidence_model.fingerprint != before
    finally:
        tower.config = original
        evidence_model._fingerprint = None
    assert evidence_model.fingerprint == before


def test_crops_read_each_window_as_its_own_picture(evidence_model):
    """`crops`: the top-left window is the classifier's pooled features of that corner cut from the frame and read
    at full input size (not a window of the whole frame's map); identities change only when it is set."""
    import dataclasses

    tower = evidence_model.vision_tower
    net = tower.classifier.net
    frame = torch.from_numpy(_segments(1, seed=4)[0])  # [1, 40, 48, 3]
    rows, cols = window_slices(40, 48, tower.config.window)[1]
    with torch.no_grad():
        corner = net.extract_features(tower.pixels(frame[:, rows, cols])).float().mean(dim=(2, 3))  # [1, 1280]
        pooled = tower.crop_features(frame, net)  # [1, 6, 1280]
    assert pooled.shape[:2] == (1, 6) and torch.allclose(pooled[0, 1], corner[0], atol=1e-5)
    assert rows == slice(0, 24) and cols == slice(0, 29)  # 0.6 of each side, rounded up
    before, original = evidence_model.fingerprint, tower.config
    try:
        tower.config = dataclasses.replace(original, crops=True)
        evidence_model._fingerprint = None
        slots = tower.read(frame)
        assert slots.shape == (1, tower.config.slots, FIELDS) and evidence_model.fingerprint != before
    finally:
        tower.config = original
        evidence_model._fingerprint = None
    assert "crops" not in original.settings() and evidence_model.fingerprint == before
