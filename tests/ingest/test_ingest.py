import shutil
import time

import numpy as np
import pytest
import torch

from ingest.config import IngestConfig, UsageError
from ingest.progress import ProgressEvent
from ingest.run import ingest_paths
from store import Store, StoreError
from tests.fixtures.videos import decode_all, make_bad_files, pattern_frames, write_resolution_changes, write_video
from tests.ingest.conftest import SEGMENT_SECONDS
from voco.segments import segment_frame_indices
from voco.video.decode import decord_available
from voco.video.frames import decode_video_segments

CFG = IngestConfig(segment_seconds=SEGMENT_SECONDS, batch_size=2)


def run(paths, home, model, config=CFG, **kwargs):
    return ingest_paths([str(p) for p in paths], home=home, model=model, model_name="tiny", config=config, **kwargs)


def test_every_container_codec_and_oddity_is_ingested(tmp_path, video_dir, model):
    summary = run([video_dir], tmp_path / "home", model)
    assert summary.exit_code == 0, summary.text()
    assert summary.count("ingested") == len(summary.files) == 13
    by_name = {f.path.rsplit("/", 1)[-1]: f for f in summary.files}
    assert by_name["h264.mp4"].segments == 3 and by_name["h264.mp4"].duration_s == pytest.approx(3.0)
    assert by_name["vfr.mkv"].segments == 4  # 3.55 s: the last, partial segment is kept
    assert by_name["synthetic.mp4"].segments == 3
    with Store.open(tmp_path / "home") as store:
        videos = {v.path.rsplit("/", 1)[-1]: v for v in store.list_videos()}
        assert all(v.status == "ready" and v.segments_done == v.num_segments for v in videos.values())
        rotated = videos["rotated.mp4"]
        assert (rotated.width, rotated.height) == (48, 64)  # display orientation
        segments = store.segments(rotated.id, thumbnails=True)
        assert all(s.thumbnail[:2] == b"\xff\xd8" and s.thumbnail_mime == "image/jpeg" for s in segments)
        assert [(s.start_s, s.end_s) for s in segments] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]


def test_a_stream_that_changes_resolution_is_ingested_whole(tmp_path, model):
    """A live-style recording whose resolution changes twice: every segment stored (was: 'Sizes of tensors must
    match'), each cache what the model computes on the first-size frames."""
    path = write_resolution_changes(tmp_path / "live.ts", [(48, 64), (64, 96), (36, 48)], frames_each=15)
    config = IngestConfig(segment_seconds=SEGMENT_SECONDS, batch_size=2, decode_max_side=0)
    summary = run([path], tmp_path / "home", model, config)
    assert summary.exit_code == 0, summary.text()
    (result,) = summary.files
    assert result.segments == 5  # 4.5 s; segments 1 and 3 straddle a change
    segments = decode_video_segments(path, segment_seconds=SEGMENT_SECONDS, frames_per_segment=2)
    expected = model.compress(segments, batch_size=2)
    with Store.open(tmp_path / "home") as store:
        caches = store.load_caches(result.video_id, model.fingerprint, verify=True)
    for got, want in zip(caches, expected, strict=True):
        torch.testing.assert_close(got.kv, want.kv, rtol=1e-5, atol=1e-6)


def test_stored_caches_are_what_the_model_computes_on_the_sampled_frames(tmp_path, video_dir, model):
    path = video_dir / "h264.mkv"
    config = IngestConfig(segment_seconds=SEGMENT_SECONDS, batch_size=2, decode_max_side=0)
    (result,) = run([path], tmp_path / "home", model, config).files
    frames, timestamps = decode_all(path)
    segments = [frames[i] for i in segment_frame_indices(timestamps, 3.0, SEGMENT_SECONDS, 2)]
    expected = model.compress(segments, batch_size=2)
    with Store.open(tmp_path / "home") as store:
        caches = store.load_caches(result.video_id, model.fingerprint, verify=True)
    assert len(caches) == len(expected) == 3
    for got, want in zip(caches, expected, strict=True):
        assert got.source_position == want.source_position and got.compressor == want.compressor
        torch.testing.assert_close(got.kv, want.kv, rtol=1e-5, atol=1e-6)


