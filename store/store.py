"""`Store`: the one object the ingest worker and the app use to reach the database and the cache files.

    from store import Store
    store = Store.open()                     # $VOCO_HOME or ~/.cache/voco, SQLite voco.db inside
    store = Store.open("/data/voco", db_url="postgresql+psycopg://voco@db/voco")
    for v in store.list_videos(): ...
    caches = store.load_caches(video_id, model.fingerprint)     # list[SegmentCache], read and checked
    packed = store.load_video_caches(video_id, model.fingerprint)  # stacked kv [T, ...] + positions

Opening runs the Alembic migrations (idempotent). The store knows `voco`'s cache type, never the
model: callers pass the model's fingerprint.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from store import claims, live, reader, rekey, writer
from store.claims import DEFAULT_LEASE_S
from store.db import StoreError, make_engine, session_factories, sqlite_url, upgrade
from store.home import Home, default_home
from store.models import File, Model, VideoStatus, utcnow
from store.records import (
    Claim,
    LegacyModel,
    ModelInfo,
    ProbeRecord,
    SegmentInfo,
    SegmentRecord,
    VideoCaches,
    VideoInfo,
    VideoKey,
)
from store.text import storable_text

if TYPE_CHECKING:
    from voco.cache import SegmentCache


class Store:
    def __init__(self, home: str | os.PathLike | None = None, db_url: str | None = None, *,
                 lease_s: float = DEFAULT_LEASE_S):
        root = Path(home).expanduser().resolve() if home is not None else default_home()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"cannot create the home folder {root}: {err}; pass --home DIR or set VOCO_HOME") from err
        self.home = Home(root)
        self.url = db_url or sqlite_url(self.home.db_path)
        self.engine = make_engine(self.url)
        self.read, self.write = session_factories(self.engine)
        self.lease_s = lease_s
        try:
            upgrade(self.engine)
        except OperationalError as err:
            self.engine.dispose()
            raise StoreError(f"cannot open the database {self.engine.url!r}: {err.orig}") from err

    def check_writable(self) -> None:
        """`StoreError` naming the reason when this process cannot write the database or the home folder: checked
        before work starts (a model load, a first file) rather than found by every file's first write."""
        try:
            with self.write() as s:
                s.execute(text("UPDATE models SET id = id WHERE 1 = 0"))  # takes the write lock, changes nothing
                s.rollback()
        except DBAPIError as err:
            url = self.engine.url.render_as_string(hide_password=True)
            raise StoreError(f"the database {url} is unusable: it cannot be written ({err.orig})") from err
        probe = self.home.root / f".write-check-{os.getpid()}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise StoreError(f"the home folder {self.home.root} cannot be written: {err.strerror}") from err

    @classmethod
    def open(cls, home: str | os.PathLike | None = None, db_url: str | None = None, **kwargs) -> Store:
        return cls(home, db_url, **kwargs)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- models and files ---------------------------------------------------------------------

    def register_model(self, info: ModelInfo) -> int:
        """The id of the model with this fingerprint, inserting it the first time."""
        info = dataclasses.replace(info, name=storable_text(info.name))
        for _ in range(3):
            with self.write() as s:
                found = s.scalar(select(Model).where(Model.fingerprint == info.fingerprint))
                if found is not None:
                    return found.id
                model = Model(fingerprint=info.fingerprint, name=info.name, compressor=info.compressor, k=info.k,
                              config=info.config)
                s.add(model)
                try:
                    s.commit()
                    return model.id
                except IntegrityError:
                    s.rollback()
        raise StoreError(f"could not register model {info.fingerprint[:12]}")

    def legacy_models(self) -> list[LegacyModel]:
        """Model rows registered under the old identity (before migration 0002): see store/rekey.py."""
        return rekey.legacy_models(self.read)

    def adopt_legacy_model(self, legacy_id: int, info: ModelInfo) -> tuple[int, int]:
        """Re-key an old model row to `info`'s identity (see store/rekey.py); (model id, videos left behind)."""
        return rekey.adopt_legacy_model(self.write, legacy_id, info)

    def known_sha256(self, path: str, size: int, mtime_ns: int) -> str | None:
        """The content hash remembered for this path, if its size and mtime are unchanged."""
        path = storable_text(path)
        with self.read() as s:
            f = s.scalar(select(File).where(File.path == path))
            return f.sha256 if f is not None and f.size == size and f.mtime_ns == mtime_ns else None

    def remember_file(self, path: str, sha256: str, size: int, mtime_ns: int) -> None:
        path = storable_text(path)
        for _ in range(3):
            with self.write() as s:
                f = s.scalar(select(File).where(File.path == path))
                if f is None:
                    s.add(File(path=path, sha256=sha256, size=size, mtime_ns=mtime_ns))
                else:
                    f.sha256, f.size, f.mtime_ns, f.seen_at = sha256, size, mtime_ns, utcnow()
                try:
                    s.commit()
                    return
                except IntegrityError:
                    s.rollback()

    # ---- claims (see store/claims.py) -----------------------------------------------------------

    def claim(self, key: VideoKey, *, fingerprint: str, path: str, size: int, owner: str) -> Claim:
        return claims.claim(self.write, key, fingerprint=fingerprint, path=storable_text(path), size=size, owner=owner,
                            lease_s=self.lease_s)

    def heartbeat(self, owner: str) -> int:
        return claims.heartbeat(self.write, owner)

    def release(self, owner: str) -> int:
        return claims.release(self.write, owner)

    def record_unreadable(self, *, model_id: int, segment_seconds: float, frames_per_segment: int, path: str,
                          error: str) -> int:
        return claims.record_unreadable(self.write, model_id=model_id, segment_seconds=segment_seconds,
                                        frames_per_segment=frames_per_segment, path=storable_text(path),
                                        error=storable_text(error))

    def forget_unreadable(self, *, model_id: int, path: str) -> None:
        claims.forget_unreadable(self.write, model_id=model_id, path=storable_text(path))

    # ---- writing a claimed video (see store/writer.py) ----------------------------------------

    def prepare(self, claim: Claim) -> list[Path]:
        """Sweep files a killed run left in the video's folder; call after claiming (or on `ClaimStatus.PRESENT`)."""
        return writer.sweep_video_dir(self.read, self.home, claim.video_id, claim.uid)

    def set_probe(self, claim: Claim, owner: str, probe: ProbeRecord) -> None:
        writer.set_probe(self.write, claim, owner, probe)

    def add_chunk(self, claim: Claim, owner: str, segments: Sequence[SegmentRecord],
                  caches: Sequence[SegmentCache]) -> Path:
        return writer.add_chunk(self.write, self.home, claim, owner, segments, caches)

    def set_live(self, claim: Claim, owner: str, probe: ProbeRecord) -> None:
        """The claimed video is live: `probe` says what it holds so far (store/live.py)."""
        live.set_live(self.write, claim, owner, probe)

    def finish(self, claim: Claim, owner: str) -> int:
        return writer.finish(self.write, self.home, claim, owner)

    def fail(self, claim: Claim, owner: str, error: str) -> None:
        writer.fail(self.write, claim, owner, storable_text(error))

    def reset_if_files_missing(self, video_id: int) -> list[str]:
        """Check a ready video's cache file before calling it present (ingest does, on `ClaimStatus.PRESENT`).

        A missing file resets the video; a truncated, swapped or foreign one (its header, no data
        read) marks it damaged. Either way the next claim ingests it again. Returns what was wrong.
        """
        missing = writer.reset_if_files_missing(self.write, self.home, video_id)
        if missing:
            return missing
        damaged = reader.check_pack_header(self.read, self.write, self.home, video_id)
        return [damaged] if damaged else []

    def status(self, video_id: int) -> tuple[str, str | None] | None:
        return writer.video_status(self.read, video_id)

    # ---- reading (see store/reader.py) --------------------------------------------------------

    def list_videos(self, *, status: str | None = None) -> list[VideoInfo]:
        return reader.list_videos(self.read, status=status)

    def ready_rows(self, fingerprint: str) -> dict[int, tuple[str, int]]:
        """id -> (uid, segments) of this model identity's ready videos (`reader.ready_rows`)."""
        return reader.ready_rows(self.read, fingerprint)

    def compressions(self, names: Sequence[str]) -> list[tuple[str, int]]:
        """(compressor, k) of the models registered under one of `names` (a checkpoint's name or folder) that
        hold videos, most videos first: how a library was built, so the app answers it with the same."""
        return reader.compressions(self.read, names)

    def get_video(self, video_id: int) -> VideoInfo:
        return reader.get_video(self.read, video_id)

    def segments(self, video_id: int, *, thumbnails: bool = False) -> list[SegmentInfo]:
        """A video's segments in order (index, start and end seconds); their JPEG thumbnails with `thumbnails`."""
        return reader.segments(self.read, video_id, thumbnails=thumbnails)

    def load_video_caches(self, video_id: int, fingerprint: str, *, verify: bool = False) -> VideoCaches:
        """Stacked caches of a ready video, checked (see `reader.load_video_caches`); PackDamaged when not. A live
        video's (being followed): the chunks stored so far (`live.load_live_caches`)."""
        if reader.video_status(self.read, video_id) == VideoStatus.LIVE:
            return live.load_live_caches(self.read, self.home, video_id, fingerprint)
        return reader.load_video_caches(self.read, self.write, self.home, video_id, fingerprint, verify=verify)

    def load_caches(self, video_id: int, fingerprint: str, *, verify: bool = False) -> list[SegmentCache]:
        return self.load_video_caches(video_id, fingerprint, verify=verify).segment_caches()

    def remove(self, video_id: int, *, force: bool = False) -> VideoInfo:
        return reader.remove_video(self.write, self.home, video_id, lease_s=self.lease_s, force=force)
