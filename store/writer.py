"""Writing a video's caches so that a kill at any moment loses nothing and leaves nothing half-done.

While a video is ingested, each chunk of segments becomes one *chunk* file (a pack, store/packs.py),
written to a temp name, fsynced and renamed; only then one DB transaction adds the chunk's segment
and cache rows pointing into it. When every segment is stored, `finish` makes one *pack* per video
(a hard link to the chunk when one chunk holds them all in order, else a copy of the slices: temp +
rename), and one transaction re-points the cache rows at it and marks the video ready; the chunk
folder is deleted after that commit.

So at any instant every row points at a complete file. What a kill can leave behind is only files no
row points at (a temp file, a chunk written but not committed, a pack written but not committed, or
chunks of a video already ready); `sweep_video_dir` deletes those, and is run by whoever owns the
video next (its claim, or any process once the video is ready and no longer written).
Every transaction re-checks that the caller still owns the claim, so a process that lost its lease
can never overwrite the work of the one that took over.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from store.claims import owns
from store.db import SessionFactory, StoreError
from store.home import Home
from store.models import HELD_STATUSES, Cache, Segment, Thumbnail, Video, VideoStatus, utcnow
from store.records import Claim, ProbeRecord, SegmentRecord

if TYPE_CHECKING:  # torch (through store.packs) is imported where caches are written: listing and removing
    # videos (python -m ingest --list / --remove) start without it
    from store.packs import Pack
    from voco.cache import SegmentCache

JPEG = "image/jpeg"


class ClaimLost(StoreError):
    """Another process took this video over (our heartbeat lapsed); our work on it stops."""


def _require_owner(session: Session, claim: Claim, owner: str) -> Video:
    if not owns(session, claim.video_id, owner):
        raise ClaimLost(f"video {claim.video_id} is no longer claimed by this process ({owner}): another ingest "
                        "took it over after our lease lapsed; it will finish the work")
    return session.get(Video, claim.video_id)


def set_probe(write: SessionFactory, claim: Claim, owner: str, probe: ProbeRecord) -> None:
    with write() as s:
        video = _require_owner(s, claim, owner)
        if video.num_segments is not None and video.num_segments != probe.num_segments:
            raise StoreError(f"video {video.id}: the file now gives {probe.num_segments} segments, the store holds "
                             f"{video.num_segments} from an earlier run; remove it (--remove {video.id}) and retry")
        apply_probe(video, probe)
        s.commit()


def apply_probe(video: Video, probe: ProbeRecord) -> None:
    """Copy what the probe says onto the video row (and refresh its heartbeat)."""
    video.duration, video.fps, video.num_frames = probe.duration, probe.fps, probe.num_frames
    video.width, video.height, video.rotation = probe.width, probe.height, probe.rotation
    video.num_segments = probe.num_segments
    video.heartbeat_at = utcnow()


def add_chunk(write: SessionFactory, home: Home, claim: Claim, owner: str,
              segments: Sequence[SegmentRecord], caches: Sequence[SegmentCache]) -> Path:
    """Store one batch: chunk file first, then its rows in one transaction. The caches are stored as the
    video's `cache_dtype` says (store/quant.py); each row's slice and checksum cover the bytes as stored."""
    from store.packs import write_cache_pack

    if len(segments) != len(caches) or not segments:
        raise ValueError(f"{len(segments)} segment records for {len(caches)} caches")
    for cache in caches:
        if cache.fingerprint != claim.fingerprint:
            raise StoreError(f"a cache made by model {cache.fingerprint[:12]} cannot be stored for video "
                             f"{claim.video_id}, which belongs to model {claim.fingerprint[:12]}")
    path = home.chunk_path(claim.uid, segments[0].index, segments[-1].index, owner)
    meta = {"fingerprint": claim.fingerprint, "compressor": caches[0].compressor, "k": caches[0].k,
            "video_uid": claim.uid}
    slices = write_cache_pack(path, caches, meta, claim.cache_dtype)
    try:
        with write() as s:
            _require_owner(s, claim, owner)
            for rec, cache, sl in zip(segments, caches, slices, strict=True):
                segment = Segment(video_id=claim.video_id, index=rec.index, start_s=rec.start_s, end_s=rec.end_s)
                if rec.thumbnail is not None:
                    segment.thumb = Thumbnail(mime=rec.thumbnail_mime or JPEG, data=rec.thumbnail)
                segment.caches.append(Cache(model_id=claim.model_id, fingerprint=cache.fingerprint,
                                            compressor=cache.compressor, k=cache.k,
                                            source_position=cache.source_position, file=home.relative(path),
                                            offset=sl.offset, nbytes=sl.nbytes, checksum=sl.checksum))
                s.add(segment)
            s.execute(update(Video).where(Video.id == claim.video_id).values(heartbeat_at=utcnow())
                      .execution_options(synchronize_session=False))
            s.commit()
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


class _CacheRef(NamedTuple):
    id: int
    file: str
    offset: int
    nbytes: int
    checksum: str
    source_position: int
    compressor: str
    k: int


def _cache_refs(session: Session, video_id: int) -> list[tuple[int, _CacheRef]]:
    """(segment index, cache row) in index order; columns only (no ORM objects, no thumbnails)."""
    rows = session.execute(
        select(Segment.index, Cache.id, Cache.file, Cache.offset, Cache.nbytes, Cache.checksum,
               Cache.source_position, Cache.compressor, Cache.k)
        .join(Cache, Cache.segment_id == Segment.id).where(Segment.video_id == video_id).order_by(Segment.index))
    return [(r[0], _CacheRef(*r[1:])) for r in rows]


def _cache_rows(session: Session, video_id: int) -> list[tuple[Segment, Cache]]:
    return list(session.execute(
        select(Segment, Cache).join(Cache, Cache.segment_id == Segment.id)
        .where(Segment.video_id == video_id).order_by(Segment.index)
    ))


def finish(write: SessionFactory, home: Home, claim: Claim, owner: str) -> int:
    """Consolidate the chunks into the video's pack and mark it ready; returns the segment count.

    When one chunk already holds every segment in order (the usual case: chunks are large), the pack
    is a hard link to it, not a copy; the chunk name goes with the sweep after the commit.
    """
    from store.packs import RAGGED_PACK_FORMAT, pack_format

    with write() as s:
        video = _require_owner(s, claim, owner)
        expected = video.num_segments
        rows = _cache_refs(s, claim.video_id)
    indices = [index for index, _ in rows]
    if expected is None or indices != list(range(expected)):
        missing = sorted(set(range(expected or 0)) - set(indices))
        raise StoreError(f"video {claim.video_id}: cannot finish, segments {missing[:10]} have no cache yet")
    if pack_format(home.absolute(rows[0][1].file)) == RAGGED_PACK_FORMAT:
        pack_path, slices = _consolidate_ragged(write, home, claim, owner, rows)
    else:
        pack_path, slices = _consolidate(write, home, claim, owner, rows)
    for (index, cache), sl in zip(rows, slices, strict=True):
        if sl.checksum != cache.checksum:
            raise StoreError(f"{pack_path}: consolidated bytes of segment {index} differ from the chunks; "
                             "nothing changed")
    relative = home.relative(pack_path)
    with write() as s:
        video = _require_owner(s, claim, owner)
        s.execute(update(Cache), [{"id": c.id, "file": relative, "offset": sl.offset, "nbytes": sl.nbytes}
                                  for (_, c), sl in zip(rows, slices, strict=True)])
        video.status, video.claimed_by, video.heartbeat_at, video.error = VideoStatus.READY, None, None, None
        s.commit()
    sweep_video_dir(write, home, claim.video_id, claim.uid)
    return len(rows)


def _stored_as(claim: Claim, packs: dict) -> dict[str, str]:
    """How the chunks store their kv (pack metadata), the same for all and as the video says; else StoreError."""
    from store.quant import encoding_metadata, pack_cache_dtype

    encodings = {file: encoding_metadata(pack.metadata) for file, pack in packs.items()}
    for file, encoding in encodings.items():
        if pack_cache_dtype(encoding) != claim.cache_dtype or encoding != next(iter(encodings.values())):
            raise StoreError(f"{file}: its caches are stored as {pack_cache_dtype(encoding)} "
                             f"({encoding or 'as computed'}), unlike the video's other chunks or its cache_dtype "
                             f"{claim.cache_dtype!r}; remove the video (--remove {claim.video_id}) and ingest it again")
    return next(iter(encodings.values()))


def _link_or_write(home: Home, claim: Claim, rows, in_place: bool, files: int, write_pack_fn):
    """The video's pack: a hard link to its only chunk when that holds every segment in order, else written."""
    from store.packs import Slice, fsync_dir

    first = rows[0][1]
    pack_path = home.pack_path(claim.uid, claim.fingerprint)
    if in_place and files == 1:
        pack_path.unlink(missing_ok=True)  # an uncommitted pack a killed run left
        try:
            os.link(home.absolute(first.file), pack_path)
            fsync_dir(pack_path.parent)
            return pack_path, [Slice(c.offset, c.nbytes, c.checksum) for _, c in rows]
        except OSError:  # a file system without hard links: copy instead
            pack_path.unlink(missing_ok=True)
    meta = {"fingerprint": claim.fingerprint, "compressor": first.compressor, "k": first.k, "video_uid": claim.uid}
    return pack_path, write_pack_fn(pack_path, meta)