def test_second_run_does_nothing_and_same_bytes_elsewhere_are_free(tmp_path, one_video, model):
    home = tmp_path / "home"
    first = run([one_video], home, model)
    assert [f.status for f in first.files] == ["ingested"]
    again = run([one_video], home, model)
    assert [f.status for f in again.files] == ["present"] and again.segments == 0
    copy = tmp_path / "renamed" / "copy.mkv"
    copy.parent.mkdir()
    shutil.copy(one_video, copy)
    moved = run([copy], home, model)
    assert [f.status for f in moved.files] == ["present"]
    assert moved.files[0].video_id == first.files[0].video_id
    with Store.open(home) as store:
        (video,) = store.list_videos()
        assert sorted(video.paths) == sorted([str(one_video), str(copy)])
    write_video(one_video, pattern_frames(25, seed=2))  # changed content: a new video
    changed = run([one_video], home, model)
    assert [f.status for f in changed.files] == ["ingested"]
    assert changed.files[0].video_id != first.files[0].video_id


def test_another_model_or_segment_length_is_another_video(tmp_path, one_video, model):
    from voco.tiny import tiny_model

    home = tmp_path / "home"
    a = run([one_video], home, model).files[0]
    b = ingest_paths([one_video], home=home, model=tiny_model("llama", k=1, seed=1), model_name="other",
                     config=CFG).files[0]
    c = run([one_video], home, model, IngestConfig(segment_seconds=0.5)).files[0]
    assert (a.status, b.status, c.status) == ("ingested", "ingested", "ingested")
    assert len({a.video_id, b.video_id, c.video_id}) == 3 and c.segments == 5


def test_bad_files_fail_with_reasons_and_the_rest_goes_on(tmp_path, video_dir, one_video, model):
    folder = tmp_path / "mixed"
    zoo = make_bad_files(folder, video_dir / "h264.mp4")
    shutil.copy(one_video, folder / "good.mp4")
    home = tmp_path / "home"
    summary = run([folder], home, model)
    status = {f.path.rsplit("/", 1)[-1]: f for f in summary.files}
    assert status.pop("good.mp4").status == "ingested"
    assert {name for name in status} == {p.name for p in zoo.values()}
    for name, result in status.items():
        assert result.status == "failed" and name in result.error, result
    assert "audio only" in status["audio_only.mp4"].error
    assert summary.exit_code == 2
    rerun = run([folder], home, model)  # failed files are retried, and fail again without piling up rows
    assert rerun.count("failed") == len(zoo) and rerun.count("present") == 1
    with Store.open(home) as store:
        failed = store.list_videos(status="failed")
        assert len(failed) == len(zoo) and all(v.error for v in failed)


def test_one_video_failing_in_the_model_does_not_stop_the_others(tmp_path, video_dir, model, monkeypatch):
    calls = {"n": 0}
    real = model.compress

    def flaky(segments, batch_size=8):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("out of memory (simulated)")
        return real(segments, batch_size=batch_size)

    monkeypatch.setattr(model, "compress", flaky)
    paths = [video_dir / "h264.mp4", video_dir / "vp8.webm"]
    summary = run(paths, tmp_path / "home", model)
    assert [f.status for f in summary.files] == ["failed", "ingested"]
    assert "out of memory (simulated)" in summary.files[0].error
    monkeypatch.setattr(model, "compress", real)
    retry = run(paths, tmp_path / "home", model)
    assert [f.status for f in retry.files] == ["ingested", "present"]


def test_a_cancel_event_stops_the_ingest_as_ctrl_c_does(tmp_path, model):
    """`ingest_paths(cancel=...)` (the app's upload cancel): set during the second batch, the ingest stops before
    the third, keeps the two batches it compressed, and says it was interrupted."""
    import threading

    long = write_video(tmp_path / "long.mp4", pattern_frames(80))  # 8 s: 8 segments, 4 batches
    cancel = threading.Event()
    batches: list[ProgressEvent] = []

    def cancel_at_the_second_batch(event: ProgressEvent) -> None:
        if event.kind == "batch":
            batches.append(event)
            if len(batches) == 2:
                cancel.set()

    summary = run([long], tmp_path / "home", model, progress=cancel_at_the_second_batch, cancel=cancel)
    assert summary.interrupted and summary.segments == 4 and len(batches) == 2
    with Store.open(tmp_path / "home") as store:
        (video,) = store.list_videos()
        assert (video.status, video.segments_done) == ("pending", 4)


