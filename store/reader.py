"""Reading the store: listing videos, their segments, and loading a video's caches (read, checked)."""

from __future__ import annotations

from collections.abc import Sequence

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
    layout_problem,
    mark_damaged,
    pack_problem,
    segment_checksums,
)
from store.models import Cache, File, Model, Segment, Video, VideoStatus, utcnow
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
        claimed_by=video.claimed_by, updated_at=video.updated_at, paths=paths, cache_dtype=video.cache_dtype,
    )


IN_LIST_MAX = 500
"""Ids one `IN (...)` lists; more unfinished videos than this count every video's segments in one grouped pass."""


def list_videos(read: SessionFactory, *, status: str | None = None) -> list[VideoInfo]:
    with read() as s:
        query = select(Video, Model).join(Model, Video.model_id == Model.id).order_by(Video.id)
        if status is not None:
            query = query.where(Video.status == status)
        rows = s.execute(query).all()
        done = _segments_done(s, [v.id for v, _ in rows if v.status != VideoStatus.READY])
        hashes = {v.sha256 for v, _ in rows if v.sha256}
        paths: dict[str, list[str]] = {}
        if hashes:
            for sha, path in s.execute(select(File.sha256, File.path).where(File.sha256.in_(hashes))
                                       .order_by(File.path)):
                paths.setdefault(sha, []).append(path)
        return [_info(v, m, (v.num_segments or 0) if v.status == VideoStatus.READY else done.get(v.id, 0),
                      paths.get(v.sha256 or "", [])) for v, m in rows]


def _segments_done(s, video_ids: list[int]) -> dict[int, int]:
    """Stored segments of these (unfinished) videos. A ready video's count is its `num_segments` (`finish` checks
    that every segment is stored), so listing a library never counts the rows of a million finished segments."""
    if not video_ids:
        return {}
    count = select(Segment.video_id, func.count(Segment.id)).group_by(Segment.video_id)
    if len(video_ids) <= IN_LIST_MAX:
        count = count.where(Segment.video_id.in_(video_ids))
    return dict(s.execute(count).all())


def ready_rows(read: SessionFactory, fingerprint: str) -> dict[int, tuple[str, int]]:
    """id -> (uid, segments) of the ready videos of one model identity: what a search index holds, read without
    counting segment rows (list_videos's count scans the segments table: ~1M rows in a large library)."""
    with read() as s:
        rows = s.execute(select(Video.id, Video.uid, Video.num_segments).join(Model, Video.model_id == Model.id)
                         .where(Video.status == VideoStatus.READY, Model.fingerprint == fingerprint)).all()
    return {vid: (uid, n or 0) for vid, uid, n in rows}


def compressions(read: SessionFactory, names: Sequence[str]) -> list[tuple[str, int]]:
    """(compressor, k) of every model registered under one of `names` that holds a video, most videos first."""
    with read() as s:
        rows = s.execute(select(Model.compressor, Model.k, func.count(Video.id)).join(Video, Video.model_id == Model.id)
                         .where(Model.name.in_(list(names))).group_by(Model.compressor, Model.k)).all()
    return [(c, k) for c, k, _ in sorted(rows, key=lambda r: -r[2])]


def video_status(read: SessionFactory, video_id: int) -> VideoStatus | None:
    with read() as s:
        return s.scalar(select(Video.status).where(Video.id == video_id))


def get_video(read: SessionFactory, video_id: int) -> VideoInfo:
    for info in _select_one(read, video_id):
        return info
    raise NotFound(f"no video with id {video_id} in the store (see python -m ingest --list)")


def _select_one(read: SessionFactory, video_id: int) -> list[VideoInfo]:
    with read() as s:
        row = s.execute(select(Video, Model).join(Model, Video.model_id == Model.id)
                        .where(Video.id == video_id)).first()
        if row is None:
            return []
        video, model = row
        done = s.scalar(select(func.count(Segment.id)).where(Segment.video_id == video_id)) or 0
        paths = list(s.scalars(select(File.path).where(File.sha256 == video.sha256).order_by(File.path))) \
            if video.sha256 else []
        return [_info(video, model, done, paths)]


