"""int8 videos in the store: chunks and packs hold int8 values and scales, each row's slice and checksum cover both,
the reader gives the model's dtype back, and an int8 video is another video than the float one of the same file."""

import pytest
import torch
from sqlalchemy import select

from store import ModelInfo, PackDamaged, ProbeRecord, SegmentRecord, Store, StoreError, VideoKey, quant
from store.claims import new_owner
from store.db import downgrade, make_engine, sqlite_url
from store.files import checksum
from store.integrity import Expected, layout_problem
from store.models import Cache, Segment
from store.packs import read_pack, read_ragged_pack
from store.quant import INT8, SCALE_BYTES, round_trip
from voco.cache import RaggedSegmentCache, SegmentCache

FP = "cd" * 32
SHA = "12" * 32


def _caches(n: int, seed: int = 0) -> list[SegmentCache]:
    g = torch.Generator().manual_seed(seed)
    return [SegmentCache(torch.randn(3, 2, 2, 2, 48, generator=g) * 3, 9, FP, "voco") for _ in range(n)]


def _ingest(store: Store, caches, cache_dtype: str, chunk: int = 2, sha: str = SHA):
    model_id = store.register_model(ModelInfo(FP, "tiny", "voco", 2, {}))
    owner = new_owner()
    claim = store.claim(VideoKey(sha, model_id, 2.0, 4, 0, cache_dtype), fingerprint=FP, path="/v.mp4", size=1,
                        owner=owner)
    n = len(caches)
    store.set_probe(claim, owner, ProbeRecord(float(n), 10.0, 10 * n, 64, 48, 0, n))
    for i in range(0, n, chunk):  # several chunks: finish copies their slices into one pack
        store.add_chunk(claim, owner, [SegmentRecord(j, j, j + 1.0) for j in range(i, min(i + chunk, n))],
                        caches[i:i + chunk])
    assert store.finish(claim, owner) == n
    return claim


def _rows(store: Store, video_id: int) -> list[tuple]:
    """(file, offset, nbytes, checksum) of each segment's cache row, in index order."""
    with store.read() as s:
        return s.execute(select(Cache.file, Cache.offset, Cache.nbytes, Cache.checksum)
                         .join(Segment, Cache.segment_id == Segment.id).where(Segment.video_id == video_id)
                         .order_by(Segment.index)).all()


def test_an_int8_video_stores_values_and_scales_per_segment_and_loads_in_the_model_dtype(store):
    caches = _caches(5)
    claim = _ingest(store, caches, INT8)
    rows = _rows(store, claim.video_id)
    pack = read_pack(store.home.absolute(rows[0][0]))
    assert pack.cache_dtype == INT8 and pack.kv.dtype == torch.int8 and pack.kv.shape[-1] == 48 + SCALE_BYTES
    raw = store.home.absolute(rows[0][0]).read_bytes()
    for t, (_, offset, nbytes, digest) in enumerate(rows):
        assert nbytes == 3 * 2 * 2 * 2 * (48 + SCALE_BYTES) <= 0.27 * caches[t].nbytes
        assert checksum(raw[offset:offset + nbytes]) == digest  # a segment's bytes: its int8 values and its scales
    loaded = store.load_video_caches(claim.video_id, FP, verify=True)
    assert loaded.kv.dtype == torch.float32
    assert torch.equal(loaded.kv, round_trip(torch.stack([c.kv for c in caches])))
    assert store.get_video(claim.video_id).cache_dtype == INT8
    assert store.reset_if_files_missing(claim.video_id) == []  # the header check a present video gets


def test_int8_and_float_caches_of_one_file_are_two_videos(store):
    caches = _caches(3)
    floats = _ingest(store, caches, "model")
    ints = _ingest(store, caches, INT8)
    assert ints.video_id != floats.video_id and ints.uid != floats.uid
    assert torch.equal(store.load_video_caches(floats.video_id, FP).kv, torch.stack([c.kv for c in caches]))
    assert {v.cache_dtype for v in store.list_videos()} == {"model", INT8}
    with pytest.raises(ValueError, match="VideoKey.cache_dtype must be one of model, int8"):
        store.claim(VideoKey(SHA, ints.model_id, 2.0, 4, 0, "int4"), fingerprint=FP, path="/v", size=1, owner="o")


