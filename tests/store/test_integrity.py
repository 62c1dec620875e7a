"""Caches are never served wrong: damaged, truncated or swapped packs are caught, marked, and re-ingested."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from store import PackDamaged, ProbeRecord, SegmentRecord, Store, StoreError, VideoKey
from store.claims import new_owner
from store.models import VideoStatus
from store.packs import read_pack
from store.records import ModelInfo
from voco.cache import SegmentCache

FP = "ab" * 32
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "home", lease_s=30)
    yield s
    s.close()


def _caches(n, fp=FP, seed=0, shape=(2, 2, 2, 1, 8)):
    g = torch.Generator().manual_seed(seed)
    return [SegmentCache(torch.randn(*shape, generator=g), 9, fp, "voco") for _ in range(n)]


def _ingest(store, sha, caches, fp=FP, model_id=None):
    model_id = model_id or store.register_model(ModelInfo(fp, "tiny", "voco", 1, {}))
    owner = new_owner()
    claim = store.claim(VideoKey(sha, model_id, 2.0, 4, 0), fingerprint=fp, path=f"/{sha[:4]}.mp4", size=1,
                        owner=owner)
    assert claim.status == "claimed"
    store.set_probe(claim, owner, ProbeRecord(len(caches), 10.0, 10 * len(caches), 64, 48, 0, len(caches)))
    store.add_chunk(claim, owner, [SegmentRecord(j, j, j + 1.0) for j in range(len(caches))], caches)
    store.finish(claim, owner)
    return claim


def _pack(store, claim) -> Path:
    (pack,) = store.home.video_dir(claim.uid).glob("pack-*")
    return pack


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:  # in place, as a disk error or a stray writer would
        handle.seek(offset)
        handle.write(data)


def _flip_exponent(path: Path, offset: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset + 3)  # float32 little-endian: bit 30 (exponent MSB) is in the last byte
        byte = handle.read(1)[0]
        handle.seek(offset + 3)
        handle.write(bytes([byte ^ 0x40]))


@pytest.mark.parametrize("damage", ["ff64", "exponent"])
def test_damaged_bytes_are_caught_on_the_first_load_and_the_next_ingest_repairs_the_video(store, damage):
    caches = _caches(4)
    claim = _ingest(store, "11" * 32, caches)
    pack = _pack(store, claim)
    offset = read_pack(pack).slice_of(2)[0]
    if damage == "ff64":
        _overwrite(pack, offset, b"\xff" * 64)  # NaN everywhere in segment 2's first 16 values
    else:
        _flip_exponent(pack, offset)  # one value becomes ~1e38

    with pytest.raises(PackDamaged, match=r"segment 2 does not match its checksum.*python -m ingest /1111\.mp4"):
        store.load_video_caches(claim.video_id, FP)
    info = store.get_video(claim.video_id)
    assert info.status == VideoStatus.DAMAGED and "damaged" in info.error and info.segments_done == 0
    assert not pack.exists()  # its folder went with its rows
    with pytest.raises(StoreError, match="is damaged"):  # stays refused, never served
        store.load_video_caches(claim.video_id, FP)

    repaired = _ingest(store, "11" * 32, caches)  # the next ingest claims it (not "present") and redoes it
    assert repaired.video_id == claim.video_id and repaired.uid != claim.uid
    assert store.get_video(claim.video_id).status == VideoStatus.READY
    assert torch.equal(store.load_video_caches(claim.video_id, FP).kv, torch.stack([c.kv for c in caches]))


def test_a_pack_changed_after_this_process_verified_it_is_verified_again(store):
    claim = _ingest(store, "12" * 32, _caches(3))
    store.load_video_caches(claim.video_id, FP)  # verified once
    store.load_video_caches(claim.video_id, FP)  # (the second load trusts it: same file, unchanged)
    time.sleep(0.05)  # a later write gets a later mtime
    pack = _pack(store, claim)
    _overwrite(pack, read_pack(pack).slice_of(1)[0], b"\xff" * 64)
    with pytest.raises(PackDamaged, match="segment 1"):
        store.load_video_caches(claim.video_id, FP)


def test_swapped_packs_are_never_served_as_each_other(store):
    a = _ingest(store, "21" * 32, _caches(3, seed=1))
    b = _ingest(store, "22" * 32, _caches(3, seed=2))
    pack_a, pack_b = _pack(store, a), _pack(store, b)
    swap = pack_a.with_name("swap")
    os.replace(pack_a, swap)
    os.replace(pack_b, pack_a)
    os.replace(swap, pack_b)
    for claim in (a, b):
        with pytest.raises(PackDamaged, match="caches of another video"):
            store.load_video_caches(claim.video_id, FP)
        assert store.get_video(claim.video_id).status == VideoStatus.DAMAGED


def test_ingest_does_not_call_a_truncated_pack_present(store):
    """Ingest checks a ready video's pack header (cheap) before saying present (store.reset_if_files_missing)."""
    claim = _ingest(store, "31" * 32, _caches(3))
    pack = _pack(store, claim)
    os.truncate(pack, pack.stat().st_size - 100)
    problems = store.reset_if_files_missing(claim.video_id)
    assert len(problems) == 1 and "truncated" in problems[0]
    assert store.get_video(claim.video_id).status == VideoStatus.DAMAGED
    again = store.claim(VideoKey("31" * 32, claim.model_id, 2.0, 4, 0), fingerprint=FP, path="/v", size=1,
                        owner=new_owner())
    assert again.status == "claimed" and again.done == frozenset()
    assert store.reset_if_files_missing(_ingest(store, "32" * 32, _caches(2)).video_id) == []  # a good one


