"""`--cache-dtype int8` end to end with the bundled synthetic model (head_dim 48): int8 packs at most 0.27x the float32
bytes per segment, answers from them, and a file ingested as float32 is not reused for int8 (nor the reverse)."""

import json

import pytest
import torch

from ingest.__main__ import main
from ingest.config import IngestConfig
from ingest.run import ingest_paths
from store import Store
from store.quant import round_trip
from store.timelines import load_timeline
from tests.fixtures.videos import pattern_frames, write_video

SEGMENT_SECONDS = 1.0


@pytest.fixture(scope="module")
def synthetic_model():
    from voco import VoCoModel

    return VoCoModel.from_pretrained("synthetic").eval()


def _ingest(path, home, model, cache_dtype: str):
    config = IngestConfig(segment_seconds=SEGMENT_SECONDS, batch_size=4, cache_dtype=cache_dtype, search_vectors=False)
    summary = ingest_paths([str(path)], home=home, model=model, model_name="synthetic", config=config)
    assert summary.exit_code == 0, summary.text()
    return summary.files[0]


def _segment_nbytes(store: Store, video_id: int) -> set[int]:
    from sqlalchemy import select

    from store.models import Cache, Segment

    with store.read() as s:
        return set(s.scalars(select(Cache.nbytes).join(Segment, Cache.segment_id == Segment.id)
                             .where(Segment.video_id == video_id)))


def test_int8_ingest_is_a_quarter_of_the_bytes_answers_and_never_reuses_float_caches(tmp_path, synthetic_model,
                                                                                      capsys):
    clip = write_video(tmp_path / "clip.mp4", pattern_frames(40, seed=3))  # 4 s: 4 segments
    home = tmp_path / "home"
    floats = _ingest(clip, home, synthetic_model, "model")
    ints = _ingest(clip, home, synthetic_model, "int8")
    assert floats.status == ints.status == "ingested" and ints.video_id != floats.video_id  # not "present"
    assert _ingest(clip, home, synthetic_model, "int8").status == "present"
    with Store.open(home) as store:
        (per_float,), (per_int8,) = _segment_nbytes(store, floats.video_id), _segment_nbytes(store, ints.video_id)
        assert per_int8 <= 0.27 * per_float  # (48 + 2) / (4 * 48) = 0.26, scales included
        packs = {v.cache_dtype: next(store.home.video_dir(v.uid).glob("pack-*.safetensors")).stat().st_size
                 for v in store.list_videos()}
        assert packs["int8"] < 0.35 * packs["model"]  # whole files of 4 segments: the header weighs a little
        exact = store.load_caches(floats.video_id, synthetic_model.fingerprint, verify=True)
        stored = load_timeline(store, ints.video_id, synthetic_model.fingerprint)
    for got, want in zip(stored.caches, exact, strict=True):
        assert got.kv.dtype == want.kv.dtype == synthetic_model.dtype
        assert torch.equal(got.kv, round_trip(want.kv))
    answer = synthetic_model.answer("What color is the square?", list(stored.caches), max_new_tokens=4)
    assert isinstance(answer, str) and answer.strip()
    capsys.readouterr()
    assert main(["--list", "--json", "--home", str(home)]) == 0
    listed = json.loads(capsys.readouterr().out)["videos"]
    assert sorted(v["cache_dtype"] for v in listed) == ["int8", "model"]


def test_the_cli_refuses_an_unknown_cache_dtype(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--cache-dtype", "int4"])
    assert "invalid choice: 'int4'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="cache_dtype must be one of model, int8, got 'float8'"):
        IngestConfig(cache_dtype="float8")


@pytest.mark.parametrize("cache_dtype", ["model", "int8"])
def test_search_vectors_computed_while_compressing_are_those_of_the_stored_caches(tmp_path, synthetic_model,
                                                                                    cache_dtype):
    """Ingest writes a finished video's search vectors from what it compressed (the pack is not read back); they
    are the vectors of the caches as stored, int8 round trip included."""
    from store.search_vectors import read_vectors
    from voco.search import embedder_for

    video = write_video(tmp_path / "clip.mp4", pattern_frames(40, seed=4))
    config = IngestConfig(segment_seconds=SEGMENT_SECONDS, batch_size=3, cache_dtype=cache_dtype)
    summary = ingest_paths([str(video)], home=tmp_path / "home", model=synthetic_model, model_name="synthetic",
                           config=config)
    assert summary.exit_code == 0, summary.text()
    embedder = embedder_for(synthetic_model)
    assert not embedder.reads_frames  # the voco-keys vectors: from caches, so the stored ones can be recomputed
    with Store.open(tmp_path / "home") as store:
        (info,) = store.list_videos()
        written = read_vectors(store, info.uid, synthetic_model.fingerprint, embedder.name)
        again = embedder.segment_vectors(store.load_caches(info.id, synthetic_model.fingerprint))
    assert written.shape == again.shape == (4, embedder.dim)
    assert float(abs(written - again).max()) <= 1e-5 * float(abs(again).max())
