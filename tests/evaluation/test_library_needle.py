"""The library needle evaluation (issue 28) on a tiny random model: real stores, real ingest, the app's service."""

import numpy as np

from evaluation.footage import load_footage
from evaluation.library_needle import make_distractors, make_needles, run_library_needle


def test_distractors_show_no_needle_subject(tmp_path):
    footage = load_footage()
    needles = make_needles(footage, tmp_path / "n", 3, seed=0)
    asked = {q.subject for n in needles for q in n.questions}
    assert [q.kind for q in needles[0].questions][0] == "colour" and asked
    distractors = make_distractors(footage, needles, tmp_path / "d", 4, seed=0)
    assert len(distractors) == 4 and len(set(distractors)) == 4
    ids = {p.stem.split("-")[1] for p in distractors if p.stem.startswith("photo-")}
    assert ids and not ids & {n.photo for n in needles}
    for photo in (footage.by_id(i) for i in ids):
        assert not photo.mentioned & asked


def test_library_sizes_are_real_stores_asked_through_the_service(tmp_path):
    from voco import VoCoModel
    from voco.tiny import tiny_model

    tiny_model("llama", k=1).save_pretrained(tmp_path / "model")
    model = VoCoModel.from_pretrained(tmp_path / "model").eval()
    lines = []
    report = run_library_needle(model, tmp_path / "work", model_name="tiny", sizes=(1, 3), needles=2,
                                max_new_tokens=2, log=lines.append)
    n = report["questions"]
    assert n >= 2 and set(report["sizes"]) == {"1", "single", "3", "question_only"} and len(lines) == 4
    assert all(row["n"] == n for row in report["sizes"].values())
    assert report["sizes"]["1"]["needle_hit"] == 1.0  # the needle is the whole library
    assert 0.0 <= report["sizes"]["3"]["needle_hit"] <= 1.0 and report["sizes"]["3"]["ttft_ms_p50"] > 0
    library = [s for s in report["samples"] if s["size"] == 3]
    assert len(library) == n and all(s["sources"] for s in library)
    names = set().union(*(s["sources"] for s in library))
    assert names <= {p.name for p in (tmp_path / "work" / "videos").rglob("*.mp4")}
    from store import Store

    with Store.open(tmp_path / "work" / "homes" / "library-3") as store:
        assert len(store.list_videos()) == 3  # each size its own library
    single = report["sizes"]["single"]["accuracy"]
    assert single == 0 or np.isclose(report["sizes"]["3"]["of_single"] * single, report["sizes"]["3"]["accuracy"],
                                     atol=1e-3)


def test_shape_needles_are_the_only_videos_with_their_shape(tmp_path):
    from evaluation.library_needle import make_shape_needles

    footage = load_footage()
    needles = make_shape_needles(tmp_path / "n", 3, seed=0, segment_seconds=1.0)
    assert [n.id for n in needles] == ["circle", "square", "triangle"]
    assert all(q.text == f"what color is the {n.id}?" for n in needles for q in n.questions)
    distractors = make_distractors(footage, needles, tmp_path / "d", 48, seed=0, fill="plain", segment_seconds=1.0)
    assert len(distractors) == 48 and any(p.stem.startswith("plain-") for p in distractors)
    assert not any("voco_test" in p.name for p in distractors)  # synthetic-world videos show shapes: never here