def segments(read: SessionFactory, video_id: int, *, thumbnails: bool = False) -> list[SegmentInfo]:
    """A video's segments in order; their thumbnails (a JPEG each, another table) only when asked for: times alone
    are one query over the segment rows."""
    where = Segment.video_id == video_id
    with read() as s:
        if thumbnails:
            return [SegmentInfo(g.index, g.start_s, g.end_s, g.thumbnail, g.thumbnail_mime)
                    for g in s.scalars(select(Segment).where(where).order_by(Segment.index))]
        rows = s.execute(select(Segment.index, Segment.start_s, Segment.end_s).where(where).order_by(Segment.index))
        return [SegmentInfo(index, start, end, None, None) for index, start, end in rows]


def _ready_video(s: Session, video_id: int, fingerprint: str) -> tuple[Video, Model]:
    video, model = video_of_model(s, video_id, fingerprint)
    if video.status != VideoStatus.READY:
        why = f": {video.error}" if video.error else ""
        raise StoreError(f"video {video_id} is {video.status}{why}; run python -m ingest {video.path} to finish it")
    return video, model


def video_of_model(s: Session, video_id: int, fingerprint: str) -> tuple[Video, Model]:
    """The video and its model row; NotFound, or FingerprintMismatch when another model compressed it."""
    row = s.execute(select(Video, Model).join(Model, Video.model_id == Model.id)
                    .where(Video.id == video_id)).first()
    if row is None:
        raise NotFound(f"no video with id {video_id} in the store (see python -m ingest --list)")
    video, model = row
    if model.fingerprint != fingerprint:
        raise FingerprintMismatch(
            f"video {video_id} was compressed by model {model.name!r} ({model.fingerprint[:12]}), not by the model "
            f"asking ({fingerprint[:12]}): ingest it again with this model (python -m ingest {video.path} --model ...)"
        )
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
    expected = Expected(video.id, video.uid, written | {model.fingerprint}, video.num_segments or 0, per, base,
                        video.cache_dtype)
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
    """All caches of a ready video as one [T, layers, 2, kv_heads, k, head_dim] tensor in memory, in the model's
    dtype (an int8 pack is dequantized after its checks, store/quant.py).

    The pack's header is checked on every load and its checksums the first time this process loads
    the file (store/integrity.py), or every time with verify=True. A failed check marks the video
    damaged and raises PackDamaged; other videos are not affected.
    """
    from store.packs import read_pack  # torch: only where caches are read

    with read() as s:
        video, _ = _ready_video(s, video_id, fingerprint)
        first = s.scalar(select(Cache.file).join(Segment, Cache.segment_id == Segment.id)
                         .where(Segment.video_id == video_id, Cache.model_id == video.model_id).limit(1))
    if first is not None and _is_ragged(home.absolute(first)):
        return _load_ragged(read, write, home, video_id, fingerprint, verify=verify)
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
        problem = checksum_problem(pack, segment_checksums(read, video_id))  # the bytes as stored
    kv, problem = _decoded(pack, problem, video_id, path)
    if problem is not None:
        raise _damaged(write, home, expected, source, path, problem)
    VERIFIED.add(seen)
    return VideoCaches(video_id=video_id, fingerprint=fingerprint, compressor=compressor, kv=kv,
                       source_positions=pack.source_positions)


def _decoded(pack, problem: str | None, video_id: int, path):
    """(the pack's kv in the model dtype, or None; why it is damaged, or None). A pack checked fine but stored in a
    way this version cannot read (a newer one wrote it) is a StoreError, not damage: the video is left alone."""
    from store.quant import UnknownEncoding

    if problem is not None:
        return None, problem
    try:
        return pack.decoded_kv(), None
    except UnknownEncoding as err:
        raise StoreError(f"video {video_id}: cannot read its cache file {path}: {err} (a newer version wrote it)"
                         ) from err
    except ValueError as err:
        return None, str(err)


def _is_ragged(path) -> bool:
    from store.packs import RAGGED_PACK_FORMAT, pack_format

    try:
        return pack_format(path) == RAGGED_PACK_FORMAT
    except (OSError, ValueError):  # missing or unreadable: the dense path reports it
        return False


