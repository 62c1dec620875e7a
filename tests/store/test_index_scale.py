"""The search index past its size threshold (store/index.py): approximate structure, incremental sync, retraining.

The threshold is lowered through `SegmentIndex(approximate_from=...)`, so a few hundred segments stand for the
100k+ of a real library; the vectors are random unit vectors (queries equal to stored vectors find themselves).
"""

import numpy as np
import pytest
import torch
from safetensors import safe_open

from store import ModelInfo, ProbeRecord, SegmentRecord, Store, VideoKey
from store.claims import new_owner
from store.index import RETRAIN_GROWTH, SegmentIndex
from store.index_structures import approximate_index, is_approximate, ivf_lists
from store.search_vectors import write_vectors
from voco.cache import SegmentCache

FP = "ef" * 32
EMBEDDER = "test-emb"
DIM = 16
THRESHOLD = 200
SEGMENTS = 60  # per video: 3 videos stay exact, the 4th crosses the threshold


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "home") as s:
        yield s


def _video(store: Store, seed: int, segments: int = SEGMENTS, write: bool = True) -> tuple[int, np.ndarray]:
    """A ready video of `segments` tiny caches with a vector file of random unit vectors (without `write`: not yet,
    as between ingest's `finish` and its vectors); (id, vectors)."""
    model_id = store.register_model(ModelInfo(FP, "tiny", "voco", 1, {"k": 1}))
    owner = new_owner()
    claim = store.claim(VideoKey(f"{seed:064x}", model_id, 1.0, 1, 0), fingerprint=FP, path=f"/v{seed}.mp4",
                        size=1, owner=owner)
    store.set_probe(claim, owner, ProbeRecord(segments, 1.0, segments, 8, 8, 0, segments))
    caches = [SegmentCache(torch.zeros(1, 2, 1, 1, 4), 2, FP, "voco") for _ in range(segments)]
    store.add_chunk(claim, owner, [SegmentRecord(i, i, i + 1.0) for i in range(segments)], caches)
    store.finish(claim, owner)
    vectors = np.random.default_rng(seed).standard_normal((segments, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    if write:
        write_vectors(store, store.get_video(claim.video_id).uid, FP, EMBEDDER, vectors)
    return claim.video_id, vectors


def _index(store: Store) -> SegmentIndex:
    return SegmentIndex(store, FP, EMBEDDER, DIM, approximate_from=THRESHOLD)


def _finds_itself(index: SegmentIndex, vid: int, vectors: np.ndarray) -> bool:
    """Every 6th stored vector, as a query, has its own segment first (each search asks the database)."""
    return all((hit.video_id, hit.segment) == (vid, seg)
               for seg in range(0, len(vectors), 6) for hit in index.search(vectors[seg], top=1))


def test_crossing_the_threshold_makes_the_index_approximate_and_it_still_finds_stored_segments(store):
    index = _index(store)
    videos = [_video(store, seed) for seed in range(3)]
    assert index.sync()["structure"] == "exact" and not is_approximate(index._faiss)  # 180 < 200
    videos.append(_video(store, 3))
    report = index.sync()
    assert report["structure"] == "ivf-fp16" and report["segments"] == 4 * SEGMENTS and report["added"] == 1
    assert is_approximate(index._faiss) and index.trained == 4 * SEGMENTS
    for vid, vectors in videos:
        assert _finds_itself(index, vid, vectors)
    with safe_open(str(index.path), "np") as f:
        meta = f.metadata()
    assert meta["structure"] == "ivf-fp16" and meta["trained"] == str(4 * SEGMENTS)


def test_removal_and_reload_keep_the_approximate_structure(store):
    index = _index(store)
    videos = [_video(store, seed) for seed in range(5)]
    index.sync()
    (gone, gone_vectors), (kept, kept_vectors) = videos[0], videos[1]
    store.remove(gone)
    assert index.drop([gone])  # what python -m ingest --remove does after the database's removal
    assert index._faiss.ntotal == 4 * SEGMENTS and gone not in index.rows and is_approximate(index._faiss)
    assert all(hit.video_id != gone for v in gone_vectors for hit in index.search(v, top=5))
    again = _index(store)  # another process: reads the file
    report = again.sync()
    assert report["removed"] == 0 and report["structure"] == "ivf-fp16" and again.trained == 5 * SEGMENTS
    assert _finds_itself(again, kept, kept_vectors)


def test_growth_past_the_retrain_factor_retrains(store):
    index = _index(store)
    for seed in range(4):
        _video(store, seed)
    index.sync()
    assert index.trained == 4 * SEGMENTS
    for seed in range(4, 7):  # 420 segments: added to the trained index as they come
        _video(store, seed)
        index.sync()
    assert index.trained == 4 * SEGMENTS and index._faiss.ntotal == 7 * SEGMENTS
    last = _video(store, 7)  # 480 = RETRAIN_GROWTH x 240: trained again on all of them
    assert 8 * SEGMENTS >= RETRAIN_GROWTH * 4 * SEGMENTS
    assert index.sync()["added"] == 1 and index.trained == 8 * SEGMENTS and index._faiss.ntotal == 8 * SEGMENTS
    assert _finds_itself(index, *last)


def test_a_library_shrinking_below_half_the_threshold_is_exact_again(store):
    index = _index(store)
    videos = [_video(store, seed) for seed in range(4)]
    index.sync()
    store.remove(videos[0][0])
    assert index.sync()["structure"] == "ivf-fp16"  # 180: between half the threshold and the threshold
    store.remove(videos[1][0])
    assert index.sync()["structure"] == "ivf-fp16"  # 120: still above half the threshold
    store.remove(videos[2][0])
    report = index.sync()  # 60 < 100
    assert report["structure"] == "exact" and report["segments"] == SEGMENTS and index.trained == 0
    assert not is_approximate(index._faiss) and _finds_itself(index, *videos[3])


def test_rebuild_of_a_large_library_goes_straight_to_the_approximate_structure(store):
    videos = [_video(store, seed) for seed in range(4)]
    index = _index(store)
    assert index.sync(rebuild=True)["structure"] == "ivf-fp16" and index.trained == 4 * SEGMENTS
    assert _finds_itself(index, *videos[3])


def test_approximate_structure_finds_stored_vectors_when_it_probes_only_some_lists():
    """Enough vectors that `NPROBE` lists are fewer than all of them: stored vectors still find themselves."""
    rng = np.random.default_rng(0)
    n = 8000
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = approximate_index(DIM, n)
    assert index.nlist == ivf_lists(n) > index.nprobe
    index.train(vectors)
    index.add_with_ids(vectors, np.arange(n, dtype=np.int64) + (7 << 20))
    _, ids = index.search(vectors[:500], 1)
    assert (ids[:, 0] == np.arange(500) + (7 << 20)).mean() >= 0.99


# ---- when the file is written ---------------------------------------------------------------------------------


def _file_rows(index: SegmentIndex) -> set[int]:
    import json

    with safe_open(str(index.path), "np") as f:
        return {int(vid) for vid in json.loads(f.metadata()["rows"])}


def test_a_small_addition_to_a_large_index_is_searched_at_once_but_written_only_past_the_share(store):
    videos = [_video(store, seed) for seed in range(11)]  # 660 segments: one more video is 60 < 0.1 x 660
    index = SegmentIndex(store, FP, EMBEDDER, DIM, rewrite_share=0.1)
    index.sync()
    stamp = index.path.stat().st_mtime_ns
    videos.append(_video(store, 11))
    report = index.sync()
    assert report["added"] == 1 and report["unwritten_segments"] == SEGMENTS
    assert index.path.stat().st_mtime_ns == stamp and _file_rows(index) == {vid for vid, _ in videos[:11]}
    assert _finds_itself(index, *videos[11])
    other = SegmentIndex(store, FP, EMBEDDER, DIM, rewrite_share=0.1)  # another process: the file, then the rest
    assert _finds_itself(other, *videos[11])
    assert (other._faiss.ntotal, other._recent.ntotal) == (11 * SEGMENTS, SEGMENTS)  # the file's, the side index
    videos.append(_video(store, 12))  # 120 unwritten > 66: written, with every row
    assert index.sync()["unwritten_segments"] == 0
    assert index.path.stat().st_mtime_ns != stamp and _file_rows(index) == {vid for vid, _ in videos}
    assert _finds_itself(other, *videos[12])  # the other process reads the new file


def test_with_no_share_every_addition_is_written(store):
    index = SegmentIndex(store, FP, EMBEDDER, DIM, rewrite_share=0.0)
    videos = [_video(store, seed) for seed in range(11)]
    index.sync()
    videos.append(_video(store, 11))
    assert index.sync()["unwritten_segments"] == 0 and _file_rows(index) == {vid for vid, _ in videos}


def test_a_removal_is_written_at_once_even_when_additions_wait(store):
    videos = [_video(store, seed) for seed in range(11)]
    index = SegmentIndex(store, FP, EMBEDDER, DIM)
    index.sync()
    videos.append(_video(store, 11))
    index.sync()  # deferred
    store.remove(videos[0][0])
    report = index.sync()
    assert report["removed"] == 1 and report["unwritten_segments"] == 0
    assert _file_rows(index) == {vid for vid, _ in videos[1:]}  # gone from disk, the deferred one written too


def test_a_search_never_restructures_the_index_ingest_does(store):
    index = _index(store)
    videos = [_video(store, seed) for seed in range(3)]
    index.sync()
    videos.append(_video(store, 3))  # 240 >= 200: due for the approximate structure
    assert _finds_itself(index, *videos[3])  # the search added it to the exact index, no k-means on its path
    assert index.structure == "exact" and not is_approximate(index._faiss)
    assert index.sync()["structure"] == "ivf-fp16"  # what ingest's sync at the end of a run does


def test_rewrite_share_must_not_be_negative(store):
    with pytest.raises(ValueError, match="rewrite_share"):
        SegmentIndex(store, FP, EMBEDDER, DIM, rewrite_share=-0.1)


def test_an_ingest_sync_that_writes_nothing_reads_only_the_file_header(store):
    [_video(store, seed) for seed in range(11)]
    SegmentIndex(store, FP, EMBEDDER, DIM).sync()
    _video(store, 11)
    fresh = SegmentIndex(store, FP, EMBEDDER, DIM)  # what each python -m ingest run makes at its end
    report = fresh.sync()
    assert fresh._faiss is None and report["unwritten_segments"] == SEGMENTS and report["videos"] == 12


def test_a_video_removed_before_the_file_held_it_leaves_the_side_index(store):
    videos = [_video(store, seed) for seed in range(11)]
    index = SegmentIndex(store, FP, EMBEDDER, DIM)
    index.sync()
    recent, vectors = _video(store, 11)
    assert _finds_itself(index, recent, vectors)
    stamp = index.path.stat().st_mtime_ns
    store.remove(recent)
    assert all(hit.video_id != recent for v in vectors[::6] for hit in index.search(v, top=3))
    assert index.path.stat().st_mtime_ns == stamp and recent not in index.rows  # the file never held it
    assert _finds_itself(index, *videos[3])


def test_a_searcher_finds_a_video_whose_vectors_are_written_after_it_searched(store):
    [_video(store, seed) for seed in range(11)]
    searcher = SegmentIndex(store, FP, EMBEDDER, DIM)  # the app
    searcher.sync()
    vid, vectors = _video(store, 11, write=False)  # ready; its vectors come a moment later
    assert all(hit.video_id != vid for hit in searcher.search(vectors[0], top=3))
    write_vectors(store, store.get_video(vid).uid, FP, EMBEDDER, vectors)
    stamp = searcher.path.stat().st_mtime_ns
    assert SegmentIndex(store, FP, EMBEDDER, DIM).sync()["unwritten_segments"] == SEGMENTS  # ingest: no write
    assert searcher.path.stat().st_mtime_ns == stamp and _finds_itself(searcher, vid, vectors)


def test_a_vector_file_of_the_wrong_length_is_missing_not_a_reason_to_rewrite(store):
    [_video(store, seed) for seed in range(11)]
    index = SegmentIndex(store, FP, EMBEDDER, DIM)
    index.sync()
    vid, vectors = _video(store, 11, write=False)
    write_vectors(store, store.get_video(vid).uid, FP, EMBEDDER, vectors[:20])  # a live video's file, cut short
    index.rewrite_share = index.recent_max = 0  # would rewrite for any video it lacks
    stamp = index.path.stat().st_mtime_ns
    for _ in range(2):
        report = SegmentIndex(store, FP, EMBEDDER, DIM, rewrite_share=0, recent_max=0).sync()
        assert (report["missing_vectors"], report["videos"], report["added"]) == (1, 11, 0)
    assert index.path.stat().st_mtime_ns == stamp
    assert all(hit.video_id != vid for hit in index.search(vectors[0], top=3))


def test_one_instance_never_returns_a_segment_twice_after_its_own_sync_rewrites_the_file(store):
    [_video(store, seed) for seed in range(11)]
    index = SegmentIndex(store, FP, EMBEDDER, DIM)
    index.sync()
    vid, vectors = _video(store, 11)
    assert _finds_itself(index, vid, vectors)  # from the side index
    index.sync(rebuild=True)  # now in the file too
    hits = [(h.video_id, h.segment) for h in index.search(vectors[0], top=5)]
    assert hits[0] == (vid, 0) and len(set(hits)) == len(hits)
