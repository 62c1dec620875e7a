"""Reading the store: listing videos, their segments, and loading a video's caches in one mapped read."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.claims import holder_alive
from store.db import SessionFactory, StoreError
from store.home import Home
from store.models import PENDING, READY, Cache, File, Model, Segment, Video, utcnow
from store.packs import checksum, read_pack, tensor_bytes
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
        frames_per_segment=video.frames_per_segment, model_name=model.name, fingerprint=model.fingerprint,
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


def _ready_rows(s: Session, video_id: int, fingerprint: str) -> tuple[Video, list]:
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
    # only the columns a load needs: whole Segment rows would drag every thumbnail blob along
    # Core execution, no ORM row processing: halves the load of the 3600 rows of an hour of video
    rows = list(s.connection().execute(
        select(Segment.index, Segment.start_s, Segment.end_s, Cache.file, Cache.offset, Cache.nbytes,
               Cache.checksum, Cache.compressor)
        .join(Cache, Cache.segment_id == Segment.id)
        .where(Segment.video_id == video_id, Cache.fingerprint == fingerprint)
        .order_by(Segment.index)))
    if [r.index for r in rows] != list(range(video.num_segments or 0)):
        raise StoreError(f"video {video_id} is marked ready but its cache rows are incomplete; remove it "
                         f"(python -m ingest --remove {video_id}) and ingest it again")
    return video, rows


def load_video_caches(read: SessionFactory, home: Home, video_id: int, fingerprint: str, *,
                      verify: bool = False) -> VideoCaches:
    """All caches of a ready video as one memory-mapped [T, layers, 2, kv_heads, k, head_dim] tensor."""
    with read() as s:
        _video, rows = _ready_rows(s, video_id, fingerprint)
    files = {r.file for r in rows}
    if len(files) != 1:
        raise StoreError(f"video {video_id}: its caches lie in {len(files)} files, not one pack")
    path = home.absolute(files.pop())
    if not path.is_file():
        raise StoreError(f"video {video_id}: its cache file {path} is missing; remove the video "
                         f"(python -m ingest --remove {video_id}) and ingest it again")
    pack = read_pack(path)
    if pack.metadata.get("fingerprint") != fingerprint:
        raise FingerprintMismatch(f"{path} holds caches of model {pack.metadata.get('fingerprint', '?')[:12]}, "
                                  f"not {fingerprint[:12]}")
    if pack.kv.shape[0] != len(rows):
        raise StoreError(f"{path} holds {pack.kv.shape[0]} segments, the database {len(rows)}")
    per, base = pack.segment_nbytes, pack.kv_data_offset  # slice t is [base + t * per, + per)
    for t, row in enumerate(rows):
        if row.offset != base + t * per or row.nbytes != per:
            raise StoreError(f"{path}: segment {t} lies elsewhere than the database says")
        if verify and checksum(tensor_bytes(pack.kv[t])) != row.checksum:
            raise StoreError(f"{path}: segment {t} is corrupt (checksum mismatch); remove video {video_id} and "
                             "ingest it again")
    compressor = rows[0].compressor
    return VideoCaches(video_id=video_id, fingerprint=fingerprint, compressor=compressor, kv=pack.kv,
                       source_positions=pack.source_positions, spans=[(r.start_s, r.end_s) for r in rows])


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
