"""Uploads through the service: checked, ingested in the background, named as uploaded, cancellable,
and nothing left behind that no stored video needs."""

import os
import threading
import time
from pathlib import Path

import pytest

from app.lines import library_line
from app.service import ChatService, ServiceError, ServiceLimits
from app.uploads import VIDEO_SUFFIXES, UploadStatus, display_name
from ingest.run import ingest_paths
from tests.app.conftest import new_video
from voco.video.probe import probe


@pytest.fixture
def service(library, own_home, tmp_path):
    _, model = library
    return ChatService(own_home, model, model_name="tiny", upload_dir=tmp_path / "home" / "uploads")


def finished(service, job, timeout=120):
    assert job.finished.wait(timeout), f"upload still {job.status} after {timeout} s"
    return service.job(job.id)


def leftovers(service) -> list[str]:
    folder = service.uploads.folder
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_upload_is_checked_before_anything_is_copied(service, library, tmp_path):
    root, _ = library
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(ServiceError, match="not a video file name"):
        service.upload(bad)
    small = ChatService(service.store, service.model, upload_dir=tmp_path / "u2",
                        limits=ServiceLimits(max_upload_bytes=10))
    with pytest.raises(ServiceError, match="over the upload limit"):
        small.upload(next((root / "data" / "videos").glob("*.mp4")))
    with pytest.raises(ServiceError, match="uploads are switched off"):
        ChatService(service.store, service.model).upload(bad)
    assert leftovers(service) == []


def test_upload_keeps_its_name_a_duplicate_is_dropped_and_leftovers_are_swept(service, library, tmp_path):
    root, _ = library
    job = finished(service, service.upload(new_video(tmp_path / "a.mp4", 3, seed=41), "My holiday (1).mp4"))
    assert job.status == UploadStatus.READY, job.message
    video = service.video(job.video_id)
    assert service.name(video.path) == "My holiday (1).mp4"  # as uploaded, no hash prefix
    assert [v.id for v in service.videos("holiday")] == [video.id]

    # the same bytes again: the stored video is reused and the second copy is not kept
    again = finished(service, service.upload(Path(video.path), "copy.mp4"))
    assert (again.status, again.video_id) == (UploadStatus.READY, video.id)
    assert leftovers(service) == [job.id, f"{job.id}/My holiday (1).mp4"]

    # what earlier runs left: an unreferenced legacy upload and a failed one; a recent file is left alone
    legacy = service.uploads.folder / "0123abcd_old.mp4"
    legacy.write_bytes(b"x")
    failed = service.uploads.folder / "f00d" / "broken.mp4"
    failed.parent.mkdir()
    failed.write_bytes(b"not a video" * 50)
    ingest_paths([failed], model=service.model, model_name="tiny", store=service.store)
    assert service.counts()["failed"] == 1
    for path in (legacy, failed, failed.parent):
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    (service.uploads.folder / "recent.mp4").write_bytes(b"y")
    removed = service.sweep_uploads()
    assert sorted(p.name for p in removed) == ["0123abcd_old.mp4", "f00d"]
    assert leftovers(service) == [job.id, f"{job.id}/My holiday (1).mp4", "recent.mp4"]
    assert service.counts()["failed"] == 0  # the failed upload's row went with its file


