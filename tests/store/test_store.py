import os
import threading
from datetime import timedelta

import pytest
import torch
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text, update

from store import (
    ClaimLost,
    FingerprintMismatch,
    ModelInfo,
    NotFound,
    ProbeRecord,
    SegmentRecord,
    Store,
    StoreError,
    VideoKey,
)
from store.claims import holder_alive, new_owner
from store.models import Base, Video, utcnow
from voco.cache import SegmentCache

FP = "ab" * 32
OTHER_FP = "cd" * 32


def _model(store, fp=FP):
    return store.register_model(ModelInfo(fp, "tiny", "voco", 1, {"k": 1}))


def _caches(n, fp=FP, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [SegmentCache(torch.randn(2, 2, 2, 1, 8, generator=g), 9, fp, "voco") for _ in range(n)]


def _ingest(store, key, owner, caches, batch=2):
    claim = store.claim(key, fingerprint=FP, path="/v.mp4", size=1, owner=owner)
    assert claim.status == "claimed"
    store.set_probe(claim, owner, ProbeRecord(len(caches), 10.0, 10 * len(caches), 64, 48, 0, len(caches)))
    for i in range(0, len(caches), batch):
        recs = [SegmentRecord(j, j, j + 1.0, b"jpg", "image/jpeg") for j in range(i, min(i + batch, len(caches)))]
        store.add_chunk(claim, owner, recs, caches[i:i + batch])
    assert store.finish(claim, owner) == len(caches)
    return claim


def test_migrations_build_exactly_the_models_schema(store):
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], f"models and migrations differ: add a revision in store/migrations ({diff})"
        if store.engine.dialect.name == "sqlite":
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 1000
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    Store.open(store.home.root, store.url).close()  # reopening (upgrade again) is a no-op


def test_a_postgresql_url_without_a_driver_uses_psycopg(tmp_path, postgres_url):
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with Store.open(tmp_path, db_url=plain) as store:
        assert store.engine.dialect.driver == "psycopg" and store.list_videos() == []


def test_bad_database_url_fails_with_a_clear_message(tmp_path):
    with pytest.raises(StoreError, match="bad database URL"):
        Store.open(tmp_path, db_url="not a url")
    with pytest.raises(StoreError, match="driver|cannot use"):
        Store.open(tmp_path, db_url="nosuchdialect://x/y")


def test_round_trip_one_pack_per_video(store):
    key = VideoKey("11" * 32, _model(store), 2.0, 4, 0)
    caches = _caches(5)
    claim = _ingest(store, key, new_owner(), caches)
    packed = store.load_video_caches(claim.video_id, FP, verify=True)
    assert packed.kv.shape == (5, 2, 2, 2, 1, 8)
    assert torch.equal(packed.kv, torch.stack([c.kv for c in caches]))
    assert [(g.start_s, g.end_s) for g in store.segments(claim.video_id)] == [(float(i), i + 1.0) for i in range(5)]
    loaded = store.load_caches(claim.video_id, FP)
    assert [c.source_position for c in loaded] == [9] * 5 and loaded[0].fingerprint == FP
    files = [p for p in store.home.video_dir(claim.uid).rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].name.startswith("pack-")  # chunks consolidated and removed
    info = store.get_video(claim.video_id)
    assert (info.status, info.num_segments, info.segments_done) == ("ready", 5, 5)
    assert [s.thumbnail for s in store.segments(claim.video_id, thumbnails=True)] == [b"jpg"] * 5
    times = store.segments(claim.video_id)  # times only: no thumbnail read
    assert [(s.index, s.start_s, s.thumbnail) for s in times] == [(i, float(i), None) for i in range(5)]


def test_caches_of_one_model_are_never_served_to_another(store):
    key = VideoKey("12" * 32, _model(store), 2.0, 4, 0)
    claim = _ingest(store, key, new_owner(), _caches(2))
    with pytest.raises(FingerprintMismatch, match="ingest it again with this model"):
        store.load_caches(claim.video_id, OTHER_FP)
    other = store.claim(key, fingerprint=FP, path="/v.mp4", size=1, owner=new_owner())
    assert other.status == "present"
    pending = store.claim(VideoKey("13" * 32, key.model_id, 2.0, 4, 0), fingerprint=FP, path="/w", size=1,
                          owner=(owner := new_owner()))
    with pytest.raises(StoreError, match="cannot be stored"):
        store.add_chunk(pending, owner, [SegmentRecord(0, 0, 1)], _caches(1, fp=OTHER_FP))


