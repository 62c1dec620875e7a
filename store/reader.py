"""Reading the store: listing videos, their segments, and loading a video's caches (read, checked)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.claims import holder_alive
from store.db import SessionFactory, StoreError
from store.home import Home
from store.integrity import (
    VERIFIED,
    Expected,
    PackDamaged,
    checksum_problem,
    header_problem,
    mark_damaged,
    pack_problem,
    segment_checksums,
)
from store.models import PENDING, READY, Cache, File, Model, Segment, Video, utcnow
from store.records import SegmentInfo, VideoCaches, VideoInfo


class FingerprintMismatch(StoreError):
    """Caches of one model asked for by another."""


class NotFound(StoreError):
    pass


def _info(video: Video, model: Model, done: int, paths: list[str]) -> VideoInfo:
    return VideoInfo(
        id=video.id, uid=video.uid, path=video.path, sha256=video.sha256, status=video.status, error=video.error,
        duration=video.duration, fps=video.fps, size=video.size, width=video.width, height=video.height,
        num_segments=video.num_segments, segments_done=done, segment_seconds=video.segment_seconds,
        frames_per_segment=video.frames_per_segment, decode_max_side=video.decode_max_side, model_name=model.name,
        fingerprint=model.fingerprint,
        claimed_by=video.claimed_by, updated_at=video.updated_at, paths=paths,
    )


def list_videos(read: SessionFactory, *, status: str | None = None) -> list[VideoInfo]:
    with read() as s:
        done = (select(Segment.video_id, func.count(Segment.id).label("n")).group_by(Segment.video_id).subquery())
        query = (select(Video, Model, func.coalesce(done.c.n, 0)).join(Model, Video.model_id == Model.id)
                 .outerjoin(done, done.c.video_id == Video.id).order_by(Video.id))
        if status is not None:
            query = query.where(Video.status == status)
        rows = s.execute(query).tuples().all()
        hashes = {v.sha256 for v, _, _ in rows if v.sha256}
        paths: dict[str, list[str]] = {}
        if hashes:
            for sha, path in s.execute(select(File.sha256, File.path).where(File.sha256.in_(hashes))
                                       .order_by(File.path)).tuples():
                paths.setdefault(sha, []).append(path)
        return [_info(v, m, n, paths.get(v.sha256 or "", [])) for v, m, n in rows]


def get_video(read: SessionFactory, video_id: int) -> VideoInfo:
    for info in _select_one(read, video_id):
        return info
    raise NotFound(f"no video with id {video_id} in the store (see python -m ingest --list)")


def _select_one(read: SessionFactory, video_id: int) -> list[VideoInfo]:
    with read() as s:
        row = s.execute(select(Video, Model).join(Model, Video.model_id == Model.id)
                        .where(Video.id == video_id)).tuples().first()
        if row is None:
            return []
        video, model = row
        done = s.scalar(select(func.count(Segment.id)).where(Segment.video_id == video_id)) or 0
        paths = list(s.scalars(select(File.path).where(File.sha256 == video.sha256).order_by(File.path))) \
            if video.sha256 else []
        return [_info(video, model, done, paths)]


def segments(read: SessionFactory, video_id: int) -> list[SegmentInfo]:
    with read() as s:
        return [SegmentInfo(g.index, g.start_s, g.end_s, g.thumbnail, g.thumbnail_mime)
                for g in s.scalars(select(Segment).where(Segment.video_id == video_id).order_by(Segment.index))]


def _ready_video(s: Session, video_id: int, fingerprint: str) -> tuple[Video, Model]:
    row = s.execute(select(Video, Model).join(Model, Video.model_id == Model.id)
                    .where(Video.id == video_id)).tuples().first()
    if row is None:
        raise NotFound(f"no video with id {video_id} in the store (see python -m ingest --list)")
    video, model = row
    if model.fingerprint != fingerprint:
        raise FingerprintMismatch(
            f"video {video_id} was compressed by model {model.name!r} ({model.fingerprint[:12]}), not by the model "
            f"asking ({fingerprint[:12]}): ingest it again with this model (python -m ingest {video.path} --model ...)"
        )
    if video.status != READY:
        why = f": {video.error}" if video.error else ""
        raise StoreError(f"video {video_id} is {video.status}{why}; run python -m ingest {video.path} to finish it")
    return video, model


def _pack_layout(s: Session, video: Video) -> tuple[str, int, int, str, frozenset[str]]:
    """(file, bytes per segment, offset of segment 0, compressor, fingerprints written), in one aggregate query.

    Every row must say: segment i lies at base + i * nbytes of one file. With (video, index) unique,
    count, min and max over the rows prove it for all of them without fetching an hour's 3600 rows.
    The fingerprints are what the rows were written with: the model's identity, or the old identity
    of a re-keyed model (store/rekey.py); the pack's metadata must say one of them.
    """
    base = Cache.offset - Segment.index * Cache.nbytes
    (count, first, last, file_lo, file_hi, per_lo, per_hi, base_lo, base_hi, comp_lo, comp_hi, fp_lo, fp_hi) = \
        s.execute(
            select(func.count(), func.min(Segment.index), func.max(Segment.index), func.min(Cache.file),
                   func.max(Cache.file), func.min(Cache.nbytes), func.max(Cache.nbytes), func.min(base),
                   func.max(base), func.min(Cache.compressor), func.max(Cache.compressor), func.min(Cache.fingerprint),
                   func.max(Cache.fingerprint))
            .select_from(Segment).join(Cache, Cache.segment_id == Segment.id)
            .where(Segment.video_id == video.id, Cache.model_id == video.model_id)).one()
    n = video.num_segments or 0
    if count != n or (n and (first, last) != (0, n - 1)):
        raise StoreError(f"video {video.id} is marked ready but its cache rows are incomplete; remove it "
                         f"(python -m ingest --remove {video.id}) and ingest it again")
    if n == 0:
        raise StoreError(f"video {video.id} has no segments")
    if file_lo != file_hi:
        raise StoreError(f"video {video.id}: its caches lie in several files, not one pack")
    if per_lo != per_hi or base_lo != base_hi or comp_lo != comp_hi:
        raise StoreError(f"video {video.id}: its cache rows do not describe one stacked pack; remove it "
                         f"(python -m ingest --remove {video.id}) and ingest it again")
    return file_lo, per_lo, base_lo, comp_lo, frozenset((fp_lo, fp_hi))


def _expected(s: Session, video_id: int, fingerprint: str) -> tuple[Expected, str, str, str]:
    """(what the pack must hold, its file, the compressor, the video's source path) of a ready video."""
    video, model = _ready_video(s, video_id, fingerprint)
    file, per, base, compressor, written = _pack_layout(s, video)
    expected = Expected(video.id, video.uid, written | {model.fingerprint}, video.num_segments or 0, per, base)
    return expected, file, compressor, video.path


def _missing(video_id: int, path) -> StoreError:
    return StoreError(f"video {video_id}: its cache file {path} is missing; run python -m ingest on the video "
                      f"again (or remove it: python -m ingest --remove {video_id})")


def _damaged(write: SessionFactory, home: Home, expected: Expected, source: str, path, reason: str) -> StoreError:
    """Mark the video damaged and say so (PackDamaged), or that it changed meanwhile (a retry will tell)."""
    if not mark_damaged(write, home, expected.video_id, expected.uid, f"{path}: {reason}"):
        return StoreError(f"video {expected.video_id} changed while its caches were loaded; try again")
    return PackDamaged(f"video {expected.video_id}: its cache file {path} is damaged ({reason}); the video is now "
                       f"marked damaged and python -m ingest {source} compresses it again")


def load_video_caches(read: SessionFactory, write: SessionFactory, home: Home, video_id: int, fingerprint: str, *,
                      verify: bool = False) -> VideoCaches:
    """All caches of a ready video as one [T, layers, 2, kv_heads, k, head_dim] tensor in memory.

    The pack's header is checked on every load and its checksums the first time this process loads
    the file (store/integrity.py), or every time with verify=True. A failed check marks the video
    damaged and raises PackDamaged; other videos are not affected.
    """
    from store.packs import read_pack  # torch: only where caches are read

    with read() as s:
        expected, file, compressor, source = _expected(s, video_id, fingerprint)
    path = home.absolute(file)
    try:
        pack = read_pack(path)
    except FileNotFoundError:
        raise _missing(video_id, path) from None
    except ValueError as err:  # truncated or not a pack: the message names the file and what is wrong
        raise _damaged(write, home, expected, source, path, str(err).removeprefix(f"{path} ")) from err
    except OSError as err:
        raise StoreError(f"video {video_id}: cannot read its cache file {path}: {err.strerror or err}") from err
    seen = (str(path), expected.uid, pack.stamp)
    problem = pack_problem(pack, expected)
    if problem is None and (verify or seen not in VERIFIED):
        problem = checksum_problem(pack, segment_checksums(read, video_id))
    if problem is not None:
        raise _damaged(write, home, expected, source, path, problem)
    VERIFIED.add(seen)
    return VideoCaches(video_id=video_id, fingerprint=fingerprint, compressor=compressor, kv=pack.kv,
                       source_positions=pack.source_positions)


def check_pack_header(read: SessionFactory, write: SessionFactory, home: Home, video_id: int) -> str | None:
    """For a ready video: check its pack's header (cheap: no data read); a bad one marks the video damaged.

    Returns why it is damaged, or None (fine, or not a ready video). Missing files are `writer`'s job.
    """
    with read() as s:
        row = s.execute(select(Video.status, Model.fingerprint).join(Model, Video.model_id == Model.id)
                        .where(Video.id == video_id)).first()
        if row is None or row[0] != READY:
            return None
        expected, file, _, source = _expected(s, video_id, row[1])
    from store.packs import read_pack_header  # torch: only where caches are read

    path = home.absolute(file)
    try:
        problem = header_problem(read_pack_header(path), expected)
    except FileNotFoundError:
        return None
    except ValueError as err:
        problem = str(err).removeprefix(f"{path} ")
    if problem is None:
        return None
    return str(_damaged(write, home, expected, source, path, problem))


def remove_video(write: SessionFactory, home: Home, video_id: int, *, lease_s: float, force: bool = False) -> VideoInfo:
    """Delete a video's rows (one transaction), then its cache files."""
    info = get_video(write, video_id)
    with write() as s:
        video = s.get(Video, video_id)
        if video is None:
            raise NotFound(f"no video with id {video_id} in the store")
        if (video.status == PENDING and not force
                and holder_alive(video.claimed_by, video.heartbeat_at, lease_s, utcnow())):
            raise StoreError(f"video {video_id} is being ingested right now by {video.claimed_by}; stop that "
                             "process first (or pass force=True)")
        uid = video.uid
        s.delete(video)
        s.commit()
    home.remove_video_dir(uid)
    return info