def _consolidate_ragged(write: SessionFactory, home: Home, claim: Claim, owner: str, rows):
    """`_consolidate` for ragged chunks (store/packs.py: ragged packs): segments copied as stored."""
    from store.packs import ragged_tensors, read_ragged_pack, write_ragged_tensors

    packs, parts, in_place = {}, [], True
    for index, cache in rows:
        if cache.file not in packs:
            pack = read_ragged_pack(home.absolute(cache.file))
            packs[cache.file] = (pack, {pack.slice_of(t): t for t in range(pack.num_segments)})
        pack, where = packs[cache.file]
        t = where.get((cache.offset, cache.nbytes))
        if t is None:
            raise StoreError(f"{cache.file}: row of segment {index} does not match the file layout")
        if pack.segment_checksum(t) != cache.checksum:
            _drop_segments(write, claim, owner, file=cache.file)
            raise StoreError(f"{cache.file} is corrupt (checksum of segment {index} differs); its segments were "
                             "dropped and will be recomputed by the next run")
        in_place = in_place and t == index and pack.num_segments == len(rows)
        parts.append(pack.segment_tensors(t))
    encoding = _stored_as(claim, {file: pack for file, (pack, _) in packs.items()})
    return _link_or_write(home, claim, rows, in_place, len(packs),
                          lambda path, meta: write_ragged_tensors(path, ragged_tensors(parts), {**meta, **encoding}))


