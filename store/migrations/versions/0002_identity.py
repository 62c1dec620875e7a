"""identity v2: the decode size cap joins the video key; models remember the identity an old store knew them by

- videos.decode_max_side (frames decoded with no side above it, 0: native): part of uq_videos_identity.
  Rows made before this revision were decoded with ingest's default cap, twice the model's image
  size (read from the model row's config); rows whose model config does not say stay NULL (a new
  ingest of the file then compresses it again rather than guess).
- models.identity_version: 1 for the rows that exist now (their fingerprint is the old identity:
  sampled weights + all of voco.json, prompt and sampling included), 2 for new rows. Ingest re-keys
  version-1 rows of the model it runs (`Store.adopt_legacy_model`): in place, or merged into the
  row of the new identity. Cache rows and packs keep the fingerprint they were written with.
- The new video status "damaged" needs no schema change (status is a plain string column).

Revision ID: 0002_identity
Revises: 0001_initial
Create Date: 2026-12-02
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0002_identity"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

DEFAULT_CAP_PER_IMAGE_SIZE = 2  # voco.video.frames.decode_side_cap with decode_max_side=None


def _default_cap(config) -> int | None:
    if isinstance(config, str):
        config = json.loads(config)
    try:
        return DEFAULT_CAP_PER_IMAGE_SIZE * int(config["llava"]["vision_config"]["image_size"])
    except (KeyError, TypeError, ValueError):
        return None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("identity_version", sa.Integer(), nullable=False, server_default="2"))
    op.execute("UPDATE models SET identity_version = 1")
    with op.batch_alter_table("videos") as batch:
        batch.add_column(sa.Column("decode_max_side", sa.Integer(), nullable=True))
    conn = op.get_bind()
    models = sa.table("models", sa.column("id", sa.Integer()), sa.column("config", sa.JSON()))
    videos = sa.table("videos", sa.column("model_id", sa.Integer()), sa.column("sha256", sa.String()),
                      sa.column("decode_max_side", sa.Integer()))
    for model_id, config in conn.execute(sa.select(models.c.id, models.c.config)).all():
        cap = _default_cap(config)
        if cap is not None:
            conn.execute(sa.update(videos).where(videos.c.model_id == model_id, videos.c.sha256.is_not(None))
                         .values(decode_max_side=cap))
    with op.batch_alter_table("videos") as batch:
        batch.drop_constraint("uq_videos_identity", type_="unique")
        batch.create_unique_constraint(
            "uq_videos_identity", ["sha256", "model_id", "segment_seconds", "frames_per_segment", "decode_max_side"])


def downgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        batch.drop_constraint("uq_videos_identity", type_="unique")
        batch.create_unique_constraint("uq_videos_identity",
                                       ["sha256", "model_id", "segment_seconds", "frames_per_segment"])
        batch.drop_column("decode_max_side")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("identity_version")
