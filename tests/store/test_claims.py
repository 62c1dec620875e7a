"""Claims under real concurrency, on SQLite and on PostgreSQL: one winner, no error, whatever the timing."""

import threading

from store import ModelInfo, VideoKey
from store.claims import new_owner

FP = "ab" * 32
THREADS = 6
ROUNDS = 8


def _race(store, key: VideoKey) -> list:
    """THREADS owners claim `key` at the same instant; returns each one's claim status or exception."""
    barrier = threading.Barrier(THREADS)
    results: list = [None] * THREADS

    def contender(i: int) -> None:
        owner = new_owner()
        barrier.wait()
        try:
            results[i] = store.claim(key, fingerprint=FP, path="/v.mp4", size=1, owner=owner).status
        except Exception as err:  # noqa: BLE001 - the race's failure is what this test looks for
            results[i] = err

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_concurrent_claims_of_one_new_video_give_one_owner_and_no_error(store):
    model_id = store.register_model(ModelInfo(FP, "tiny", "voco", 1, {}))
    for round_ in range(ROUNDS):
        # an unreadable-file row for the same path makes the claim delete it in the same transaction
        store.record_unreadable(model_id=model_id, segment_seconds=1.0, frames_per_segment=2, path="/v.mp4",
                                error="was unreadable")
        results = _race(store, VideoKey(f"{round_:064x}", model_id, 1.0, 2, 0))
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, f"round {round_}: {errors[0]!r}"
        assert sorted(results) == ["busy"] * (THREADS - 1) + ["claimed"], results
    videos = store.list_videos()
    assert len(videos) == ROUNDS and all(v.status == "pending" for v in videos)  # and no unreadable row left


def test_concurrent_takeovers_of_a_failed_video_give_one_owner(store):
    model_id = store.register_model(ModelInfo(FP, "tiny", "voco", 1, {}))
    for round_ in range(ROUNDS):
        key = VideoKey(f"{round_ + 100:064x}", model_id, 1.0, 2, 0)
        first = store.claim(key, fingerprint=FP, path="/v.mp4", size=1, owner=(owner := new_owner()))
        store.fail(first, owner, "try again")
        results = _race(store, key)
        assert not [r for r in results if isinstance(r, BaseException)], results
        assert sorted(results) == ["busy"] * (THREADS - 1) + ["claimed"], results
