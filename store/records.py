"""Plain records the store takes and gives (no ORM objects cross its boundary)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # not imported at run time: listing videos needs no torch (python -m ingest --list)
    import torch


class ClaimStatus(StrEnum):
    """What claiming a video came to (`Claim.status`)."""

    CLAIMED = "claimed"
    """This process owns the video now: ingest it (resuming `done` segments)."""
    PRESENT = "present"
    """Already ingested, nothing to do."""
    BUSY = "busy"
    """Another live process is ingesting it."""


@dataclass(frozen=True)
class ModelInfo:
    fingerprint: str
    name: str
    compressor: str
    k: int
    config: dict


@dataclass(frozen=True)
class LegacyModel:
    """A model row registered under the old identity (before migration 0002), with what it was registered with."""

    id: int
    fingerprint: str
    config: dict


@dataclass(frozen=True)
class VideoKey:
    """The identity of a stored video: the file's content, the model, how segments were sampled, how caches are
    stored."""

    sha256: str
    model_id: int
    segment_seconds: float
    frames_per_segment: int
    decode_max_side: int
    """Frames were decoded with no side above this many pixels (0: native size)."""
    cache_dtype: str = "model"
    """How the caches are stored (store/quant.py `CACHE_DTYPES`): int8 and float caches of one file never mix."""


@dataclass(frozen=True)
class Claim:
    status: ClaimStatus
    video_id: int
    uid: str
    model_id: int
    fingerprint: str
    done: frozenset[int] = frozenset()
    """Segment indices already stored (resume skips them)."""
    holder: str | None = None
    """For `ClaimStatus.BUSY`: the owner token of the process holding the video."""
    num_segments: int | None = None
    duration: float | None = None
    cache_dtype: str = "model"
    """How the video's caches are stored (the writer encodes every chunk so)."""


@dataclass(frozen=True)
class ProbeRecord:
    duration: float
    fps: float
    num_frames: int
    width: int
    height: int
    rotation: int
    num_segments: int


@dataclass(frozen=True)
class SegmentRecord:
    index: int
    start_s: float
    end_s: float
    thumbnail: bytes | None = None
    thumbnail_mime: str | None = None


@dataclass(frozen=True)
class VideoInfo:
    id: int
    uid: str
    path: str
    sha256: str | None
    status: str
    """A `store.models.VideoStatus` value, as the database gives it back (a plain str: it compares equal)."""
    error: str | None
    duration: float | None
    fps: float | None
    size: int | None
    width: int | None
    height: int | None
    num_segments: int | None
    segments_done: int
    segment_seconds: float
    frames_per_segment: int
    decode_max_side: int | None
    model_name: str
    fingerprint: str
    claimed_by: str | None
    updated_at: datetime
    paths: list[str] = field(default_factory=list)
    cache_dtype: str = "model"

    def to_dict(self) -> dict:
        return {
            "id": self.id, "path": self.path, "status": self.status, "error": self.error,
            "duration_s": self.duration, "fps": self.fps, "size": self.size, "width": self.width,
            "height": self.height, "segments": self.num_segments, "segments_done": self.segments_done,
            "segment_seconds": self.segment_seconds, "frames_per_segment": self.frames_per_segment,
            "decode_max_side": self.decode_max_side, "model": self.model_name, "fingerprint": self.fingerprint,
            "sha256": self.sha256,
            "claimed_by": self.claimed_by, "updated_at": self.updated_at.isoformat(timespec="seconds") + "Z",
            "paths": self.paths, "cache_dtype": self.cache_dtype,
        }


@dataclass(frozen=True)
class SegmentInfo:
    index: int
    start_s: float
    end_s: float
    thumbnail: bytes | None
    thumbnail_mime: str | None


@dataclass(frozen=True)
class VideoCaches:
    """All caches of a ready video, stacked, read into memory and checked (store/integrity.py)."""

    video_id: int
    fingerprint: str
    compressor: str
    kv: torch.Tensor  # [T, layers, 2, kv_heads, k, head_dim]; ragged: the pack's [N, 2, kv_heads, head_dim]
    source_positions: torch.Tensor  # [T] int64
    ragged: list | None = None
    """A ragged pack's caches (`voco.cache.RaggedSegmentCache`, views of the pack), else None."""

    def segment_caches(self) -> list:
        from voco.cache import SegmentCache

        if self.ragged is not None:
            return list(self.ragged)
        return [SegmentCache(self.kv[t], int(self.source_positions[t]), self.fingerprint, self.compressor)
                for t in range(self.kv.shape[0])]