def test_claims_present_busy_and_takeover_of_a_dead_or_silent_holder(store):
    key = VideoKey("22" * 32, _model(store), 2.0, 4, 0)
    a, b = new_owner(), new_owner()
    first = store.claim(key, fingerprint=FP, path="/v", size=1, owner=a)
    assert first.status == "claimed"
    assert store.claim(key, fingerprint=FP, path="/v", size=1, owner=b).status == "busy"
    assert store.claim(key, fingerprint=FP, path="/v", size=1, owner=a).status == "busy"  # never twice at once
    store.set_probe(first, a, ProbeRecord(3, 10, 30, 64, 48, 0, 3))
    store.add_chunk(first, a, [SegmentRecord(0, 0, 1)], _caches(1))
    # a's heartbeat lapses: b takes over and resumes after the stored segment
    with store.write() as s:
        s.execute(update(Video).values(heartbeat_at=utcnow() - timedelta(seconds=3600)))
        s.commit()
    second = store.claim(key, fingerprint=FP, path="/v", size=1, owner=b)
    assert second.status == "claimed" and second.done == {0}
    with pytest.raises(ClaimLost):  # a may not write any more
        store.add_chunk(first, a, [SegmentRecord(1, 1, 2)], _caches(1))
    store.add_chunk(second, b, [SegmentRecord(1, 1, 2), SegmentRecord(2, 2, 3)], _caches(2))
    store.finish(second, b)
    assert store.get_video(second.video_id).status == "ready"


def test_holder_on_this_host_with_a_dead_pid_is_stale_at_once():
    now = utcnow()
    host = new_owner().split(":")[0]
    assert holder_alive(f"{host}:{os.getpid()}:x", now, 60, now)
    assert not holder_alive(f"{host}:999999999:x", now, 60, now)
    assert holder_alive("elsewhere:1:x", now, 60, now)
    assert not holder_alive("elsewhere:1:x", now - timedelta(seconds=61), 60, now)
    assert not holder_alive(None, now, 60, now)


def test_release_and_fail_keep_stored_segments_for_the_next_run(store):
    key = VideoKey("33" * 32, _model(store), 2.0, 4, 0)
    a = new_owner()
    claim = store.claim(key, fingerprint=FP, path="/v", size=1, owner=a)
    store.set_probe(claim, a, ProbeRecord(2, 10, 20, 64, 48, 0, 2))
    store.add_chunk(claim, a, [SegmentRecord(0, 0, 1)], _caches(1))
    store.fail(claim, a, "decoder exploded")
    info = store.get_video(claim.video_id)
    assert (info.status, info.error, info.segments_done) == ("failed", "decoder exploded", 1)
    with pytest.raises(StoreError, match="is failed: decoder exploded"):
        store.load_caches(claim.video_id, FP)
    retry = store.claim(key, fingerprint=FP, path="/v", size=1, owner=(b := new_owner()))
    assert retry.status == "claimed" and retry.done == {0}
    assert store.release(b) == 1
    assert store.claim(key, fingerprint=FP, path="/v", size=1, owner=new_owner()).status == "claimed"


def test_sweep_deletes_files_no_row_points_at(store):
    key = VideoKey("44" * 32, _model(store), 2.0, 4, 0)
    a = new_owner()
    claim = store.claim(key, fingerprint=FP, path="/v", size=1, owner=a)
    store.set_probe(claim, a, ProbeRecord(2, 10, 20, 64, 48, 0, 2))
    kept = store.add_chunk(claim, a, [SegmentRecord(0, 0, 1)], _caches(1))
    orphan = kept.with_name("000001-000001-dead.safetensors")
    orphan.write_bytes(kept.read_bytes())  # a chunk whose transaction never committed
    temp = kept.with_name(kept.name + ".tmp-1-abc")
    temp.write_bytes(b"half")
    assert sorted(store.prepare(claim)) == sorted([orphan, temp])
    assert kept.exists()


def test_remove_deletes_rows_then_files_and_refuses_a_live_ingest(store):
    model_id = _model(store)
    claim = _ingest(store, VideoKey("55" * 32, model_id, 2.0, 4, 0), new_owner(), _caches(3))
    folder = store.home.video_dir(claim.uid)
    assert folder.is_dir()
    store.remove(claim.video_id)
    assert not folder.exists() and store.list_videos() == []
    with pytest.raises(NotFound):
        store.remove(claim.video_id)
    busy = store.claim(VideoKey("66" * 32, model_id, 2.0, 4, 0), fingerprint=FP, path="/b", size=1, owner=new_owner())
    with pytest.raises(StoreError, match="being ingested"):
        store.remove(busy.video_id)
    store.remove(busy.video_id, force=True)


def test_unreadable_files_keep_one_failed_row_per_path(store):
    model_id = _model(store)
    for _ in range(2):
        store.record_unreadable(model_id=model_id, segment_seconds=2.0, frames_per_segment=4, path="/x.mp4",
                                error="permission denied")
    failed = store.list_videos(status="failed")
    assert len(failed) == 1 and failed[0].error == "permission denied"
    store.forget_unreadable(model_id=model_id, path="/x.mp4")
    assert store.list_videos() == []


def test_readers_are_not_blocked_by_a_writer(store):
    """WAL: the app lists videos while ingest holds the write lock."""
    model_id = _model(store)
    _ingest(store, VideoKey("77" * 32, model_id, 2.0, 4, 0), new_owner(), _caches(1))
    with store.write() as writer:
        writer.execute(update(Video).values(error="being written"))  # holds the write lock, uncommitted
        result = []
        t = threading.Thread(target=lambda: result.append(store.list_videos()))
        t.start()
        t.join(timeout=10)
        assert result and result[0][0].error is None
        writer.rollback()


