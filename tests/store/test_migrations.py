"""Schema migrations keep every row: SQLite rebuilds tables to change constraints, which must not cascade."""

import torch
from sqlalchemy import text

from store import ModelInfo, ProbeRecord, SegmentRecord, Store, VideoKey
from store.db import downgrade, make_engine, sqlite_url
from voco.cache import SegmentCache

FP = "ab" * 32


def _counts(store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in ("models", "videos", "segments",
                                                                                         "caches")}


def test_down_and_up_again_keeps_every_row_and_the_caches_load(tmp_path):
    home = tmp_path / "home"
    caches = [SegmentCache(torch.randn(2, 2, 2, 1, 8), 9, FP, "voco") for _ in range(3)]
    with Store.open(home) as store:
        model_id = store.register_model(ModelInfo(FP, "tiny", "voco", 1, {}))
        claim = store.claim(VideoKey("11" * 32, model_id, 2.0, 4, 0), fingerprint=FP, path="/v", size=1, owner="o")
        store.set_probe(claim, "o", ProbeRecord(3.0, 1.0, 3, 8, 8, 0, 3))
        store.add_chunk(claim, "o", [SegmentRecord(t, t, t + 1.0) for t in range(3)], caches)
        store.finish(claim, "o")
        before = _counts(store)
    engine = make_engine(sqlite_url(home / "voco.db"))
    downgrade(engine, "0001_initial")  # rebuilds `videos` (its unique key changes) under `segments`
    engine.dispose()
    with Store.open(home) as store:  # and up again
        assert _counts(store) == before == {"models": 1, "videos": 1, "segments": 3, "caches": 3}
        assert torch.equal(store.load_video_caches(claim.video_id, FP, verify=True).kv,
                           torch.stack([c.kv for c in caches]))


def test_opening_waits_for_a_writer_that_holds_a_new_database(tmp_path):
    """A process that holds the write lock on a database not yet in WAL mode (another process creating it)
    makes SQLite refuse the WAL switch at once, without its busy wait: opening retries until the lock is gone
    (it failed with "database is locked" before; two ingest processes starting together hit it)."""
    import sqlite3
    import threading

    home = tmp_path / "home"
    home.mkdir()
    holder = sqlite3.connect(home / "voco.db", isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE other (x)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO other VALUES (1)")
    release = threading.Timer(0.5, holder.execute, ("COMMIT",))
    release.start()
    try:
        with Store.open(home) as store, store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("SELECT count(*) FROM other").scalar() == 1  # the writer's row kept
    finally:
        release.join()
        holder.close()
