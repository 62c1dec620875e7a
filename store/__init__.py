"""The store: SQLAlchemy metadata (videos, segments, caches, models) and checked cache packs."""

from store.db import StoreError
from store.home import HOME_ENV, default_home
from store.integrity import PackDamaged
from store.models import VideoStatus
from store.reader import FingerprintMismatch, NotFound
from store.records import (
    Claim,
    ClaimStatus,
    ModelInfo,
    ProbeRecord,
    SegmentInfo,
    SegmentRecord,
    VideoCaches,
    VideoInfo,
    VideoKey,
)
from store.store import Store
from store.writer import ClaimLost

__all__ = [
    "HOME_ENV", "Claim", "ClaimLost", "ClaimStatus", "FingerprintMismatch", "ModelInfo", "NotFound", "PackDamaged",
    "ProbeRecord", "SegmentInfo", "SegmentRecord", "Store", "StoreError", "VideoCaches", "VideoInfo", "VideoKey",
    "VideoStatus", "default_home",
]
