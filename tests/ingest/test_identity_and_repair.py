"""Ingest end to end: sampling settings key the video (never the model); damaged packs are redone."""

import os

import pytest
import torch
from sqlalchemy import func, select

from ingest.config import IngestConfig
from ingest.run import ingest_paths
from store import PackDamaged, Store
from store.models import Model
from store.packs import read_pack
from tests.ingest.conftest import SEGMENT_SECONDS
from voco import VoCoModel


def run(paths, home, model, **config):
    config = IngestConfig(**{"segment_seconds": SEGMENT_SECONDS, "batch_size": 2, **config})
    return ingest_paths([str(p) for p in paths], home=home, model=model, model_name="tiny", config=config)


def _pack(store, video_id):
    (pack,) = store.home.video_dir(store.get_video(video_id).uid).glob("pack-*")
    return pack


def test_sampling_settings_are_the_video_key_not_another_model(tmp_path, one_video, model, model_dir):
    home = tmp_path / "home"
    # what `eval --segment-seconds 2` does: load the same weights with another segment length
    resampled = VoCoModel.from_pretrained(str(model_dir), segment_seconds=2.0)
    assert resampled.fingerprint == model.fingerprint
    results = [run([one_video], home, model).files[0],
               run([one_video], home, resampled, segment_seconds=2.0).files[0],
               run([one_video], home, model, decode_max_side=0).files[0],
               run([one_video], home, model).files[0]]
    assert [r.status for r in results] == ["ingested", "ingested", "ingested", "present"]
    assert len({r.video_id for r in results[:3]}) == 3  # three sampling settings: three stored videos
    with Store.open(home) as store:
        with store.read() as s:
            assert s.scalar(select(func.count(Model.id))) == 1  # one model
        keys = {(v.segment_seconds, v.decode_max_side) for v in store.list_videos()}
    cap = 2 * model.config.vision_config.image_size
    assert keys == {(SEGMENT_SECONDS, cap), (2.0, cap), (SEGMENT_SECONDS, 0)}


@pytest.mark.parametrize("damage", ["bytes", "truncated"])
def test_a_damaged_pack_is_compressed_again_by_the_next_ingest(tmp_path, one_video, model, damage):
    home = tmp_path / "home"
    (first,) = run([one_video], home, model).files
    with Store.open(home) as store:
        good = store.load_video_caches(first.video_id, model.fingerprint).kv.clone()
        pack = _pack(store, first.video_id)
        if damage == "bytes":  # only reading the bytes finds this: the first load in a process does
            with open(pack, "r+b") as handle:
                handle.seek(read_pack(pack).slice_of(1)[0])
                handle.write(b"\xff" * 64)
            with Store.open(home) as fresh, pytest.raises(PackDamaged):
                fresh.load_video_caches(first.video_id, model.fingerprint)
        else:  # ingest finds this itself: it checks a ready video's pack header before saying "present"
            os.truncate(pack, pack.stat().st_size // 2)
    (again,) = run([one_video], home, model).files
    assert (again.status, again.video_id) == ("ingested", first.video_id)
    with Store.open(home) as store:
        assert store.get_video(first.video_id).status == "ready"
        assert torch.equal(store.load_video_caches(first.video_id, model.fingerprint, verify=True).kv, good)
