"""Claims: which ingest process works on which video, so two processes never do the same work.

The video row itself is the claim. Its identity (sha256, model, sampling) is unique, so only one
INSERT wins; a process owns a pending row while `claimed_by` holds its owner token and it keeps
`heartbeat_at` fresh (a heartbeat thread, see ingest). A claim is stale, and may be taken over by a
compare-and-swap UPDATE, when its heartbeat is older than the lease, or at once when the owner ran
on this host and its pid is gone (a killed process). On SQLite every claim step runs in a
`BEGIN IMMEDIATE` transaction; on PostgreSQL the unique constraint and the conditional UPDATE give
the same guarantee.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, select, update
from sqlalchemy.exc import IntegrityError

from store.db import SessionFactory
from store.models import HELD_STATUSES, Segment, Video, VideoStatus, utcnow
from store.quant import check_cache_dtype
from store.records import Claim, ClaimStatus, VideoKey

DEFAULT_LEASE_S = 120.0


def new_owner() -> str:
    """An owner token: host:pid:random (the random part tells apart two stores in one process)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def holder_alive(owner: str | None, heartbeat_at: datetime | None, lease_s: float, now: datetime) -> bool:
    """Whether the process holding a claim may still be working on it."""
    if owner is None or heartbeat_at is None:
        return False
    if now - heartbeat_at > timedelta(seconds=lease_s):
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host == socket.gethostname() and pid_text.isdigit():
        return _pid_alive(int(pid_text))
    return True


def _identity(key: VideoKey):
    return and_(Video.sha256 == key.sha256, Video.model_id == key.model_id,
                Video.segment_seconds == key.segment_seconds, Video.frames_per_segment == key.frames_per_segment,
                Video.decode_max_side == key.decode_max_side, Video.cache_dtype == key.cache_dtype)


def _as_claim(video: Video, status: ClaimStatus, fingerprint: str, done: frozenset[int] = frozenset(),
              holder: str | None = None) -> Claim:
    return Claim(status=status, video_id=video.id, uid=video.uid, model_id=video.model_id, fingerprint=fingerprint,
                 done=done, holder=holder, num_segments=video.num_segments, duration=video.duration,
                 cache_dtype=video.cache_dtype)


def claim(write_session: SessionFactory, key: VideoKey, *, fingerprint: str, path: str, size: int, owner: str,
          lease_s: float = DEFAULT_LEASE_S) -> Claim:
    """Claim the video `key` for `owner`: `ClaimStatus` CLAIMED (with segments already done), PRESENT or BUSY.

    `path` should be absolute; a failure row left for it while it was unreadable is dropped on a claim.
    """
    check_cache_dtype(key.cache_dtype, "VideoKey.cache_dtype")  # the writer encodes every chunk of the video so
    for _attempt in range(5):
        with write_session() as s:
            now = utcnow()
            video = s.scalar(select(Video).where(_identity(key)))
            if video is None:
                video = Video(uid=uuid.uuid4().hex, sha256=key.sha256, model_id=key.model_id,
                              segment_seconds=key.segment_seconds, frames_per_segment=key.frames_per_segment,
                              decode_max_side=key.decode_max_side, cache_dtype=key.cache_dtype, path=path, size=size,
                              status=VideoStatus.PENDING, claimed_by=owner, heartbeat_at=now)
                # Every statement that may send the INSERT (the DELETE below autoflushes it) stays inside
                # the try: on PostgreSQL the loser of a race gets its duplicate-key error right there.
                try:
                    _forget_unreadable(s, key.model_id, path)
                    s.add(video)
                    s.commit()
                except IntegrityError:  # another process inserted it first: look again (it is busy now)
                    s.rollback()
                    continue
                return _as_claim(video, ClaimStatus.CLAIMED, fingerprint)
            if video.status == VideoStatus.READY:
                return _as_claim(video, ClaimStatus.PRESENT, fingerprint)
            if VideoStatus(video.status).held and (
                    video.claimed_by == owner or holder_alive(video.claimed_by, video.heartbeat_at, lease_s, now)):
                return _as_claim(video, ClaimStatus.BUSY, fingerprint, holder=video.claimed_by)
            # failed (retry) or stale: take it over, only if nobody changed it since we read it
            swapped = s.execute(
                update(Video)
                .where(Video.id == video.id, Video.status == video.status,
                       Video.claimed_by.is_(None) if video.claimed_by is None else Video.claimed_by == video.claimed_by)
                .values(status=VideoStatus.PENDING, claimed_by=owner, heartbeat_at=now, error=None, path=path,
                        size=size, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if swapped.rowcount != 1:
                s.rollback()
                continue
            done = frozenset(s.scalars(select(Segment.index).where(Segment.video_id == video.id)))
            _forget_unreadable(s, key.model_id, path)
            s.commit()
            return _as_claim(video, ClaimStatus.CLAIMED, fingerprint, done=done)
    raise RuntimeError(f"could not claim {path}: the database row kept changing under us (5 attempts)")


def heartbeat(write_session: SessionFactory, owner: str) -> int:
    """Refresh every pending claim of `owner`; returns how many it holds."""
    with write_session() as s:
        result = s.execute(update(Video).where(Video.claimed_by == owner, Video.status.in_(HELD_STATUSES))
                           .values(heartbeat_at=utcnow()).execution_options(synchronize_session=False))
        s.commit()
        return result.rowcount


def release(write_session: SessionFactory, owner: str) -> int:
    """Let go of every pending claim of `owner` (work done so far stays, the next run resumes it)."""
    with write_session() as s:
        result = s.execute(update(Video).where(Video.claimed_by == owner, Video.status.in_(HELD_STATUSES))
                           .values(heartbeat_at=None).execution_options(synchronize_session=False))
        s.commit()
        return result.rowcount


def owns(session, video_id: int, owner: str) -> bool:
    video = session.get(Video, video_id, populate_existing=True)
    return video is not None and video.claimed_by == owner and VideoStatus(video.status).held


def record_unreadable(write_session: SessionFactory, *, model_id: int, segment_seconds: float, frames_per_segment: int,
                      path: str, error: str) -> int:
    """A failed file with no content hash (unreadable): one failed row per path, replaced on retry."""
    with write_session() as s:
        s.execute(delete(Video).where(Video.sha256.is_(None), Video.path == path, Video.model_id == model_id,
                                      Video.segment_seconds == segment_seconds,
                                      Video.frames_per_segment == frames_per_segment))
        video = Video(uid=uuid.uuid4().hex, sha256=None, model_id=model_id, segment_seconds=segment_seconds,
                      frames_per_segment=frames_per_segment, path=path, status=VideoStatus.FAILED, error=error)
        s.add(video)
        s.commit()
        return video.id


def _forget_unreadable(session, model_id: int, path: str) -> None:
    session.execute(delete(Video).where(Video.sha256.is_(None), Video.path == path, Video.model_id == model_id))


def forget_unreadable(write_session: SessionFactory, *, model_id: int, path: str) -> None:
    """Drop stale hashless failure rows of `path` (it is readable now; `claim` does this too)."""
    with write_session() as s:
        _forget_unreadable(s, model_id, path)
        s.commit()