def test_progress_events_and_interrupt_then_resume(tmp_path, model):
    long = write_video(tmp_path / "long.mp4", pattern_frames(80))  # 8 s: 8 segments, 4 batches
    home = tmp_path / "home"
    events: list[ProgressEvent] = []

    def stop_after_two_batches(event: ProgressEvent) -> None:
        events.append(event)
        if sum(e.kind == "batch" for e in events) == 2:
            raise KeyboardInterrupt

    # a listener's ordinary exception is ignored, but Ctrl-C is not
    summary = run([long], home, model, progress=stop_after_two_batches)
    assert summary.interrupted and summary.exit_code == 130 and summary.segments == 4
    assert [e.kind for e in events] == ["start", "batch", "batch"]
    assert events[0].segments_total == 8 and events[0].frames_total == 80
    assert events[-1].segments_done == 4 and events[-1].frames_done == 40
    with Store.open(home) as store:
        (video,) = store.list_videos()
        assert (video.status, video.segments_done, video.claimed_by is not None) == ("pending", 4, True)
    events.clear()
    resumed = run([long], home, model, progress=events.append)
    assert [f.status for f in resumed.files] == ["ingested"] and resumed.segments == 4  # only the missing half
    assert events[0].segments_done == 4 and events[-1].kind == "done" and events[-1].status == "ingested"
    with Store.open(home) as store:
        caches = store.load_video_caches(resumed.files[0].video_id, model.fingerprint, verify=True)
        assert caches.kv.shape[0] == 8
        files = sorted(p.name.split("-")[0] for p in store.home.caches.rglob("*") if p.is_file())
        assert files == ["pack", "search"]  # one pack and its search vectors, no chunk or temp file left


def test_missing_paths_are_a_usage_error_before_any_work(tmp_path, model):
    with pytest.raises(UsageError, match="no such file or folder"):
        run([tmp_path / "nope.mp4"], tmp_path / "home", model)
    assert not (tmp_path / "home").exists()


def test_frames_are_downscaled_early_but_the_model_input_barely_changes(tmp_path, model):
    big = write_video(tmp_path / "big.mp4", pattern_frames(10, height=240, width=320))
    home = tmp_path / "home"
    small = run([big], home, model, IngestConfig(segment_seconds=SEGMENT_SECONDS)).files[0]  # 2x image_size
    native = run([big], tmp_path / "home2", model, IngestConfig(segment_seconds=SEGMENT_SECONDS,
                                                                decode_max_side=0)).files[0]
    with Store.open(home) as s1, Store.open(tmp_path / "home2") as s2:
        a = s1.load_video_caches(small.video_id, model.fingerprint).kv
        b = s2.load_video_caches(native.video_id, model.fingerprint).kv
    rel = (a - b).norm() / b.norm()
    assert rel < 0.05 and np.isfinite(rel.item())


def _hold(home, one_video, model, owner):
    """Claim `one_video` for another (live) owner, as a concurrent ingest process would."""
    from ingest.identify import identify, video_key
    from ingest.run import model_info

    with Store.open(home) as store:
        model_id = store.register_model(model_info(model, "tiny"))
        sha = identify(one_video).sha256
        key = video_key(sha, model_id, segment_seconds=SEGMENT_SECONDS,
                        frames_per_segment=model.voco.frames_per_segment,
                        image_size=model.config.vision_config.image_size, decode_max_side=None)
        claim = store.claim(key, fingerprint=model.fingerprint, path=str(one_video), size=1, owner=owner)
        assert claim.status == "claimed"


def test_a_video_held_by_another_process_is_waited_for_then_taken_over(tmp_path, one_video, model):
    import threading

    from store.claims import new_owner

    home, other = tmp_path / "home", new_owner()
    _hold(home, one_video, model, other)
    busy = run([one_video], home, model, IngestConfig(segment_seconds=SEGMENT_SECONDS, wait_for_others=False))
    assert busy.files[0].status == "failed" and "another process" in busy.files[0].error
    with Store.open(home) as store:  # the other process lets go after a while (or dies)
        timer = threading.Timer(0.5, store.release, args=(other,))
        timer.start()
        waited = run([one_video], home, model, IngestConfig(segment_seconds=SEGMENT_SECONDS, poll_s=0.1))
        timer.join()
    assert waited.files[0].status == "ingested"


def test_an_unexpected_error_fails_that_file_only(tmp_path, video_dir, model, monkeypatch):
    real = Store.claim

    def broken(self, key, **kwargs):
        if kwargs["path"].endswith("h264.mp4"):
            raise RuntimeError("database hiccup (simulated)")
        return real(self, key, **kwargs)

    monkeypatch.setattr(Store, "claim", broken)
    summary = run([video_dir / "h264.mp4", video_dir / "h264.mov"], tmp_path / "home", model)
    assert [f.status for f in summary.files] == ["failed", "ingested"]
    assert "internal error: RuntimeError: database hiccup" in summary.files[0].error