TRUNCATE_WHILE_LOADED = textwrap.dedent("""
    import json, os, sys
    import torch
    from store import PackDamaged, ProbeRecord, SegmentRecord, Store, VideoKey
    from store.records import ModelInfo
    from voco.cache import SegmentCache

    FP = "ab" * 32
    store = Store.open(sys.argv[1])
    model_id = store.register_model(ModelInfo(FP, "tiny", "voco", 1, {}))
    videos = []
    for n, sha in enumerate(("41" * 32, "42" * 32)):
        caches = [SegmentCache(torch.full((2, 2, 2, 4, 64), float(n + 1)), 9, FP, "voco") for _ in range(64)]
        claim = store.claim(VideoKey(sha, model_id, 2.0, 4, 0), fingerprint=FP, path=f"/{n}.mp4", size=1, owner="o")
        store.set_probe(claim, "o", ProbeRecord(64.0, 1.0, 64, 8, 8, 0, 64))
        store.add_chunk(claim, "o", [SegmentRecord(t, t, t + 1.0) for t in range(64)], caches)
        store.finish(claim, "o")
        videos.append(claim)
    held = store.load_video_caches(videos[0].video_id, FP)  # the app keeps these in its LRU
    (pack,) = store.home.video_dir(videos[0].uid).glob("pack-*")
    os.truncate(pack, 4096)  # in place, while loaded
    out = {"held_sum": float(held.kv.sum())}  # with mmap: SIGBUS here, the whole process dies
    try:
        store.load_video_caches(videos[0].video_id, FP)
    except PackDamaged as err:
        out["error"] = str(err)
    out["status"] = store.get_video(videos[0].video_id).status
    out["other_sum"] = float(store.load_video_caches(videos[1].video_id, FP).kv.sum())
    print(json.dumps(out))
""")


def test_a_pack_truncated_while_loaded_cannot_crash_the_process(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", TRUNCATE_WHILE_LOADED, str(tmp_path / "home")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"the process died (exit {run.returncode}): {run.stderr[-2000:]}"
    out = json.loads(run.stdout.strip().splitlines()[-1])
    numel = 64 * 2 * 2 * 2 * 4 * 64
    assert out["held_sum"] == numel * 1.0  # what was loaded stays intact and usable
    assert "truncated" in out["error"] and out["status"] == VideoStatus.DAMAGED  # that video: a clear error
    assert out["other_sum"] == numel * 2.0  # the others keep working