def _consolidate(write: SessionFactory, home: Home, claim: Claim, owner: str, rows):
    """Check every row against its chunk and make the video's dense pack: (its path, each segment's slice)."""
    import torch

    from store.packs import checksum, read_pack, tensor_bytes, write_pack

    packs: dict[str, Pack] = {}
    kv_parts, positions, in_place = [], [], True
    for index, cache in rows:
        if cache.file not in packs:
            packs[cache.file] = read_pack(home.absolute(cache.file))
        pack = packs[cache.file]
        t, rem = divmod(cache.offset - pack.kv_data_offset, max(pack.segment_nbytes, 1))
        if rem or not 0 <= t < pack.kv.shape[0] or pack.segment_nbytes != cache.nbytes:
            raise StoreError(f"{cache.file}: row of segment {index} does not match the file layout")
        part = pack.kv[t]
        if checksum(tensor_bytes(part)) != cache.checksum:
            _drop_segments(write, claim, owner, file=cache.file)
            raise StoreError(f"{cache.file} is corrupt (checksum of segment {index} differs); its segments were "
                             "dropped and will be recomputed by the next run")
        in_place = in_place and t == index and pack.kv.shape[0] == len(rows)
        kv_parts.append(part)  # as stored (int8 packs: values and scales), so the checksums still hold
        positions.append(cache.source_position)
    encoding = _stored_as(claim, packs)
    return _link_or_write(home, claim, rows, in_place, len(packs),
                          lambda path, meta: write_pack(path, torch.stack(kv_parts), positions, {**meta, **encoding}))


