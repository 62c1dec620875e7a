"""The folder walk ends, finds each video once, and reports what it cannot read or will not read."""

import ctypes
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ingest.discover import discover

ROOT = Path(__file__).resolve().parents[2]


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def _discover_within(paths, seconds: float = 20.0):
    """`discover` in a thread, so a walk that never ends fails the test instead of hanging it."""
    out = {}
    worker = threading.Thread(target=lambda: out.setdefault("found", discover(paths)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"the walk did not end in {seconds} s"
    return out["found"]


def test_two_symlink_loops_in_one_folder_are_walked_once(tmp_path):
    _touch(tmp_path / "a.mp4")
    _touch(tmp_path / "sub" / "b.mkv")
    os.symlink(".", tmp_path / "loop1")
    os.symlink(".", tmp_path / "loop2")
    os.symlink("..", tmp_path / "sub" / "up")
    found = _discover_within([tmp_path])
    assert sorted(p.name for p in found.videos) == ["a.mp4", "b.mkv"]
    assert found.skipped == []


def test_a_linked_folder_is_walked_and_a_file_linked_twice_is_one_video(tmp_path):
    real = _touch(tmp_path / "elsewhere" / ".hidden_parent" / "clip.mp4").parent
    (tmp_path / "in").mkdir()
    os.symlink(real, tmp_path / "in" / "linked")
    os.symlink(real / "clip.mp4", tmp_path / "in" / "same.mp4")
    found = _discover_within([tmp_path / "in"])
    (video,) = found.videos
    assert video.resolve() == real / "clip.mp4"


def test_fifos_and_devices_named_like_videos_are_skipped_with_a_reason(tmp_path):
    good = _touch(tmp_path / "good.mp4")
    os.mkfifo(tmp_path / "pipe.mp4")
    os.symlink("/dev/zero", tmp_path / "zero.mp4")
    found = _discover_within([tmp_path])
    assert found.videos == [good]
    reasons = {Path(s.path).name: s.reason for s in found.skipped}
    assert set(reasons) == {"pipe.mp4", "zero.mp4"}
    assert "FIFO" in reasons["pipe.mp4"] and "not a regular file" in reasons["pipe.mp4"]
    assert "character device" in reasons["zero.mp4"] and "/dev/zero" in reasons["zero.mp4"]
    direct = _discover_within([tmp_path / "pipe.mp4", "/dev/zero", good])  # given by name: the same rule
    assert direct.videos == [good] and len(direct.skipped) == 2


def _without_root_file_access() -> None:
    """preexec_fn: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set, so the child (root or
    not) obeys file permissions: a real unreadable folder even for root."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run_without_root_file_access(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    preexec = _without_root_file_access if os.geteuid() == 0 else None
    try:
        return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                              preexec_fn=preexec, **kwargs)
    except subprocess.SubprocessError as err:  # no CAP_SETPCAP here: cannot make a folder unreadable for root
        pytest.skip(f"cannot drop file-access capabilities: {err}")


@pytest.fixture
def locked_tree(tmp_path):
    """good.mp4 beside a folder nobody may read (mode 000), which holds a video."""
    tree = tmp_path / "tree"
    _touch(tree / "good.mp4")
    _touch(tree / "locked" / "hidden_from_us.mp4")
    (tree / "locked").chmod(0)
    yield tree
    (tree / "locked").chmod(0o755)


def test_an_unreadable_folder_is_reported(locked_tree):
    code = ("import json, sys; from ingest.discover import discover; f = discover(sys.argv[1:]); "
            "print(json.dumps({'videos': [str(p) for p in f.videos], 'skipped': [s.__dict__ for s in f.skipped]}))")
    done = run_without_root_file_access(["-c", code, str(locked_tree)], timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["videos"] == [str(locked_tree / "good.mp4")]
    (skipped,) = found["skipped"]
    assert skipped["path"] == str(locked_tree / "locked")
    assert "cannot read this folder (Permission denied)" in skipped["reason"]