def test_files_remember_hashes_and_other_paths(store):
    store.remember_file("/a.mp4", "99" * 32, 10, 123)
    assert store.known_sha256("/a.mp4", 10, 123) == "99" * 32
    assert store.known_sha256("/a.mp4", 10, 124) is None  # touched: hash again
    store.remember_file("/a.mp4", "98" * 32, 11, 124)
    assert store.known_sha256("/a.mp4", 11, 124) == "98" * 32


def test_schema_and_statements_compile_for_postgresql():
    """No SQLite-only SQL: the tables and the claim statements render for PostgreSQL (no server needed)."""
    from sqlalchemy import select
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateIndex, CreateTable

    from store.models import Cache, Segment

    dialect = postgresql.dialect()
    ddl = "\n".join(str(CreateTable(t).compile(dialect=dialect)) for t in Base.metadata.sorted_tables)
    ddl += "\n".join(str(CreateIndex(i).compile(dialect=dialect)) for t in Base.metadata.sorted_tables
                     for i in t.indexes)
    assert "BYTEA" in ddl and "JSON" in ddl and '"offset" BIGINT' in ddl and "AUTOINCREMENT" not in ddl
    claim = update(Video).where(Video.id == 1, Video.claimed_by == "a").values(claimed_by="b", heartbeat_at=utcnow())
    rows = select(Segment, Cache).join(Cache, Cache.segment_id == Segment.id).order_by(Segment.index)
    for statement in (claim, rows):
        assert "PRAGMA" not in str(statement.compile(dialect=dialect))


def test_rows_that_do_not_match_the_pack_are_refused(store):
    from store.models import Cache, Segment

    claim = _ingest(store, VideoKey("22" * 32, _model(store), 2.0, 4, 0), new_owner(), _caches(4))
    with store.write() as s:  # one row points one byte off
        seg = s.scalars(select_segment(Segment, claim.video_id, 2)).one()
        s.execute(update(Cache).where(Cache.segment_id == seg.id).values(offset=Cache.offset + 1))
        s.commit()
    with pytest.raises(StoreError, match="do not describe one stacked pack"):
        store.load_video_caches(claim.video_id, FP)
    with store.write() as s:  # a missing row
        seg = s.scalars(select_segment(Segment, claim.video_id, 2)).one()
        s.delete(s.scalars(select_segment(Cache, seg.id)).one())
        s.commit()
    with pytest.raises(StoreError, match="incomplete"):
        store.load_video_caches(claim.video_id, FP)


def select_segment(model, key, index=None):
    from sqlalchemy import select

    from store.models import Cache, Segment

    if model is Segment:
        return select(Segment).where(Segment.video_id == key, Segment.index == index)
    return select(Cache).where(Cache.segment_id == key)


@pytest.mark.parametrize("links_work", [True, False])
def test_a_single_chunk_becomes_the_pack_by_link_or_by_copy(store, monkeypatch, links_work):
    real_link, linked = os.link, []

    def link(src, dst):
        if not links_work:
            raise OSError("hard links not supported here")
        linked.append(dst)
        real_link(src, dst)

    monkeypatch.setattr(os, "link", link)
    caches = _caches(3)
    claim = _ingest(store, VideoKey("44" * 32, _model(store), 2.0, 4, 0), new_owner(), caches, batch=3)
    assert len(linked) == (1 if links_work else 0)
    packed = store.load_video_caches(claim.video_id, FP, verify=True)
    assert torch.equal(packed.kv, torch.stack([c.kv for c in caches]))
    files = [p for p in store.home.video_dir(claim.uid).rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].name.startswith("pack-")  # the chunk's name is gone either way


@pytest.mark.parametrize("in_list_max", [500, 0])  # 0: more unfinished videos than one IN list names
def test_listing_counts_stored_segments_of_unfinished_videos_and_ready_ones_by_their_length(store, monkeypatch,
                                                                                           in_list_max):
    from store import reader

    monkeypatch.setattr(reader, "IN_LIST_MAX", in_list_max)
    model = _model(store)
    ready = _ingest(store, VideoKey("31" * 32, model, 2.0, 4, 0), new_owner(), _caches(5))
    owner = new_owner()
    partial = store.claim(VideoKey("32" * 32, model, 2.0, 4, 0), fingerprint=FP, path="/p.mp4", size=1, owner=owner)
    store.set_probe(partial, owner, ProbeRecord(6, 10.0, 60, 64, 48, 0, 6))
    store.add_chunk(partial, owner, [SegmentRecord(j, j, j + 1.0) for j in range(3)], _caches(3))
    listed = {v.id: (v.status, v.num_segments, v.segments_done) for v in store.list_videos()}
    assert listed == {ready.video_id: ("ready", 5, 5), partial.video_id: ("pending", 6, 3)}
    assert [v.id for v in store.list_videos(status="pending")] == [partial.video_id]
    assert store.ready_rows(FP) == {ready.video_id: (store.get_video(ready.video_id).uid, 5)}
    assert store.ready_rows(OTHER_FP) == {}
