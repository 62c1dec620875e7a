"""thumbnails in a table of their own (out of the segments rows)

Revision ID: 0003_thumbnails
Revises: 0002_identity
Create Date: 2026-12-02

Thumbnails move from `segments.thumbnail`/`thumbnail_mime` to `thumbnails(segment_id, mime, data)`, row
for row, so the segment rows every query scans stay small on a shared database. The columns go with a
plain `ALTER TABLE ... DROP COLUMN` (SQLite >= 3.35, PostgreSQL): no table rebuild.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_thumbnails"
down_revision = "0002_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "thumbnails",
        sa.Column("segment_id", sa.Integer(),
                  sa.ForeignKey("segments.id", ondelete="CASCADE", name="fk_thumbnails_segment_id"),
                  primary_key=True),
        sa.Column("mime", sa.String(32), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    op.execute("INSERT INTO thumbnails (segment_id, mime, data) "
               "SELECT id, COALESCE(thumbnail_mime, 'image/jpeg'), thumbnail FROM segments "
               "WHERE thumbnail IS NOT NULL")
    _drop_column("segments", "thumbnail")
    _drop_column("segments", "thumbnail_mime")


def downgrade() -> None:
    op.add_column("segments", sa.Column("thumbnail", sa.LargeBinary(), nullable=True))
    op.add_column("segments", sa.Column("thumbnail_mime", sa.String(32), nullable=True))
    op.execute("UPDATE segments SET "
               "thumbnail = (SELECT data FROM thumbnails WHERE thumbnails.segment_id = segments.id), "
               "thumbnail_mime = (SELECT mime FROM thumbnails WHERE thumbnails.segment_id = segments.id)")
    op.drop_table("thumbnails")


def _drop_column(table: str, column: str) -> None:
    op.execute(f'ALTER TABLE {table} DROP COLUMN "{column}"')  # plain SQL on SQLite and PostgreSQL alike
