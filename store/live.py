"""Live videos (`python -m ingest --follow`): stored segment by segment, asked about while they grow.

A live video is claimed like any other (its follower keeps the claim's heartbeat); each completed batch of
segments is one chunk file and one transaction (store/writer.py `add_chunk`), after which `set_live` records how
far it has come. Readers load the chunks stored so far (`load_live_caches`), each segment checked against its
checksum. When the input ends, the follower calls `finish` (one pack, status ready) as ingest does for a file.
"""

from __future__ import annotations

from sqlalchemy import select

from store.db import SessionFactory, StoreError
from store.home import Home
from store.models import Cache, Segment, VideoStatus, utcnow
from store.reader import video_of_model
from store.records import Claim, ProbeRecord, VideoCaches
from store.writer import _require_owner, apply_probe


def set_live(write: SessionFactory, claim: Claim, owner: str, probe: ProbeRecord) -> None:
    """Mark the claimed video live with what it holds so far (segments, duration, frame size)."""
    with write() as s:
        video = _require_owner(s, claim, owner)
        apply_probe(video, probe)  # no check against a stored count: a live video grows
        video.status, video.updated_at = VideoStatus.LIVE, utcnow()
        s.commit()


def load_live_caches(read: SessionFactory, home: Home, video_id: int, fingerprint: str) -> VideoCaches:
    """The caches a live video holds so far, stacked [T, layers, 2, kv_heads, k, head_dim], each checked."""
    import torch

    from store.packs import RAGGED_PACK_FORMAT, checksum, pack_format, read_pack, tensor_bytes

    with read() as s:
        video, _ = video_of_model(s, video_id, fingerprint)
        rows = s.execute(select(Segment.index, Cache.file, Cache.offset, Cache.nbytes, Cache.checksum,
                                Cache.compressor).join(Cache, Cache.segment_id == Segment.id)
                         .where(Segment.video_id == video_id, Cache.model_id == video.model_id)
                         .order_by(Segment.index)).all()
    if not rows:
        raise StoreError(f"video {video_id} is live but holds no segment yet: ask again in a few seconds")
    if [r[0] for r in rows] != list(range(len(rows))):
        raise StoreError(f"video {video_id} is live but its stored segments are not 0 .. {len(rows) - 1}")
    packs, kv, positions = {}, [], []
    for index, file, offset, nbytes, digest, _ in rows:
        if file not in packs:
            path = home.absolute(file)
            try:
                if pack_format(path) == RAGGED_PACK_FORMAT:
                    raise StoreError(f"video {video_id}: live videos hold dense caches only (not {path})")
                pack = read_pack(path)
                packs[file] = (pack, pack.decoded_kv())
            except FileNotFoundError:
                raise StoreError(f"video {video_id}: its cache file {path} is missing") from None
            except StoreError:
                raise
            except (OSError, ValueError) as err:
                raise StoreError(f"video {video_id}: cannot read its cache file {path}: {err}") from err
        pack, decoded = packs[file]
        t = (offset - pack.kv_data_offset) // max(pack.segment_nbytes, 1)
        if not 0 <= t < len(pack.kv) or pack.slice_of(t) != (offset, nbytes) \
                or checksum(tensor_bytes(pack.kv[t])) != digest:
            raise StoreError(f"video {video_id}: segment {index} in {home.absolute(file)} does not match the "
                             "database (changed on disk?)")
        kv.append(decoded[t])
        positions.append(pack.source_positions[t])
    return VideoCaches(video_id=video_id, fingerprint=fingerprint, compressor=rows[0][5], kv=torch.stack(kv),
                       source_positions=torch.stack(positions))