def _drop_segments(write: SessionFactory, claim: Claim, owner: str, *, file: str) -> None:
    with write() as s:
        _require_owner(s, claim, owner)
        for seg, cache in _cache_rows(s, claim.video_id):
            if cache.file == file:
                s.delete(seg)
        s.commit()


def fail(write: SessionFactory, claim: Claim, owner: str, error: str) -> None:
    """Mark a claimed video failed; segments already stored stay (a retry resumes them)."""
    with write() as s:
        s.execute(update(Video)
                  .where(Video.id == claim.video_id, Video.claimed_by == owner, Video.status.in_(HELD_STATUSES))
                  .values(status=VideoStatus.FAILED, error=error, claimed_by=None, heartbeat_at=None,
                          updated_at=utcnow())
                  .execution_options(synchronize_session=False))
        s.commit()


def sweep_video_dir(session_factory: SessionFactory, home: Home, video_id: int, uid: str) -> list[Path]:
    """Delete the video's files that no row points at (temp files, uncommitted chunks, stale packs).

    Safe only for the owner of the video's claim, or once the video is ready: nobody writes a ready
    video's folder again (a reset gives the video a new folder, see `reset_if_files_missing`).
    """
    from store.packs import sweep_temp_files

    folder = home.video_dir(uid)
    if not folder.is_dir():
        return []
    removed = sweep_temp_files(folder)
    with session_factory() as s:
        referenced = {home.absolute(f) for f in s.scalars(
            select(Cache.file).join(Segment, Cache.segment_id == Segment.id).where(Segment.video_id == video_id)
        )}
    for path in sorted(folder.rglob("*.safetensors")):
        if path not in referenced:
            path.unlink(missing_ok=True)
            removed.append(path)
    chunks = home.chunk_dir(uid)
    if chunks.is_dir() and not any(chunks.iterdir()):
        chunks.rmdir()
    return removed


def reset_if_files_missing(write: SessionFactory, home: Home, video_id: int) -> list[str]:
    """A ready video whose cache file is gone (deleted by hand): drop its segments and mark it failed, so
    the next claim ingests it again. Returns the missing files (empty: nothing to do)."""
    with write() as s:
        video = s.get(Video, video_id)
        if video is None or video.status != VideoStatus.READY:
            return []
        files = set(s.scalars(select(Cache.file).join(Segment, Cache.segment_id == Segment.id)
                              .where(Segment.video_id == video_id)))
        missing = sorted(f for f in files if not home.absolute(f).is_file())
        if not missing:
            return []
        for segment in s.scalars(select(Segment).where(Segment.video_id == video_id)):
            s.delete(segment)
        # a new folder for the new incarnation: whoever still sweeps the old one (having seen it ready) can
        # never delete files in flight for the next ingest
        old_uid, video.uid = video.uid, uuid.uuid4().hex
        video.status, video.error = VideoStatus.FAILED, f"cache file missing ({', '.join(missing)}): ingest it again"
        s.commit()
    home.remove_video_dir(old_uid)
    return missing


def video_status(read: SessionFactory, video_id: int) -> tuple[str, str | None] | None:
    with read() as s:
        video = s.get(Video, video_id)
        return None if video is None else (video.status, video.error)
