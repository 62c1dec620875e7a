import json
import shutil

import pytest

from ingest.__main__ import main
from tests.fixtures.videos import make_bad_files


def cli(*args, home, model_dir=None):
    argv = [str(a) for a in args] + ["--home", str(home)]
    if model_dir is not None:
        argv += ["--model", str(model_dir), "--segment-seconds", "1", "--threads", "1"]
    return main(argv)


def test_ingest_json_summary_list_and_remove(tmp_path, one_video, model_dir, capsys):
    home = tmp_path / "home"
    assert cli(one_video, "--json", home=home, model_dir=model_dir) == 0
    summary = json.loads(capsys.readouterr().out)
    (entry,) = summary["files"]
    assert set(entry) == {"path", "status", "video_id", "segments", "duration_s", "error"}
    assert (entry["status"], entry["segments"], entry["duration_s"], entry["error"]) == ("ingested", 3, 2.5, None)
    assert summary["ingested"] == 1 and summary["exit_code"] == 0

    assert cli(one_video, home=home, model_dir=model_dir) == 0
    assert "already present 1" in capsys.readouterr().out

    assert cli("--list", "--json", home=home) == 0
    (video,) = json.loads(capsys.readouterr().out)["videos"]
    assert video["id"] == entry["video_id"] and video["status"] == "ready" and video["segments"] == 3
    assert video["model"] == str(model_dir.resolve())
    assert cli("--list", home=home) == 0
    listing = capsys.readouterr().out
    assert "ready" in listing and str(one_video) in listing and "0:02" in listing

    assert cli("--remove", entry["video_id"], home=home) == 0
    assert f"removed video {entry['video_id']}" in capsys.readouterr().out
    assert not [p for p in (home / "caches").rglob("*") if p.is_file()]
    assert cli("--remove", entry["video_id"], home=home) == 1
    assert "no video with id" in capsys.readouterr().err
    assert cli("--list", home=home) == 0
    assert "no videos" in capsys.readouterr().out


def test_exit_status_2_when_some_files_fail(tmp_path, one_video, video_dir, model_dir, capsys):
    folder = tmp_path / "in"
    make_bad_files(folder, video_dir / "h264.mp4")
    shutil.copy(one_video, folder / "ok.mp4")
    assert cli(folder, "--json", home=tmp_path / "home", model_dir=model_dir) == 2
    summary = json.loads(capsys.readouterr().out)
    statuses = sorted(f["status"] for f in summary["files"])
    assert statuses.count("ingested") == 1 and statuses.count("failed") == len(summary["files"]) - 1
    assert cli(folder, home=tmp_path / "home", model_dir=model_dir) == 2
    text = capsys.readouterr().out
    assert "failed:" in text and "zero.mp4: empty file (0 bytes)" in text


def test_usage_and_environment_errors_exit_1(tmp_path, one_video, model_dir, capsys):
    home = tmp_path / "home"
    assert cli(one_video, "--model", tmp_path / "no_model", home=home) == 1
    assert "no checkpoint" in capsys.readouterr().err
    assert cli(one_video, "--db", "not-a-url", home=home, model_dir=model_dir) == 1
    assert "bad database URL" in capsys.readouterr().err
    assert cli(tmp_path / "missing.mp4", home=home, model_dir=model_dir) == 1
    assert "no such file or folder" in capsys.readouterr().err
    assert cli(one_video, "--batch-size", "0", home=home, model_dir=model_dir) == 1
    assert cli(home=home) == 1  # no PATH
    with pytest.raises(SystemExit) as err:
        main(["--no-such-flag"])
    assert err.value.code == 1
    capsys.readouterr()


def test_missing_default_model_says_so_and_exits_1(tmp_path, one_video, capsys, monkeypatch):
    monkeypatch.setattr("voco.folders.BUNDLED", tmp_path / "no_bundled_models")  # a checkout without one
    assert main([str(one_video), "--home", str(tmp_path / "home")]) == 1
    err = capsys.readouterr().err
    assert "no checkpoint at 'default'" in err and "python -m voco.train" in err


def test_progress_bars_go_to_stderr(tmp_path, one_video, model_dir, capsys):
    assert cli(one_video, "--progress", home=tmp_path / "home", model_dir=model_dir) == 0
    err = capsys.readouterr().err
    assert "ingest" in err and "file" in err and "frames/s" in err


def test_dtype_flag_stores_bf16_caches_apart_from_fp32(tmp_path, one_video, model_dir, capsys):
    import torch

    from store import Store
    from voco import load_model

    home = tmp_path / "home"
    assert cli(one_video, "--json", home=home, model_dir=model_dir) == 0
    fp32_id = json.loads(capsys.readouterr().out)["files"][0]["video_id"]
    assert cli(one_video, "--json", "--dtype", "bfloat16", home=home, model_dir=model_dir) == 0
    (entry,) = json.loads(capsys.readouterr().out)["files"]
    assert entry["status"] == "ingested" and entry["video_id"] != fp32_id  # another identity, not "present"

    bf16 = load_model(str(model_dir), dtype="bfloat16")
    with Store.open(home) as store:
        caches = store.load_caches(entry["video_id"], bf16.fingerprint)
    assert len(caches) == 3 and all(c.kv.dtype == torch.bfloat16 for c in caches)


def test_bad_dtype_is_a_usage_error(tmp_path, one_video, model_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(one_video, "--dtype", "float8", home=tmp_path / "home", model_dir=model_dir)
    assert exit_info.value.code == 1 and "--dtype" in capsys.readouterr().err


def test_a_read_only_database_is_refused_before_the_model_loads(tmp_path, one_video, capsys):
    """Exit 1 with the reason, before any model work (the model named here does not exist, so loading it first
    would report that instead); was: the model loaded, then every file failed with "internal error", exit 2."""
    from store import Store

    home = tmp_path / "home"
    Store(home).close()
    read_only = f"sqlite:///file:{home / 'voco.db'}?mode=ro&uri=true"
    code = main([str(one_video), "--home", str(home), "--db", read_only, "--model", str(tmp_path / "no-model")])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "is unusable: it cannot be written (attempt to write a readonly database)" in err
    assert "no checkpoint" not in err
    with Store(home) as store:
        assert store.list_videos() == []  # nothing half-recorded
