"""Adversarial input to the ingest command line: every case ends, bounded, with a reason, and good files next
to bad ones are ingested (issue 16)."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.__main__ import main
from store import Store
from tests.fixtures.videos import pattern_frames, write_video
from tests.ingest.test_discover import ROOT, run_without_root_file_access
from voco.video.plan import plan_segments
from voco.video.probe import VideoError, probe


def cli(*args, home, model_dir=None):
    argv = [str(a) for a in args] + ["--home", str(home)]
    if model_dir is not None:
        argv += ["--model", str(model_dir), "--segment-seconds", "1", "--threads", "1"]
    return main(argv)


def by_name(summary: dict) -> dict[str, dict]:
    return {os.path.basename(f["path"]): f for f in summary["files"]}


def test_fifos_and_devices_are_reported_and_the_good_file_is_ingested(tmp_path, one_video, model_dir, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(one_video, folder / "good.mp4")
    os.mkfifo(folder / "pipe.mp4")  # reading it would block for ever
    os.symlink("/dev/zero", folder / "zero.mp4")  # hashing it would never end
    assert cli(folder, "--json", home=tmp_path / "home", model_dir=model_dir) == 2
    files = by_name(json.loads(capsys.readouterr().out))
    assert files["good.mp4"]["status"] == "ingested"
    assert files["pipe.mp4"]["status"] == files["zero.mp4"]["status"] == "failed"
    assert "FIFO" in files["pipe.mp4"]["error"] and "character device" in files["zero.mp4"]["error"]


def test_a_file_name_that_is_not_utf8_is_ingested_and_its_failure_stored(tmp_path, one_video, model_dir, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    good = folder / os.fsdecode(b"caf\xe9.mp4")  # Latin-1 bytes: not valid UTF-8
    shutil.copy(one_video, good)
    (folder / os.fsdecode(b"broken\xff.mp4")).write_bytes(b"not a video" * 100)
    home = tmp_path / "home"
    assert cli(folder, "--json", home=home, model_dir=model_dir) == 2
    files = by_name(json.loads(capsys.readouterr().out))
    assert files["caf\\xe9.mp4"]["status"] == "ingested" and files["caf\\xe9.mp4"]["segments"] == 3
    assert files["broken\\xff.mp4"]["status"] == "failed" and "broken\\xff.mp4" in files["broken\\xff.mp4"]["error"]
    assert cli(folder, home=home, model_dir=model_dir) == 2  # the second run knows it (and prints it)
    assert "already present 1" in capsys.readouterr().out
    with Store.open(home) as store:
        videos = {os.path.basename(v.path): v for v in store.list_videos()}
    assert videos["caf\\xe9.mp4"].status == "ready"
    assert videos["broken\\xff.mp4"].status == "failed" and "invalid data" in videos["broken\\xff.mp4"].error
    assert cli("--list", home=home) == 0
    assert "caf\\xe9.mp4" in capsys.readouterr().out


EVIL = "evil\x1b]0;pwned\x07\x1b[2J\nfake row\u202e4pm.mp4"


def test_names_with_escape_codes_and_newlines_are_shown_escaped(tmp_path, one_video, model_dir, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(one_video, folder / EVIL)
    (folder / ("broken " + EVIL)).write_bytes(b"not a video" * 100)
    home = tmp_path / "home"
    assert cli(folder, home=home, model_dir=model_dir) == 2
    summary = capsys.readouterr().out
    shown = "evil\\x1b]0;pwned\\x07\\x1b[2J\\nfake row\\u202e4pm.mp4"
    assert f"broken {shown}" in summary
    assert cli("--list", home=home) == 0
    listing = capsys.readouterr().out
    for out in (summary, listing):
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out and "\nfake row" not in out
    rows = listing.splitlines()
    assert len(rows) == 1 + 2 + 1  # header, two videos, the failed one's error line
    assert rows[1].endswith(f"broken {shown}") and rows[3].endswith(shown)  # by id: the failed file came first


def _claims(path: Path, seconds_per_frame: float, frames: int = 40) -> Path:
    """A small mp4 whose frame timestamps claim `frames` x `seconds_per_frame`."""
    return write_video(path, pattern_frames(frames), times=[i * seconds_per_frame for i in range(frames)])


def _zero_timescale(path: Path, good: Path) -> Path:
    """`good` with its video track's time scale (mdhd) patched to 0."""
    data = bytearray(good.read_bytes())
    at = data.find(b"mdhd")
    field = at + 4 + 4 + (8 if data[at + 4] == 0 else 16)  # box type, version+flags, creation+modification
    data[field:field + 4] = bytes(4)
    path.write_bytes(data)
    return path


