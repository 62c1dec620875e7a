"""initial schema: models, videos, segments, caches, files

Revision ID: 0001_initial
Revises:
Create Date: 2025-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("compressor", sa.String(32), nullable=False),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("fingerprint", name="uq_models_fingerprint"),
    )
    op.create_table(
        "videos",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("uid", sa.String(32), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("model_id", sa.Integer(), sa.ForeignKey("models.id", name="fk_videos_model_id"), nullable=False),
        sa.Column("segment_seconds", sa.Float(), nullable=False),
        sa.Column("frames_per_segment", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("fps", sa.Float(), nullable=True),
        sa.Column("num_frames", sa.Integer(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("rotation", sa.Integer(), nullable=True),
        sa.Column("num_segments", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("uid", name="uq_videos_uid"),
        sa.UniqueConstraint("sha256", "model_id", "segment_seconds", "frames_per_segment", name="uq_videos_identity"),
    )
    op.create_index("ix_videos_sha256", "videos", ["sha256"])
    op.create_index("ix_videos_status", "videos", ["status"])
    op.create_table(
        "segments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("video_id", sa.Integer(),
                  sa.ForeignKey("videos.id", ondelete="CASCADE", name="fk_segments_video_id"), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("start_s", sa.Float(), nullable=False),
        sa.Column("end_s", sa.Float(), nullable=False),
        sa.Column("thumbnail", sa.LargeBinary(), nullable=True),
        sa.Column("thumbnail_mime", sa.String(32), nullable=True),
        sa.UniqueConstraint("video_id", "index", name="uq_segments_video_index"),
    )
    op.create_index("ix_segments_video_id", "segments", ["video_id"])
    op.create_table(
        "caches",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("segment_id", sa.Integer(),
                  sa.ForeignKey("segments.id", ondelete="CASCADE", name="fk_caches_segment_id"), nullable=False),
        sa.Column("model_id", sa.Integer(), sa.ForeignKey("models.id", name="fk_caches_model_id"), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("compressor", sa.String(32), nullable=False),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("source_position", sa.Integer(), nullable=False),
        sa.Column("file", sa.Text(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("nbytes", sa.BigInteger(), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.UniqueConstraint("segment_id", "model_id", name="uq_caches_segment_model"),
    )
    op.create_index("ix_caches_segment_id", "caches", ["segment_id"])
    op.create_table(
        "files",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("path", name="uq_files_path"),
    )
    op.create_index("ix_files_sha256", "files", ["sha256"])


def downgrade() -> None:
    for index, table in [("ix_files_sha256", "files"), ("ix_caches_segment_id", "caches"),
                         ("ix_segments_video_id", "segments"), ("ix_videos_status", "videos"),
                         ("ix_videos_sha256", "videos")]:
        op.drop_index(index, table_name=table)
    for table in ("files", "caches", "segments", "videos", "models"):
        op.drop_table(table)
