"""A store written under the old identity (schema 0001) keeps working after the upgrade.

The old identity hashed all of voco.json, so the same weights run with another prompt or
`--segment-seconds` got a second model row; the first ingest with the new code folds them into one.
"""

import dataclasses
import json

import torch

from ingest.identify import register_model
from ingest.run import model_info
from store import ModelInfo, ProbeRecord, SegmentRecord, Store, VideoKey
from store.db import downgrade, make_engine, sqlite_url
from voco import identity
from voco.cache import SegmentCache
from voco.config import PromptTemplate
from voco.tiny import tiny_model


def _to_revision(home, revision: str) -> None:
    engine = make_engine(sqlite_url(home / "voco.db"))
    downgrade(engine, revision)
    engine.dispose()


def _old_row(store, model, voco) -> tuple[int, str]:
    """A model row as the old code registered it: the old identity of these weights under `voco`."""
    (old,) = identity.legacy_fingerprints(model, [voco])
    config = {"voco": voco, "llava": json.loads(model.config.to_json_string(use_diff=False))}
    return store.register_model(ModelInfo(old, "tiny", "voco", model.k, config)), old


def _old_video(store, model_id, fingerprint, sha, segment_seconds, caches) -> int:
    claim = store.claim(VideoKey(sha, model_id, segment_seconds, 2, 0), fingerprint=fingerprint, path=f"/{sha[:4]}",
                        size=1, owner="old")
    store.set_probe(claim, "old", ProbeRecord(6.0, 10.0, 60, 32, 32, 0, len(caches)))
    store.add_chunk(claim, "old", [SegmentRecord(t, 2.0 * t, 2.0 * t + 2) for t in range(len(caches))],
                    [SegmentCache(c.kv, c.source_position, fingerprint, c.compressor) for c in caches])
    store.finish(claim, "old")
    return claim.video_id


def test_an_old_store_is_re_keyed_by_the_next_ingest_and_loads_without_recompressing(tmp_path, make_segments):
    model = tiny_model("llama")
    caches = model.compress(make_segments(3))
    home = tmp_path / "home"
    base = model.voco.to_dict()
    variants = {"as is": base, "eval --segment-seconds 3": {**base, "segment_seconds": 3.0},
                "edited prompt": {**base, "prompt": dataclasses.asdict(PromptTemplate(system="Be brief."))}}
    with Store.open(home) as store:
        rows = {name: _old_row(store, model, voco) for name, voco in variants.items()}
        videos = {
            "a": _old_video(store, *rows["as is"], "aa" * 32, 2.0, caches),
            "b": _old_video(store, *rows["eval --segment-seconds 3"], "bb" * 32, 3.0, caches),
            "c": _old_video(store, *rows["edited prompt"], "cc" * 32, 2.0, caches),
            "a again": _old_video(store, *rows["edited prompt"], "aa" * 32, 2.0, caches),  # same key as "a"
        }
    _to_revision(home, "0001_initial")  # the schema the old code had

    with Store.open(home) as store:  # upgrades: the old rows keep their videos, marked as the old identity
        assert len(store.legacy_models()) == 3
        cap = 2 * model.config.vision_config.image_size
        assert {v.decode_max_side for v in store.list_videos()} == {cap}
        model_id = register_model(store, model, model_info(model, "tiny"))  # what ingest does first
        by_id = {v.id: v for v in store.list_videos()}
        for name in ("a", "b", "c"):
            assert by_id[videos[name]].fingerprint == model.fingerprint, name  # one model: the new identity
            loaded = store.load_video_caches(videos[name], model.fingerprint, verify=True)
            assert torch.equal(loaded.kv, torch.stack([c.kv for c in caches]))
        assert by_id[videos["a again"]].fingerprint == rows["edited prompt"][1]  # stored twice: left, listed
        assert [m.id for m in store.legacy_models()] == [rows["edited prompt"][0]]
        claim = store.claim(VideoKey("aa" * 32, model_id, 2.0, 2, cap), fingerprint=model.fingerprint,
                            path="/aaaa", size=1, owner="new")
        assert (claim.status, claim.video_id) == ("present", videos["a"])  # nothing to compress again
        assert register_model(store, model, model_info(model, "tiny")) == model_id