@pytest.mark.parametrize("where", ["values", "scale"])
def test_a_corrupted_int8_slice_is_caught_by_its_checksum(store, where):
    claim = _ingest(store, _caches(4, seed=1), INT8, chunk=4)
    file, offset, nbytes, _ = _rows(store, claim.video_id)[2]
    path = store.home.absolute(file)
    data = bytearray(path.read_bytes())
    byte = offset + (5 if where == "values" else 48 + 1)  # segment 2: a value, or the high byte of a scale
    data[byte] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(PackDamaged, match="segment 2 does not match its checksum"):
        store.load_video_caches(claim.video_id, FP, verify=True)
    assert store.get_video(claim.video_id).status == "damaged"


def test_a_pack_stored_otherwise_than_its_video_says_is_refused():
    expected = Expected(1, "u", frozenset({FP}), 2, 100, 80, cache_dtype="model")
    meta = {"video_uid": "u", "fingerprint": FP, "cache_dtype": "int8", "kv_dtype": "float32"}
    assert "stored as int8, the database says model" in layout_problem(meta, 2, 100, 80, expected)
    assert layout_problem({**meta, "cache_dtype": "model"}, 2, 100, 80, expected) is None


def test_ragged_caches_are_stored_as_int8_the_same_way(store):
    g = torch.Generator().manual_seed(4)
    caches = []
    for n in (5, 3, 7):
        lengths = torch.tensor([n, n - 1, 1])
        positions = torch.cat([torch.arange(1, int(k) + 1) for k in lengths])
        caches.append(RaggedSegmentCache(torch.randn(int(lengths.sum()), 2, 2, 48, generator=g), lengths, positions,
                                         1, 16, FP, "atp"))
    claim = _ingest(store, caches, INT8, chunk=2)
    rows = _rows(store, claim.video_id)
    pack = read_ragged_pack(store.home.absolute(rows[0][0]))
    assert pack.kv.dtype == torch.int8 and [r[2] for r in rows] == [int(c.lengths.sum()) * 2 * 2 * 50 for c in caches]
    assert [pack.segment_checksum(t) for t in range(3)] == [r[3] for r in rows]
    loaded = store.load_video_caches(claim.video_id, FP, verify=True).segment_caches()
    for got, want in zip(loaded, caches, strict=True):
        assert got.kv.dtype == torch.float32 and torch.equal(got.kv, round_trip(want.kv))
        assert torch.equal(got.positions, want.positions) and torch.equal(got.lengths, want.lengths)


def test_migrating_down_drops_int8_videos_and_keeps_the_rest(tmp_path):
    home = tmp_path / "home"
    caches = _caches(2)
    with Store.open(home) as store:
        floats = _ingest(store, caches, "model")
        _ingest(store, caches, INT8)
    engine = make_engine(sqlite_url(home / "voco.db"))
    downgrade(engine, "0003_thumbnails")  # the key without cache_dtype: only the float video fits it
    engine.dispose()
    with Store.open(home) as store:  # and up again
        assert [(v.id, v.cache_dtype) for v in store.list_videos()] == [(floats.video_id, "model")]
        assert torch.equal(store.load_video_caches(floats.video_id, FP, verify=True).kv,
                           torch.stack([c.kv for c in caches]))


def test_a_pack_of_an_unknown_int8_scheme_is_refused_but_not_marked_damaged(store, monkeypatch):
    """What an older version meets in a pack a newer one wrote: an error that names it, and the video left alone."""
    claim = _ingest(store, _caches(2), INT8)
    monkeypatch.setattr(quant, "QUANT_SCHEME", "hadamard-absmax-int8-vector/2")
    with pytest.raises(StoreError, match="a newer version wrote it") as caught:
        store.load_video_caches(claim.video_id, FP, verify=True)
    assert not isinstance(caught.value, PackDamaged) and store.get_video(claim.video_id).status == "ready"