def test_claimed_durations_the_file_cannot_back_are_refused_before_planning(tmp_path, one_video):
    hours = _claims(tmp_path / "hours.mp4", seconds_per_frame=49_000)  # 40 frames claiming ~544 h
    zero = _zero_timescale(tmp_path / "timescale0.mp4", one_video)
    for path in (hours, zero):
        with pytest.raises(VideoError, match=r"its timestamps claim .* damaged or crafted"):
            probe(path)
    slideshow = probe(_claims(tmp_path / "slideshow.mp4", seconds_per_frame=10))  # ~390 s: plausible
    assert len(plan_segments(slideshow, 1.0, 2)) == math.floor(slideshow.duration) > 380  # 390.001 s: the 1 ms joins
    with pytest.raises(VideoError, match=r"more than the limit of 0.1 h .*--max-duration"):
        plan_segments(slideshow, 1.0, 2, max_duration_s=360)


def test_a_refused_duration_fails_that_file_only(tmp_path, one_video, model_dir, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(one_video, folder / "good.mp4")
    _claims(folder / "hours.mp4", seconds_per_frame=49_000)
    _zero_timescale(folder / "timescale0.mp4", one_video)
    assert cli(folder, "--json", home=tmp_path / "home", model_dir=model_dir) == 2
    summary = json.loads(capsys.readouterr().out)
    files = by_name(summary)
    assert files["good.mp4"]["status"] == "ingested" and summary["segments_compressed"] == 3
    assert all("timestamps claim" in files[name]["error"] for name in ("hours.mp4", "timescale0.mp4"))
    assert cli(one_video, "--json", "--max-duration", "2", home=tmp_path / "home2", model_dir=model_dir) == 2
    (result,) = json.loads(capsys.readouterr().out)["files"]
    assert result["status"] == "failed" and "more than the limit" in result["error"]
    assert cli(one_video, "--max-duration", "-1", home=tmp_path / "home2", model_dir=model_dir) == 1
    assert "max_duration_s must be > 0" in capsys.readouterr().err


def test_frames_over_the_pixel_limit_are_refused_before_decoding(tmp_path, one_video, model_dir, capsys):
    """A frame too large to decode cheaply (16000x16000 takes 2.6 GB) is refused by name with its size and the
    flag; the good file beside it is ingested; 0 lifts the limit."""
    big = write_video(tmp_path / "big.mp4", pattern_frames(4, height=96, width=128))
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(one_video, folder / "good.mp4")  # 64x48 = 3,072 pixels
    shutil.copy(big, folder / "big.mp4")  # 128x96 = 12,288 pixels
    home = tmp_path / "home"
    assert cli(folder, "--json", "--max-frame-pixels", "5000", home=home, model_dir=model_dir) == 2
    files = by_name(json.loads(capsys.readouterr().out))
    assert files["good.mp4"]["status"] == "ingested"
    assert files["big.mp4"]["status"] == "failed"
    assert "its frames are 128x96 = 12,288 pixels, more than the limit of 5,000" in files["big.mp4"]["error"]
    assert "--max-frame-pixels" in files["big.mp4"]["error"]
    assert cli(folder / "big.mp4", "--json", "--max-frame-pixels", "0", home=home, model_dir=model_dir) == 0
    assert cli(one_video, "--max-frame-pixels", "-5", home=home, model_dir=model_dir) == 1
    assert "max_frame_pixels must be > 0" in capsys.readouterr().err


def test_a_video_planned_past_the_segment_cap_is_refused_with_its_price(tmp_path, one_video, model_dir, capsys):
    """Hours of cheap black frames would buy hours of compute: past --max-segments the video is refused before
    decoding, naming its segment count, cache size and model time; the good file beside it is ingested."""
    long = write_video(tmp_path / "long.mp4", pattern_frames(90, height=48, width=64), fps=5)  # 18 s
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(one_video, folder / "good.mp4")  # 3 segments
    shutil.copy(long, folder / "long.mp4")
    home = tmp_path / "home"
    assert cli(folder, "--json", "--max-segments", "4", home=home, model_dir=model_dir) == 2
    files = by_name(json.loads(capsys.readouterr().out))
    assert files["good.mp4"]["status"] == "ingested"
    error = files["long.mp4"]["error"]
    assert files["long.mp4"]["status"] == "failed" and files["long.mp4"]["segments"] is None
    assert "segments (about " in error and "MB of caches and " in error and "of model time here)" in error
    assert "more than the limit of 4 segments" in error and "--max-segments" in error
    assert cli(folder / "long.mp4", "--json", "--max-segments", "0", home=home, model_dir=model_dir) == 0
    assert cli(one_video, "--max-segments", "-1", home=home, model_dir=model_dir) == 1
    assert "max_segments must be > 0" in capsys.readouterr().err


def test_segment_cost_reads_as_a_price():
    from ingest.budget import SegmentCost

    cost = SegmentCost(bytes=46_080, seconds=0.43)
    assert cost.describe(18_000) == "about 829 MB of caches and 2 h 9 min of model time here"
    assert cost.describe(10) == "about 0.5 MB of caches and 4 s of model time here"
    big = SegmentCost(bytes=10**6, seconds=1.0)
    assert big.describe(1500) == "about 1.5 GB of caches and 25 min of model time here"


def _run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS`, reporting which heavy modules it imported (on stderr, after its own output)."""
    code = ("import runpy, sys\n"
            f"sys.argv[0] = {module!r}\n"
            f"try:\n    runpy.run_module({module!r}, run_name='__main__')\n"
            "finally:\n    sys.stderr.write('HEAVY=' + ','.join(m for m in ('torch', 'transformers', 'gradio') "
            "if m in sys.modules))\n")
    return subprocess.run([sys.executable, "-c", code, *args], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)


def test_help_list_and_remove_import_no_torch_transformers_or_gradio(tmp_path, one_video, model_dir, capsys):
    home = tmp_path / "home"
    assert cli(one_video, "--json", home=home, model_dir=model_dir) == 0
    (video,) = json.loads(capsys.readouterr().out)["files"]
    for module, args, expect in (
        ("ingest", ["--help"], "usage:"),
        ("ingest", ["--list", "--home", str(home)], "ready"),
        ("ingest", ["--remove", str(video["video_id"]), "--home", str(home)], "removed video"),
        ("app", ["--help"], "usage:"),
    ):
        done = _run_module(module, *args)
        assert done.returncode == 0 and expect in done.stdout, done.stderr
        assert done.stderr.endswith("HEAVY="), (module, args, done.stderr[-300:])


def test_output_closed_early_ends_quietly(tmp_path):
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head` that has already exited: every write fails with EPIPE
    try:
        done = subprocess.run([sys.executable, "-m", "ingest", "--list", "--json", "--home", str(tmp_path / "h")],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        os.close(write_end)
    assert done.returncode == 0 and done.stderr == ""


@pytest.mark.slow  # a fresh process loads torch and the model: ~10 s on a busy machine
def test_an_unreadable_folder_fails_the_run_with_exit_2(tmp_path, one_video, model_dir):
    tree = tmp_path / "tree"
    (tree / "locked").mkdir(parents=True)
    shutil.copy(one_video, tree / "good.mp4")
    shutil.copy(one_video, tree / "locked" / "unseen.mp4")
    (tree / "locked").chmod(0)
    try:
        done = run_without_root_file_access(["-m", "ingest", str(tree), "--json", "--home", str(tmp_path / "home"),
                                             "--model", str(model_dir), "--segment-seconds", "1", "--threads", "1"],
                                            timeout=300)
    finally:
        (tree / "locked").chmod(0o755)
    assert done.returncode == 2, done.stderr
    files = by_name(json.loads(done.stdout))
    assert files["good.mp4"]["status"] == "ingested"
    assert files["locked"]["status"] == "failed" and "cannot read this folder" in files["locked"]["error"]
