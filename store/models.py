"""SQLAlchemy 2 models of the store: models, videos, segments, thumbnails, caches, files.

Portable on purpose (SQLite by default, PostgreSQL through the same code): plain types, no
dialect-specific SQL. The schema is created and upgraded by the Alembic migrations in
`store/migrations/` (never by `create_all`), so a change here needs a new revision there.

A *video* row is one file's content (sha256) ingested by one model (fingerprint) with one sampling
setting (segment_seconds, frames_per_segment, decode_max_side), its caches stored one way (cache_dtype): that is its
identity, held by a unique constraint,
which also makes the row the claim two ingest processes race for (`claimed_by`, `heartbeat_at`).
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class VideoStatus(StrEnum):
    """A video's status in the database (`Video.status`).

    Stored as its plain string (a String column), so the rows are the same whoever wrote them; read back it is a
    `str`, which compares equal to the member.
    """

    PENDING = "pending"
    """Claimed by an ingest process (or left by a killed one: resumable)."""
    READY = "ready"
    """Every segment has its cache, in the consolidated pack file."""
    FAILED = "failed"
    """See `Video.error`; retried by the next ingest run."""
    DAMAGED = "damaged"
    """Its cache file failed a check (store/integrity.py); the next ingest run redoes it."""
    LIVE = "live"
    """Being followed (`python -m ingest --follow`): segments are stored as they complete and can be asked about;
    ready once its input ends. Claimed like a pending video (a killed follower's successor resumes it)."""

    @property
    def held(self) -> bool:
        """Written under a claim (pending or live): its holder's heartbeat keeps it."""
        return self in (VideoStatus.PENDING, VideoStatus.LIVE)


HELD_STATUSES = (VideoStatus.PENDING, VideoStatus.LIVE)
"""Statuses of a video written under a claim (`VideoStatus.held`)."""


def utcnow() -> datetime:
    """Naive UTC (portable across SQLite and PostgreSQL `timestamp without time zone`)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)  # noqa: UP017 (py310 target)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Model(Base):
    """A compression model, known by its fingerprint (weights + compression settings, voco/identity.py)."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    identity_version: Mapped[int] = mapped_column(Integer, default=2, server_default="2")
    """1: `fingerprint` is the identity older code computed (sampled weights + all of voco.json), for rows made
    before migration 0002; ingest re-keys such rows (`Store.adopt_legacy_model`). 2: voco/identity.py."""
    name: Mapped[str] = mapped_column(Text)
    compressor: Mapped[str] = mapped_column(String(32))
    k: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    videos: Mapped[list[Video]] = relationship(back_populates="model")


class Video(Base):
    """One file content ingested by one model with one sampling setting, its caches stored one way."""

    __tablename__ = "videos"
    __table_args__ = (
        UniqueConstraint("sha256", "model_id", "segment_seconds", "frames_per_segment", "decode_max_side",
                         "cache_dtype", name="uq_videos_identity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    """Random id naming the video's cache folder (unique across databases sharing a home)."""
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    """Content hash; NULL only for a failed file that could not be read at all."""
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    segment_seconds: Mapped[float] = mapped_column(Float)
    frames_per_segment: Mapped[int] = mapped_column(Integer)
    decode_max_side: Mapped[int | None] = mapped_column(Integer)
    """Frames were decoded with no side above this (0: native size); NULL only for an unreadable file."""
    cache_dtype: Mapped[str] = mapped_column(String(16), default="model", server_default="model")
    """How its caches are stored (store/quant.py): `model` (as computed) or `int8`. Part of the identity, so int8
    and float caches of one file are two videos, never mixed."""
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int | None] = mapped_column(BigInteger)
    duration: Mapped[float | None] = mapped_column(Float)
    fps: Mapped[float | None] = mapped_column(Float)
    num_frames: Mapped[int | None] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    rotation: Mapped[int | None] = mapped_column(Integer)
    num_segments: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), index=True)
    """A `VideoStatus` (read back: its plain string)."""
    error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    """Owner token of the ingest process working on it: "host:pid:random"."""
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    model: Mapped[Model] = relationship(back_populates="videos")
    segments: Mapped[list[Segment]] = relationship(
        back_populates="video", cascade="all, delete-orphan", passive_deletes=True, order_by="Segment.index"
    )


class Segment(Base):
    """A time span of a video; a row exists once its cache is stored."""

    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("video_id", "index", name="uq_segments_video_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    video_id: Mapped[int] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)

    video: Mapped[Video] = relationship(back_populates="segments")
    caches: Mapped[list[Cache]] = relationship(
        back_populates="segment", cascade="all, delete-orphan", passive_deletes=True
    )
    thumb: Mapped[Thumbnail | None] = relationship(
        back_populates="segment", cascade="all, delete-orphan", passive_deletes=True, lazy="selectin"
    )
    """Loaded with the segments in one more query (selectin), never joined into the segment rows."""

    @property
    def thumbnail(self) -> bytes | None:
        """A small JPEG of the frame on screen at the segment's middle (display orientation)."""
        return self.thumb.data if self.thumb is not None else None

    @property
    def thumbnail_mime(self) -> str | None:
        return self.thumb.mime if self.thumb is not None else None


class Thumbnail(Base):
    """A segment's thumbnail image, in a table of its own.

    Out of `segments` so that the rows every query scans (timelines, cache layout checks, claims) stay a
    few dozen bytes on a shared PostgreSQL instead of carrying kilobytes of BYTEA each.
    """

    __tablename__ = "thumbnails"

    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True)
    mime: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary)

    segment: Mapped[Segment] = relationship(back_populates="thumb")


class Cache(Base):
    """Where one segment's `SegmentCache` bytes lie: a slice of a safetensors file under the home."""

    __tablename__ = "caches"
    __table_args__ = (UniqueConstraint("segment_id", "model_id", name="uq_caches_segment_model"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    fingerprint: Mapped[str] = mapped_column(String(64))
    """The model identity the pack was written under (its metadata says the same; kept when a model is re-keyed)."""
    compressor: Mapped[str] = mapped_column(String(32))
    k: Mapped[int] = mapped_column(Integer)
    source_position: Mapped[int] = mapped_column(Integer)
    file: Mapped[str] = mapped_column(Text)
    """Path relative to the home folder (POSIX separators)."""
    offset: Mapped[int] = mapped_column(BigInteger)
    """Byte offset of this segment's kv slice inside `file`."""
    nbytes: Mapped[int] = mapped_column(BigInteger)
    checksum: Mapped[str] = mapped_column(String(64))
    """blake2b-128 hex of the slice bytes."""

    segment: Mapped[Segment] = relationship(back_populates="caches")


class File(Base):
    """Every path a content hash was seen at (re-ingesting under another name is free)."""

    __tablename__ = "files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    seen_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
