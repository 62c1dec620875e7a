"""Search vectors, the faiss index and moment search (voco/search.py, store/index.py, ingest/vectors.py and
search.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ingest.config import IngestConfig
from tests.fixtures.videos import pattern_frames, write_video
from voco.data.needle import needle_segments

ROOT = Path(__file__).resolve().parents[2]
QUERY = "is there a red circle?"


@pytest.fixture(scope="module")
def synthetic_model():
    from voco import VoCoModel

    return VoCoModel.from_pretrained("synthetic").eval()


def _write_segments(path: Path, segments: list[np.ndarray]) -> Path:
    return write_video(path, np.concatenate(segments), fps=len(segments[0]))  # one segment per second


@pytest.fixture(scope="module")
def library(tmp_path_factory, synthetic_model):
    """A store with a haystack video and a needle video (red circle in one segment), ingested by
    the bundled synthetic model."""
    from ingest.run import ingest_paths
    from store import Store

    folder = tmp_path_factory.mktemp("search")
    fps = synthetic_model.voco.frames_per_segment
    hay, hay_needle = needle_segments(9, frames_per_segment=fps, seed=1)
    hay = [s for i, s in enumerate(hay) if i != hay_needle]  # no needle in the haystack video
    needle_video, needle = needle_segments(8, frames_per_segment=fps, seed=2)
    paths = [_write_segments(folder / "hay.mp4", hay), _write_segments(folder / "needle.mp4", needle_video)]
    store = Store(folder / "home")
    summary = ingest_paths([str(p) for p in paths], store=store, model=synthetic_model,
                           config=IngestConfig(segment_seconds=1.0))
    ids = {Path(f.path).stem: f.video_id for f in summary.files}
    yield store, ids, needle, paths
    store.close()


def test_key_vectors_rank_the_needle_first(synthetic_model):
    """The <voco> keys of the bundled synthetic model vs the question's queries: the red circle is rank 1 of 32."""
    from voco.search import VoCoKeyEmbedder

    embedder = VoCoKeyEmbedder(synthetic_model)
    for seed in (0, 1):
        segments, needle = needle_segments(32, frames_per_segment=synthetic_model.voco.frames_per_segment, seed=seed)
        vectors = embedder.segment_vectors(synthetic_model.compress(segments, batch_size=16))
        scores = vectors @ embedder.query_vector(QUERY)
        others = np.delete(scores, needle)
        assert scores[needle] > others.max(), (seed, needle, np.argsort(-scores)[:5])  # strictly: no ties


def test_search_finds_the_needle_moment_across_the_library(library, synthetic_model):
    from ingest.search import MomentSearch

    store, ids, needle, _ = library
    search = MomentSearch(store, synthetic_model)
    hits = search.search(QUERY, top=5)
    assert (hits[0]["video_id"], hits[0]["segment"]) == (ids["needle"], needle)
    assert hits[0]["start_s"] == pytest.approx(needle, abs=0.01)
    assert {h["video_id"] for h in hits} <= set(ids.values())
    scores = search.scores_for(QUERY, ids["needle"])
    assert scores.shape == (8,) and scores[needle] > np.delete(scores, needle).max()


