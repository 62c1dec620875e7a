"""Ragged caches (ATP) in the store: ragged packs round-trip, the ingest rows point at each segment, damage is
caught, and dense packs keep their exact bytes."""

import hashlib
import json

import pytest
import torch

from store import ModelInfo, ProbeRecord, SegmentRecord, VideoKey
from store.claims import new_owner
from store.integrity import PackDamaged
from store.packs import read_ragged_pack, tensor_bytes, write_pack, write_ragged_pack
from voco.cache import RaggedSegmentCache

FP = "ab" * 32


def _ragged(n: int, seed: int = 0, layers: int = 3, span: int = 16) -> list[RaggedSegmentCache]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        lengths = torch.randint(1, span + 1, (layers,), generator=g).sort(descending=True).values
        positions = torch.cat([torch.randperm(span, generator=g)[: int(k)].sort().values + 1 for k in lengths])
        kv = torch.randn(int(lengths.sum()), 2, 2, 8, generator=g)
        out.append(RaggedSegmentCache(kv, lengths, positions, 1, span, FP, "atp"))
    return out


def _same(a: RaggedSegmentCache, b: RaggedSegmentCache) -> bool:
    return (torch.equal(a.kv, b.kv) and torch.equal(a.lengths, b.lengths) and torch.equal(a.positions, b.positions)
            and (a.source_position, a.span, a.compressor) == (b.source_position, b.span, b.compressor))


def test_ragged_pack_round_trip_and_slices_point_at_each_segment(tmp_path):
    caches = _ragged(4)
    path = tmp_path / "p.safetensors"
    slices = write_ragged_pack(path, caches, {"fingerprint": FP, "compressor": "atp", "k": 16, "video_uid": "u"})
    pack = read_ragged_pack(path)
    raw = path.read_bytes()
    for t, (cache, sl) in enumerate(zip(caches, slices, strict=True)):
        assert _same(pack.segment(t, FP, "atp"), cache)
        assert raw[sl.offset : sl.offset + sl.nbytes] == bytes(tensor_bytes(cache.kv))
        assert pack.segment_checksum(t) == sl.checksum
    assert len({sl.nbytes for sl in slices}) > 1  # ragged: segments differ in size


def test_ragged_video_through_ingest_rows_and_back(store):
    model_id = store.register_model(ModelInfo(FP, "tiny-atp", "atp", 30, {"k": 30}))
    key = VideoKey("21" * 32, model_id, 2.0, 4, 0)
    owner = new_owner()
    caches = _ragged(5, seed=1)
    claim = store.claim(key, fingerprint=FP, path="/v.mp4", size=1, owner=owner)
    store.set_probe(claim, owner, ProbeRecord(5.0, 10.0, 50, 64, 48, 0, 5))
    for i in (0, 2, 4):  # three chunks: finish writes one consolidated ragged pack
        recs = [SegmentRecord(j, j, j + 1.0) for j in range(i, min(i + 2, 5))]
        store.add_chunk(claim, owner, recs, caches[i : i + 2])
    assert store.finish(claim, owner) == 5
    loaded = store.load_video_caches(claim.video_id, FP, verify=True)
    assert all(_same(a, b) for a, b in zip(loaded.segment_caches(), caches, strict=True))
    assert store.reset_if_files_missing(claim.video_id) == []  # the header check ingest runs on a present video


def test_a_damaged_ragged_pack_is_refused(store):
    model_id = store.register_model(ModelInfo(FP, "tiny-atp", "atp", 30, {"k": 30}))
    key = VideoKey("22" * 32, model_id, 2.0, 4, 0)
    owner = new_owner()
    claim = store.claim(key, fingerprint=FP, path="/v.mp4", size=1, owner=owner)
    store.set_probe(claim, owner, ProbeRecord(3.0, 10.0, 30, 64, 48, 0, 3))
    store.add_chunk(claim, owner, [SegmentRecord(j, j, j + 1.0) for j in range(3)], _ragged(3, seed=2))
    store.finish(claim, owner)
    pack_path = next(store.home.video_dir(claim.uid).rglob("*.safetensors"))
    data = bytearray(pack_path.read_bytes())
    data[-3] ^= 0xFF  # the last tensor in the file: a position or a span
    pack_path.write_bytes(bytes(data))
    with pytest.raises(PackDamaged):
        store.load_video_caches(claim.video_id, FP, verify=True)


def test_dense_packs_keep_their_exact_bytes(tmp_path):
    """The dense pack format is unchanged: same data bytes and same header (safetensors orders header keys freely,
    so the header is compared parsed). Golden values from the code before ragged packs existed."""
    kv = (torch.arange(3 * 2 * 2 * 2 * 4 * 8, dtype=torch.float32) / 7).reshape(3, 2, 2, 2, 4, 8)
    path = tmp_path / "pack.safetensors"
    write_pack(path, kv, [9, 9, 9], {"fingerprint": FP, "compressor": "voco", "k": 4, "video_uid": "u"})
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert hashlib.sha256(raw[8 + n :]).hexdigest() == (
        "e29bcb05c91b9c8c73ec3f2f5bf6fb336dd7b00e1188ede9b8017ea32c33603a")
    assert json.loads(raw[8 : 8 + n]) == {
        "__metadata__": {"compressor": "voco", "fingerprint": FP, "format": "voco-cache-pack/1", "k": "4",
                         "video_uid": "u"},
        "kv": {"data_offsets": [24, 3096], "dtype": "F32", "shape": [3, 2, 2, 2, 4, 8]},
        "source_position": {"data_offsets": [0, 24], "dtype": "I64", "shape": [3]}}