def test_a_broken_upload_fails_with_a_reason_and_leaves_nothing(service, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not really a video" * 100)
    before = service.counts()
    with pytest.raises(ServiceError, match=r"^broken.mp4: not a readable video: ") as refused:
        service.upload(broken)  # refused before it is copied: its length is read first
    assert str(tmp_path) not in str(refused.value)  # the server's paths are not the caller's business
    assert leftovers(service) == []
    unchecked = ChatService(service.store, service.model, upload_dir=service.uploads.folder,
                            limits=ServiceLimits(max_upload_seconds=None))
    job = finished(unchecked, unchecked.upload(broken))  # unchecked, it fails in the ingest: the same cleanup
    assert job.status == UploadStatus.FAILED and "broken.mp4" in job.message
    assert leftovers(service) == []
    assert service.counts() == before  # no failed row pointing at a deleted file


def test_an_upload_can_be_cancelled_while_it_is_compressed(service, tmp_path, monkeypatch):
    source = new_video(tmp_path / "b.mp4", 20, seed=43)
    compress, calls, started = service.model.compress, [], threading.Event()

    def compress_then_cancel(*args, **kwargs):  # the person clicks Cancel while the first batch is compressed
        calls.append(1)
        assert started.wait(30)
        service.cancel_upload(job.id)
        return compress(*args, **kwargs)

    monkeypatch.setattr(service.model, "compress", compress_then_cancel)
    job = service.upload(source, "long.mp4")
    started.set()
    job = finished(service, job)
    assert job.status == UploadStatus.CANCELLED, job.message
    assert len(calls) == 1  # stopped after the first of 3 batches (20 segments, 8 a batch)
    assert leftovers(service) == []
    assert not [v for v in service.store.list_videos() if Path(v.path).name == "long.mp4"]


def test_uploads_longer_than_the_limit_are_refused_and_ingest_names_are_taken(service, tmp_path):
    source = new_video(tmp_path / "c.mp4", 6, seed=44)  # 6 segments of the tiny model's length
    seconds = probe(source).duration
    short = ChatService(service.store, service.model, upload_dir=tmp_path / "u3",
                        limits=ServiceLimits(max_upload_seconds=seconds / 2))
    with pytest.raises(ServiceError, match=r"c.mp4: it lasts 0:\d\d, longer than the upload limit of 0:\d\d"):
        short.upload(source)
    assert not (tmp_path / "u3").exists() or not any((tmp_path / "u3").iterdir())
    for suffix in (".mpg", ".ts", ".mts"):  # what python -m ingest takes, the app takes
        assert suffix in VIDEO_SUFFIXES


def test_uploads_beyond_the_limit_wait_in_line_and_a_queued_one_cancels_at_once(service, tmp_path, monkeypatch):
    compress, release = service.model.compress, threading.Event()

    def held_compress(*args, **kwargs):  # the first upload keeps the model busy until the test lets it go
        assert release.wait(60)
        return compress(*args, **kwargs)

    monkeypatch.setattr(service.model, "compress", held_compress)
    first = service.upload(new_video(tmp_path / "d.mp4", 3, seed=45), "first.mp4")
    second = service.upload(new_video(tmp_path / "e.mp4", 3, seed=46), "second.mp4")
    third = service.upload(new_video(tmp_path / "f.mp4", 3, seed=47), "third.mp4")
    assert (second.status, second.message) == (UploadStatus.QUEUED, "queued: 1st in line (1 ingesting)")
    assert third.message == "queued: 2nd in line (1 ingesting)"
    assert service.cancel_upload(second.id).status == UploadStatus.CANCELLED  # it never started: at once
    assert second.finished.is_set() and third.message == "queued: 1st in line (1 ingesting)"
    release.set()
    assert finished(service, first).status == UploadStatus.READY
    assert finished(service, third).status == UploadStatus.READY
    names = {Path(v.path).name for v in service.store.list_videos()}
    assert {"first.mp4", "third.mp4"} <= names and "second.mp4" not in names
    assert not any("second.mp4" in entry for entry in leftovers(service))


def test_failed_videos_are_not_listed_but_counted(service, tmp_path):
    ready = {v.id for v in service.videos()}
    broken = tmp_path / "lib" / "broken.mp4"
    broken.parent.mkdir()
    broken.write_bytes(b"not a video" * 50)
    ingest_paths([broken], model=service.model, model_name="tiny", store=service.store)
    assert {v.id for v in service.videos()} == ready  # the failed one cannot be asked about
    assert service.counts() == {"ready": len(ready), "failed": 1}
    assert library_line(service).startswith(f"{len(ready)} videos ready · not listed: 1 failed")


def test_display_names_drop_only_the_legacy_upload_prefix(tmp_path):
    uploads = tmp_path / "uploads"
    assert display_name(str(uploads / "0123abcd_my clip.mp4"), uploads) == "my clip.mp4"  # stored before the fix
    assert display_name(str(uploads / "5f0e2b9c1a3d" / "0123abcd_x.mp4"), uploads) == "0123abcd_x.mp4"  # as uploaded
    assert display_name(str(tmp_path / "videos" / "0123abcd_x.mp4"), uploads) == "0123abcd_x.mp4"
