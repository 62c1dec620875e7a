"""Checking a ready video's pack before its caches are served; marking a bad one damaged.

Two checks, cheapest first:

- layout (the header only): the file is a pack as long as its header says, written for *this*
  video (`video_uid`) by *this* model (fingerprint), stored as the video says (cache_dtype), with the
  segment count and byte layout the database rows say. Catches truncation, a foreign or swapped
  pack, a pack of another model, int8 caches where float ones belong (or the reverse).
- checksums (reads every byte once): each segment's bytes against the blake2b in its row. Catches
  flipped bits, a block of 0xFF, anything written over the data. Run the first time a process
  loads a given file (known by device, inode, size and mtime), and whenever asked (`verify=True`).

A failed check marks the video `VideoStatus.DAMAGED` (one transaction, only if it is still the ready video that
was checked): its cache rows go (their bytes cannot be trusted), it gets a new cache folder, and the
next ingest of the file claims it like a failed one and compresses it again.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from store.db import SessionFactory, StoreError
from store.home import Home
from store.models import Segment, Video, VideoStatus, utcnow
from store.quant import pack_cache_dtype

if TYPE_CHECKING:  # store.packs imports torch: only where caches are read
    from store.packs import FileStamp, Pack, PackHeader


class PackDamaged(StoreError):
    """A ready video's cache file failed a check; the video is now marked damaged (re-ingest repairs it)."""


@dataclass(frozen=True)
class Expected:
    """What the database says a ready video's pack holds."""

    video_id: int
    uid: str
    fingerprints: frozenset[str]  # the model's identity (and the one an old store wrote, if re-keyed)
    num_segments: int
    segment_nbytes: int
    kv_data_offset: int
    cache_dtype: str = "model"
    """How the video's caches are stored (store/quant.py); the pack's metadata must say the same."""


def layout_problem(metadata: dict[str, str], num_segments: int, segment_nbytes: int, kv_data_offset: int,
                   expected: Expected) -> str | None:
    """Why a pack's header does not belong to the expected video, or None."""
    uid = metadata.get("video_uid")
    if uid != expected.uid:
        return f"it holds the caches of another video (video_uid {uid!r}, this video is {expected.uid!r})"
    fingerprint = metadata.get("fingerprint", "")
    if fingerprint not in expected.fingerprints:
        return f"it holds caches of model {fingerprint[:12] or '?'}, not of this video's model"
    stored = pack_cache_dtype(metadata)
    if stored != expected.cache_dtype:
        return f"it holds caches stored as {stored}, the database says {expected.cache_dtype}"
    if num_segments != expected.num_segments:
        return f"it holds {num_segments} segments, the database {expected.num_segments}"
    if (segment_nbytes, kv_data_offset) != (expected.segment_nbytes, expected.kv_data_offset):
        return "its segments lie elsewhere than the database says"
    return None


def header_problem(header: PackHeader, expected: Expected) -> str | None:
    dtype, shape, begin, end = header.tensors["kv"]
    num = shape[0] if shape else 0
    per = (end - begin) // num if num else 0
    return layout_problem(header.metadata, num, per, begin, expected)


def pack_problem(pack: Pack, expected: Expected) -> str | None:
    return layout_problem(pack.metadata, pack.kv.shape[0], pack.segment_nbytes, pack.kv_data_offset, expected)


def checksum_problem(pack: Pack, checksums: list[str]) -> str | None:
    if len(checksums) != pack.kv.shape[0]:
        return f"the database has {len(checksums)} checksums for {pack.kv.shape[0]} segments"
    from store.packs import checksum, tensor_bytes

    data, per = tensor_bytes(pack.kv), pack.segment_nbytes  # one view, sliced: no tensor per segment
    for t, want in enumerate(checksums):
        if checksum(data[t * per:(t + 1) * per]) != want:
            return f"segment {t} does not match its checksum (its bytes were changed on disk)"
    return None


def segment_checksums(read: SessionFactory, video_id: int) -> list[str]:
    from store.models import Cache

    with read() as s:
        return list(s.scalars(select(Cache.checksum).join(Segment, Cache.segment_id == Segment.id)
                              .where(Segment.video_id == video_id).order_by(Segment.index)))


class VerifiedFiles:
    """Pack files this process has checksummed, as they were then (a changed file is checked again)."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str, FileStamp]] = set()
        self._lock = threading.Lock()

    def __contains__(self, item: tuple[str, str, FileStamp]) -> bool:
        with self._lock:
            return item in self._seen

    def add(self, item: tuple[str, str, FileStamp]) -> None:
        with self._lock:
            self._seen.add(item)


VERIFIED = VerifiedFiles()


def mark_damaged(write: SessionFactory, home: Home, video_id: int, uid: str, reason: str) -> bool:
    """Mark the ready video `video_id` (still in folder `uid`) damaged and drop its cache rows.

    Returns False when it is no longer that ready video (someone else repaired or removed it).
    """
    with write() as s:
        video = s.get(Video, video_id, populate_existing=True)
        if video is None or video.status != VideoStatus.READY or video.uid != uid:
            return False
        for segment in s.scalars(select(Segment).where(Segment.video_id == video_id)):
            s.delete(segment)
        # a new folder for the next incarnation, as for a missing file (store/writer.py)
        video.uid, video.status, video.updated_at = uuid.uuid4().hex, VideoStatus.DAMAGED, utcnow()
        video.error = f"cache file damaged: {reason}; python -m ingest {video.path} compresses it again"
        s.commit()
    home.remove_video_dir(uid)
    return True
