"""Text finds what real footage shows, with the assembled real-footage model, through ingest and moment search (slow:
the 135M LM and the EfficientNet evidence tower load from their packages). The photos are the held-out ones of
scripts/eval_real_footage.py, panned as it pans them (evaluation/footage.py)."""

import numpy as np
import pytest

from ingest.config import IngestConfig
from tests.fixtures.videos import write_video

pytestmark = pytest.mark.slow


def test_real_model_search_finds_each_scene_of_a_real_video(tmp_path):
    from evaluation.footage import FPS, load_footage, pan, photo_pixels
    from ingest.run import ingest_paths
    from ingest.search import MomentSearch
    from store import Store
    from voco import VoCoModel
    from voco.search import ConceptEvidenceEmbedder

    model = VoCoModel.from_pretrained("default")
    footage = load_footage()
    scene_seconds = 6
    scenes = ["cat", "rocket", "coffee"]
    rng = np.random.default_rng(0)
    frames = np.concatenate([pan(photo_pixels(footage.by_id(w)), int(FPS * scene_seconds), rng) for w in scenes])
    video = write_video(tmp_path / "three_scenes.mp4", frames, fps=FPS)
    with Store(tmp_path / "home") as store:
        summary = ingest_paths([str(video)], store=store, model=model, config=IngestConfig())
        vid = summary.files[0].video_id
        search = MomentSearch(store, model)
        assert isinstance(search.embedder, ConceptEvidenceEmbedder)  # chosen from what the model provides
        for i, (word, query) in enumerate([("cat", "a cat"), ("rocket", "a rocket"), ("coffee", "a cup of coffee")]):
            top = search.search(query, top=1)[0]
            start, end = i * scene_seconds, (i + 1) * scene_seconds
            assert top["video_id"] == vid and start <= top["start_s"] < end, (word, top)
            scores = search.scores_for(query, vid)
            assert start <= 2.0 * int(scores.argmax()) < end, (word, scores.round(2))
