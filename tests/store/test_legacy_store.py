"""A store written under identity version 1 (schema 0001) keeps working after the upgrade."""

import json

import torch

from store import ModelInfo, ProbeRecord, SegmentRecord, Store, VideoKey
from store.db import downgrade, make_engine, sqlite_url
from voco.cache import SegmentCache
from voco.tiny import tiny_model

SHA = "5a" * 32


def _to_revision(home, revision: str) -> None:
    engine = make_engine(sqlite_url(home / "voco.db"))
    downgrade(engine, revision)
    engine.dispose()


def _old_store(home, model, caches) -> int:
    """What the old code left: the model row and the packs under the old (legacy) fingerprint, schema 0001."""
    legacy = model.legacy_fingerprint
    config = {"voco": model.voco.to_dict(), "llava": json.loads(model.config.to_json_string(use_diff=False))}
    with Store.open(home) as store:
        model_id = store.register_model(ModelInfo(legacy, "tiny", "voco", model.k, config))
        claim = store.claim(VideoKey(SHA, model_id, 2.0, 2, 0), fingerprint=legacy, path="/old.mp4", size=1,
                            owner="old")
        store.set_probe(claim, "old", ProbeRecord(6.0, 10.0, 60, 32, 32, 0, len(caches)))
        store.add_chunk(claim, "old", [SegmentRecord(t, 2.0 * t, 2.0 * t + 2) for t in range(len(caches))],
                        [SegmentCache(c.kv, c.source_position, legacy, c.compressor) for c in caches])
        store.finish(claim, "old")
    _to_revision(home, "0001_initial")  # drops the columns 0002 adds, as the old schema had none
    return claim.video_id


def test_an_old_store_is_re_keyed_by_the_first_ingest_and_its_caches_load(tmp_path, make_segments):
    model = tiny_model("llama")
    caches = model.compress(make_segments(3))
    home = tmp_path / "home"
    video_id = _old_store(home, model, caches)

    with Store.open(home) as store:  # upgrades to head: the old rows get the default decode cap
        (old,) = store.list_videos()
        cap = 2 * model.config.vision_config.image_size
        assert (old.id, old.status, old.decode_max_side) == (video_id, "ready", cap)
        assert old.fingerprint == model.legacy_fingerprint != model.fingerprint

        # what ingest (ingest.run.model_info) registers now: the new identity, naming the old one
        info = ModelInfo(model.fingerprint, "tiny", "voco", model.k, {}, legacy_fingerprint=model.legacy_fingerprint)
        model_id = store.register_model(info)
        assert store.register_model(info) == model_id  # once re-keyed, found by the new identity
        claim = store.claim(VideoKey(SHA, model_id, 2.0, 2, cap), fingerprint=model.fingerprint, path="/old.mp4",
                            size=1, owner="new")
        assert (claim.status, claim.video_id) == ("present", video_id)  # nothing to compress again
        loaded = store.load_video_caches(video_id, model.fingerprint, verify=True)
        assert torch.equal(loaded.kv, torch.stack([c.kv for c in caches]))
        assert model.answer("what?", loaded.segment_caches(), max_new_tokens=2) is not None
        assert [v.fingerprint for v in store.list_videos()] == [model.fingerprint]