@pytest.mark.parametrize("step", ["claim", "set_probe", "add_chunk"])
def test_a_database_outage_has_one_label_whichever_step_meets_it(tmp_path, video_dir, model, monkeypatch, step):
    """Before the claim, while planning (decoder thread) or while storing (main thread): `database error`. The
    first call of each step is the first file's (files go in order)."""
    from sqlalchemy.exc import OperationalError

    real, calls = getattr(Store, step), []

    def down(self, *args, **kwargs):
        calls.append(step)
        if len(calls) == 1:
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused (simulated)"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Store, step, down)
    summary = run([video_dir / "h264.mp4", video_dir / "h264.mov"], tmp_path / "home", model)
    assert [f.status for f in summary.files] == ["failed", "ingested"]
    assert summary.files[0].error == f"{video_dir / 'h264.mp4'}: database error: connection refused (simulated)"


@pytest.mark.skipif(decord_available(), reason="decord is installed")
def test_asking_for_decord_without_it_is_a_usage_error(tmp_path, one_video, model):
    with pytest.raises(UsageError, match="pip install decord"):
        run([one_video], tmp_path / "home", model, IngestConfig(decoder="decord"))


def test_a_cache_file_deleted_by_hand_is_noticed_and_rebuilt(tmp_path, one_video, model):
    home = tmp_path / "home"
    first = run([one_video], home, model).files[0]
    (pack,) = [p for p in (home / "caches").rglob("*.safetensors")]
    pack.unlink()
    with Store.open(home) as store, pytest.raises(StoreError, match="its cache file .* is missing"):
        store.load_caches(first.video_id, model.fingerprint)
    again = run([one_video], home, model).files[0]
    assert (again.status, again.video_id, again.segments) == ("ingested", first.video_id, 3)
    with Store.open(home) as store:
        assert len(store.load_caches(first.video_id, model.fingerprint, verify=True)) == 3


@pytest.mark.parametrize("chunk_segments,writes", [(1, 4), (3, 2), (64, 1)])  # batches of 2 segments
def test_compressed_segments_are_written_in_chunks_of_the_configured_size(tmp_path, model, monkeypatch,
                                                                          chunk_segments, writes):
    long = write_video(tmp_path / "long.mp4", pattern_frames(80))  # 8 s: 8 segments
    sizes = []
    real = Store.add_chunk
    monkeypatch.setattr(Store, "add_chunk", lambda self, claim, owner, segments, caches:
                        sizes.append(len(segments)) or real(self, claim, owner, segments, caches))
    config = IngestConfig(segment_seconds=SEGMENT_SECONDS, batch_size=2, chunk_segments=chunk_segments)
    (result,) = run([long], tmp_path / "home", model, config).files
    assert result.status == "ingested" and len(sizes) == writes and sum(sizes) == 8
    with Store.open(tmp_path / "home") as store:  # the pack is the same whatever the chunking
        kv = store.load_video_caches(result.video_id, model.fingerprint, verify=True).kv
    segments = decode_video_segments(long, segment_seconds=SEGMENT_SECONDS,
                                     frames_per_segment=model.voco.frames_per_segment,
                                     max_side=2 * model.config.vision_config.image_size)
    expected = torch.stack([c.kv for c in model.compress(segments, batch_size=2)])
    torch.testing.assert_close(kv, expected, rtol=0, atol=1e-6)


def test_decoder_end_marker_waits_for_a_consumer_slower_than_five_seconds():
    """The end marker must reach a consumer whose batch takes long (the real model on a busy CPU): it was put
    with a 5 s timeout and dropped, and ingest then waited on its queue for ever after storing every segment."""
    import queue
    import threading

    from ingest.pipeline import DONE, Producer

    items: queue.Queue = queue.Queue(maxsize=1)
    items.put("a batch the consumer is still compressing")
    stop = threading.Event()
    producer = Producer([], None, None, items, stop)  # no files: it only has to say it is done
    producer.start()
    time.sleep(6.0)
    assert items.get_nowait() == "a batch the consumer is still compressing"
    assert items.get(timeout=5) is DONE
    producer.join(timeout=5)
    assert not producer.is_alive()


def test_decoder_gives_up_the_end_marker_once_stopped():
    import queue
    import threading

    from ingest.pipeline import Producer

    items: queue.Queue = queue.Queue(maxsize=1)
    items.put("never read")
    stop = threading.Event()
    producer = Producer([], None, None, items, stop)
    producer.start()
    stop.set()  # the consumer was interrupted and drains the queue itself
    producer.join(timeout=5)
    assert not producer.is_alive()