def _ragged_rows(s: Session, video_id: int, fingerprint: str):
    """(expected, file, compressor, source path, rows (offset, nbytes, checksum) in index order) of a ragged video."""
    video, model = _ready_video(s, video_id, fingerprint)
    rows = s.execute(select(Segment.index, Cache.file, Cache.offset, Cache.nbytes, Cache.checksum, Cache.compressor,
                            Cache.fingerprint).join(Cache, Cache.segment_id == Segment.id)
                     .where(Segment.video_id == video_id, Cache.model_id == video.model_id)
                     .order_by(Segment.index)).all()
    n = video.num_segments or 0
    if [r[0] for r in rows] != list(range(n)) or n == 0 or len({r[1] for r in rows}) != 1:
        raise StoreError(f"video {video_id} is marked ready but its cache rows do not describe one pack; remove it "
                         f"(python -m ingest --remove {video_id}) and ingest it again")
    written = frozenset(r[6] for r in rows) | {model.fingerprint}
    expected = Expected(video.id, video.uid, written, n, 0, 0, video.cache_dtype)
    return expected, rows[0][1], rows[0][5], video.path, [(r[2], r[3], r[4]) for r in rows]


def _load_ragged(read: SessionFactory, write: SessionFactory, home: Home, video_id: int, fingerprint: str, *,
                 verify: bool) -> VideoCaches:
    """`load_video_caches` for a ragged pack: each row's slice and (first load, or verify) checksum checked."""
    from store.packs import read_ragged_pack

    with read() as s:
        expected, file, compressor, source, rows = _ragged_rows(s, video_id, fingerprint)
    path = home.absolute(file)
    try:
        pack = read_ragged_pack(path)
    except FileNotFoundError:
        raise _missing(video_id, path) from None
    except ValueError as err:
        raise _damaged(write, home, expected, source, path, str(err).removeprefix(f"{path} ")) from err
    problem = layout_problem(pack.metadata, pack.num_segments, 0, 0, expected)
    if problem is None and any(pack.slice_of(t) != (o, n) for t, (o, n, _) in enumerate(rows)):
        problem = "its segments lie elsewhere than the database says"
    seen = (str(path), expected.uid, pack.stamp)
    if problem is None and (verify or seen not in VERIFIED):
        bad = next((t for t, (_, _, c) in enumerate(rows) if pack.segment_checksum(t) != c), None)
        if bad is not None:
            problem = f"segment {bad} does not match its checksum (its bytes were changed on disk)"
    kv, problem = _decoded(pack, problem, video_id, path)
    if problem is not None:
        raise _damaged(write, home, expected, source, path, problem)
    VERIFIED.add(seen)
    caches = [pack.segment(t, fingerprint, compressor, kv) for t in range(pack.num_segments)]
    return VideoCaches(video_id=video_id, fingerprint=fingerprint, compressor=compressor, kv=kv,
                       source_positions=pack.source_positions, ragged=caches)


def check_pack_header(read: SessionFactory, write: SessionFactory, home: Home, video_id: int) -> str | None:
    """For a ready video: check its pack's header (cheap: no data read); a bad one marks the video damaged.

    Returns why it is damaged, or None (fine, or not a ready video). Missing files are `writer`'s job.
    """
    with read() as s:
        row = s.execute(select(Video.status, Model.fingerprint).join(Model, Video.model_id == Model.id)
                        .where(Video.id == video_id)).first()
        if row is None or row[0] != VideoStatus.READY:
            return None
        first = s.scalar(select(Cache.file).join(Segment, Cache.segment_id == Segment.id)
                         .where(Segment.video_id == video_id).limit(1))
        ragged = first is not None and _is_ragged(home.absolute(first))
        expected, file, _, source = (_ragged_rows(s, video_id, row[1])[:4] if ragged
                                     else _expected(s, video_id, row[1]))
    from store.packs import RAGGED_PACK_FORMAT, RAGGED_TENSORS, read_pack_header  # torch: where caches are read

    path = home.absolute(file)
    try:
        if ragged:
            header = read_pack_header(path, RAGGED_PACK_FORMAT, RAGGED_TENSORS)
            problem = layout_problem(header.metadata, header.tensors["lengths"][1][0], 0, 0, expected)
        else:
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
        if (VideoStatus(video.status).held and not force
                and holder_alive(video.claimed_by, video.heartbeat_at, lease_s, utcnow())):
            raise StoreError(f"video {video_id} is being ingested right now by {video.claimed_by}; stop that "
                             "process first (or pass force=True)")
        uid = video.uid
        s.delete(video)
        s.commit()
    home.remove_video_dir(uid)
    return info
