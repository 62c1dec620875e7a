"""Thumbnails move out of the segments rows (revision 0003) with every row kept, on SQLite and PostgreSQL."""

from sqlalchemy import text

from store import Store
from store.db import downgrade, make_engine, sqlite_url, upgrade

ROWS = [
    "INSERT INTO models (id, fingerprint, name, compressor, k, config, created_at) "
    "VALUES (1, 'fp', 'tiny', 'voco', 1, '{}', '2026-01-01')",
    "INSERT INTO videos (id, uid, sha256, model_id, segment_seconds, frames_per_segment, path, status, num_segments, "
    "created_at, updated_at) VALUES (1, 'u1', 'aa', 1, 1.0, 2, '/v.mp4', 'ready', 2, '2026-01-01', '2026-01-01')",
    "INSERT INTO segments (id, video_id, \"index\", start_s, end_s, thumbnail, thumbnail_mime) "
    "VALUES (1, 1, 0, 0.0, 1.0, :jpeg, 'image/jpeg'), (2, 1, 1, 1.0, 2.0, NULL, NULL)",
    "INSERT INTO caches (id, segment_id, model_id, fingerprint, compressor, k, source_position, file, \"offset\", "
    "nbytes, checksum) VALUES (1, 1, 1, 'fp', 'voco', 1, 9, 'p', 0, 8, 'c'), "
    "(2, 2, 1, 'fp', 'voco', 1, 9, 'p', 8, 8, 'c')",
]
JPEG = b"\xff\xd8jpeg"


def test_thumbnails_move_out_of_segments_and_back_with_every_row(tmp_path, db_url):
    home = tmp_path / "home"
    home.mkdir()
    engine = make_engine(db_url or sqlite_url(home / "voco.db"))
    upgrade(engine, "0001_initial")  # a store made before thumbnails had their own table
    with engine.begin() as conn:
        for statement in ROWS:
            conn.execute(text(statement), {"jpeg": JPEG} if ":jpeg" in statement else {})
    engine.dispose()
    with Store.open(home, db_url) as store:  # upgrades to the newest revision
        shown = [(s.thumbnail, s.thumbnail_mime) for s in store.segments(1, thumbnails=True)]
        assert shown == [(JPEG, "image/jpeg"), (None, None)]
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM caches")).scalar() == 2
            assert "thumbnail" not in list(conn.execute(text("SELECT * FROM segments")).keys())
        downgrade(store.engine, "0002_identity")  # and back
        with store.engine.connect() as conn:
            rows = conn.execute(text("SELECT thumbnail FROM segments ORDER BY id")).scalars().all()
            assert [bytes(r) if r is not None else None for r in rows] == [JPEG, None]
            assert conn.execute(text("SELECT count(*) FROM caches")).scalar() == 2
