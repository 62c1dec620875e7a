"""Re-keying model rows an older store registered under the old identity (see migration 0002).

The old identity hashed the whole voco.json (prompt, segment sampling) and a sample of the weights,
so one set of weights could hold several rows (one per prompt or `--segment-seconds`). The caller,
who has the weights, recognises its own old rows (`legacy_models`, then recomputes each row's old
fingerprint from the config it was registered with) and names each one's new identity
(`adopt_legacy_model`): the row is re-keyed in place, or its videos move to the row that already has
that identity. Cache rows and pack files keep the fingerprint they were written with; the reader
checks packs against the cache rows, so moved videos load without rewriting a byte.
"""

from __future__ import annotations

from sqlalchemy import and_, delete, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from store.db import SessionFactory
from store.models import Cache, Model, Segment, Video
from store.records import LegacyModel, ModelInfo

OLD_IDENTITY = 1


def legacy_models(read: SessionFactory) -> list[LegacyModel]:
    with read() as s:
        return [LegacyModel(m.id, m.fingerprint, m.config or {})
                for m in s.scalars(select(Model).where(Model.identity_version == OLD_IDENTITY).order_by(Model.id))]


def adopt_legacy_model(write: SessionFactory, legacy_id: int, info: ModelInfo) -> tuple[int, int]:
    """Give old row `legacy_id` the identity `info`; returns (the model id now holding its videos, videos left
    behind because the target already holds a video with the same key: they stay under the old row)."""
    with write() as s:
        old = s.get(Model, legacy_id)
        if old is None or old.identity_version != OLD_IDENTITY:
            raise ValueError(f"model {legacy_id} is not a row of the old identity")
        target = s.scalar(select(Model).where(Model.fingerprint == info.fingerprint))
        if target is None:  # the first old row of these weights becomes the model, in place
            old.fingerprint, old.identity_version = info.fingerprint, 2
            old.name, old.compressor, old.k, old.config = info.name, info.compressor, info.k, info.config
            s.commit()
            return old.id, 0
        other = aliased(Video)
        clash = exists().where(and_(other.model_id == target.id, other.sha256 == Video.sha256,
                                    other.segment_seconds == Video.segment_seconds,
                                    other.frames_per_segment == Video.frames_per_segment,
                                    other.decode_max_side == Video.decode_max_side,
                                    other.cache_dtype == Video.cache_dtype))
        movable = select(Video.id).where(Video.model_id == legacy_id, ~clash)
        moving = list(s.scalars(movable))
        if moving:
            segment_ids = select(Segment.id).where(Segment.video_id.in_(moving))
            s.execute(update(Cache).where(Cache.segment_id.in_(segment_ids)).values(model_id=target.id)
                      .execution_options(synchronize_session=False))
            s.execute(update(Video).where(Video.id.in_(moving)).values(model_id=target.id)
                      .execution_options(synchronize_session=False))
        left = len(list(s.scalars(select(Video.id).where(Video.model_id == legacy_id))))
        if not left:
            try:
                with s.begin_nested():  # an empty old row goes, unless something else still refers to it
                    s.execute(delete(Model).where(Model.id == legacy_id))
            except IntegrityError:
                pass
        s.commit()
        return target.id, left
