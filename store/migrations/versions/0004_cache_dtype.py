"""int8 caches: how a video's caches are stored joins the video key

- videos.cache_dtype: `model` (as computed, in the model's dtype: every row made before this revision) or `int8`
  (store/quant.py); part of uq_videos_identity, so int8 and float caches of one file are two videos, never mixed.
  Packs of int8 videos say so in their metadata; packs of `model` videos are unchanged.

Revision ID: 0004_cache_dtype
Revises: 0003_thumbnails
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_cache_dtype"
down_revision = "0003_thumbnails"
branch_labels = None
depends_on = None

KEY = ["sha256", "model_id", "segment_seconds", "frames_per_segment", "decode_max_side"]


def upgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        batch.add_column(sa.Column("cache_dtype", sa.String(16), nullable=False, server_default="model"))
        batch.drop_constraint("uq_videos_identity", type_="unique")
        batch.create_unique_constraint("uq_videos_identity", [*KEY, "cache_dtype"])


def downgrade() -> None:
    # int8 videos have no place in the old key (a float video of the same file may exist): they go, with their
    # segments and cache rows (their packs stay on disk until the video folder is swept or removed)
    op.execute("DELETE FROM caches WHERE segment_id IN (SELECT segments.id FROM segments JOIN videos "
               "ON segments.video_id = videos.id WHERE videos.cache_dtype != 'model')")
    op.execute("DELETE FROM thumbnails WHERE segment_id IN (SELECT segments.id FROM segments JOIN videos "
               "ON segments.video_id = videos.id WHERE videos.cache_dtype != 'model')")
    op.execute("DELETE FROM segments WHERE video_id IN (SELECT id FROM videos WHERE cache_dtype != 'model')")
    op.execute("DELETE FROM videos WHERE cache_dtype != 'model'")
    with op.batch_alter_table("videos") as batch:
        batch.drop_constraint("uq_videos_identity", type_="unique")
        batch.create_unique_constraint("uq_videos_identity", KEY)
        batch.drop_column("cache_dtype")