def test_search_cli_prints_the_needle_first(library, capsys):
    from ingest.__main__ import main

    store, ids, needle, _ = library
    search = ["--search", QUERY, "--home", str(store.home.root), "--model", "synthetic", "--top", "3"]
    assert main([*search, "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert len(hits) == 3 and (hits[0]["video_id"], hits[0]["segment"]) == (ids["needle"], needle)
    assert main(search) == 0
    assert f"video {ids['needle']:>4}  {float(needle):7.1f}-" in capsys.readouterr().out


def test_index_follows_reingest_remove_and_rebuild(library, synthetic_model, tmp_path):
    from ingest.run import ingest_paths
    from ingest.search import MomentSearch
    from ingest.vectors import rebuild_index

    store, ids, needle, paths = library
    search = MomentSearch(store, synthetic_model)
    before = search.search(QUERY, top=16)
    assert len(before) == 16  # both videos' 8 segments are indexed
    # re-ingesting the same files changes nothing
    again = ingest_paths([str(p) for p in paths], store=store, model=synthetic_model,
                         config=IngestConfig(segment_seconds=1.0))
    assert {f.status for f in again.files} == {"present"}
    assert search.search(QUERY, top=16) == before
    # a deleted index file is rebuilt from the database + vector files with the same results
    search.index.path.unlink()
    assert MomentSearch(store, synthetic_model).search(QUERY, top=16) == before
    assert rebuild_index(store, synthetic_model)["segments"] == 16
    assert MomentSearch(store, synthetic_model).search(QUERY, top=16) == before
    # a vector file cut short (a live video's, written before it finished) is recomputed by a rebuild
    from store.search_vectors import read_vectors, write_vectors

    uid, fp, emb = store.get_video(ids["needle"]).uid, synthetic_model.fingerprint, search.embedder.name
    full = read_vectors(store, uid, fp, emb)
    write_vectors(store, uid, fp, emb, full[:3])
    assert rebuild_index(store, synthetic_model)["vectors_computed"] == 1
    assert np.array_equal(read_vectors(store, uid, fp, emb), full)
    assert MomentSearch(store, synthetic_model).search(QUERY, top=16) == before
    # --remove drops the video's rows from the index file at once
    from ingest.__main__ import main
    from store.index import SegmentIndex

    assert main(["--remove", str(ids["hay"]), "--home", str(store.home.root)]) == 0
    on_disk = SegmentIndex(store, synthetic_model.fingerprint, search.embedder.name, search.embedder.dim)
    on_disk._load()
    assert set(on_disk.rows) == {ids["needle"]} and on_disk._faiss.ntotal == 8
    after = search.search(QUERY, top=16)  # another process's index object notices on its next search
    assert [h for h in before if h["video_id"] == ids["needle"]] == after
    ingest_paths([str(paths[0])], store=store, model=synthetic_model, config=IngestConfig(segment_seconds=1.0))
    assert len(search.search(QUERY, top=16)) == 16


def test_a_reused_video_id_or_a_foreign_index_file_never_misleads_a_running_search(tmp_path, synthetic_model):
    """SQLite gives a removed video's id to the next one: a search object that lived through the removal and the
    new ingest answers with the new video's segments (was: KeyError, and stale rows under the new name); an index
    file copied in from another home is detected and rebuilt."""
    import shutil

    from ingest.__main__ import main
    from ingest.run import ingest_paths
    from ingest.search import MomentSearch
    from store import Store

    fps = synthetic_model.voco.frames_per_segment
    cfg = IngestConfig(segment_seconds=1.0)
    keep, hidden = needle_segments(7, frames_per_segment=fps, seed=3)
    keep = [s for i, s in enumerate(keep) if i != hidden]  # no red circle: the newcomer holds the only one
    removed, _ = needle_segments(8, frames_per_segment=fps, seed=4)
    newcomer, needle = needle_segments(4, frames_per_segment=fps, seed=5)
    paths = {name: _write_segments(tmp_path / f"{name}.mp4", segs)
             for name, segs in (("keep", keep), ("removed", removed), ("newcomer", newcomer))}
    with Store(tmp_path / "home") as store:
        ids = {Path(f.path).stem: f.video_id for f in ingest_paths(
            [str(paths["keep"]), str(paths["removed"])], store=store, model=synthetic_model, config=cfg).files}
        search = MomentSearch(store, synthetic_model)
        assert len(search.search(QUERY, top=100)) == 14
        assert main(["--remove", str(ids["removed"]), "--home", str(store.home.root)]) == 0
        (new,) = ingest_paths([str(paths["newcomer"])], store=store, model=synthetic_model, config=cfg).files
        assert new.video_id == ids["removed"]  # the id is reused: what used to break the running search
        hits = search.search(QUERY, top=100)
        by_video = {vid: sorted(h["segment"] for h in hits if h["video_id"] == vid)
                    for vid in {h["video_id"] for h in hits}}
        assert by_video == {ids["keep"]: list(range(6)), new.video_id: list(range(4))}
        assert {Path(h["path"]).stem for h in hits if h["video_id"] == new.video_id} == {"newcomer"}
        assert (hits[0]["video_id"], hits[0]["segment"]) == (new.video_id, needle)
        index_file = search.index.path
    # another home whose videos have the same ids: its index file copied over this one's
    with Store(tmp_path / "other") as other:
        ingest_paths([str(paths["removed"]), str(paths["keep"])], store=other, model=synthetic_model, config=cfg)
        foreign = MomentSearch(other, synthetic_model)
        foreign.search(QUERY, top=1)
        shutil.copyfile(foreign.index.path, index_file)
    with Store(tmp_path / "home") as store:
        hits = MomentSearch(store, synthetic_model).search(QUERY, top=100)
        assert len(hits) == 10 and {Path(h["path"]).stem for h in hits} == {"keep", "newcomer"}


def test_two_ingest_processes_share_one_index(tmp_path, model_dir):
    """Two processes ingesting at once into one home: the index holds both, the same as a rebuild."""
    from store import Store
    from store.index import SegmentIndex
    from voco import VoCoModel
    from voco.search import VoCoKeyEmbedder

    videos = [write_video(tmp_path / f"v{i}.mp4", pattern_frames(25, seed=i)) for i in range(2)]
    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    cmd = [sys.executable, "-m", "ingest", "--home", str(home), "--model", str(model_dir), "--segment-seconds",
           "1", "--threads", "1"]
    procs = [subprocess.Popen([*cmd, str(v)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for v in videos]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    model = VoCoModel.from_pretrained(str(model_dir))
    embedder = VoCoKeyEmbedder(model)
    with Store(home) as store:
        index = SegmentIndex(store, model.fingerprint, embedder.name, embedder.dim)
        index._load()  # as the processes left it, before any sync of ours
        assert len(index.rows) == 2 and index._faiss.ntotal == 6
        query = embedder.query_vector("a pattern")
        left = index.search(query, 6)
        index.sync(rebuild=True)
        assert index.search(query, 6) == left


def test_cli_start_up_imports_no_model_code():
    code = ("import sys, ingest.__main__ as m; m.build_parser().format_help(); "
            "print(sorted(x for x in ('torch', 'transformers', 'faiss') if x in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
