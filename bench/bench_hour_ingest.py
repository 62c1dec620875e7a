"""Ingest of one long 720p video, end to end (`ingest.run.ingest_paths`): wall time, source frames/s, peak RAM.

    python bench/bench_hour_ingest.py --minutes 60 --fps 2 --model default     # one hour of 720p (cheap to make)
    python bench/bench_hour_ingest.py --minutes 2 --fps 30 --model default     # full frame rate, to extrapolate

The clip is synthesized here with PyAV (H.264, 1280x720, keyframe every --gop frames): a camera pans over a
procedurally drawn picture that changes every 20 s. Making it is not timed. Ingest decodes only from the
keyframe before the first frame each segment uses and converts only the frames it keeps, so its decode cost
is one pass over the stream; at a low source frame rate that pass is short, and the --fps 30 run measures
the decoder on a full-rate stream (`decode_frames_per_s`) to scale to an hour (`hour_estimate_s`).
Prints one JSON line (`ingest_cpu_s`: CPU seconds the ingest took, a figure a busy machine does not inflate).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_model, machine  # noqa: E402
from ingest.config import IngestConfig  # noqa: E402
from ingest.run import ingest_paths  # noqa: E402

WIDTH, HEIGHT, SCENE_S = 1280, 720, 20.0


def picture(seed: int) -> np.ndarray:
    """A 1.5x-frame-sized picture: a colour gradient with a few filled discs and boxes, uint8 [H, W, 3]."""
    rng = np.random.default_rng(seed)
    h, w = int(HEIGHT * 1.5), int(WIDTH * 1.5)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(0, 255, size=3) * (x / w)[..., None] + rng.uniform(0, 255, size=3) * (y / h)[..., None]
    img = np.clip(base / 2, 0, 255)
    for _ in range(8):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(40, 200)
        img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.uniform(0, 255, size=3)
    return img.astype(np.uint8)


def make_clip(path: Path, minutes: float, fps: int, gop: int) -> int:
    """Write the clip; returns its frame count."""
    import av

    frames = int(minutes * 60 * fps)
    per_scene = int(SCENE_S * fps)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "30", "g": str(gop)}
        pic = None
        for i in range(frames):
            if i % per_scene == 0:
                pic = picture(i // per_scene)
            t = (i % per_scene) / per_scene
            top, left = int(t * (pic.shape[0] - HEIGHT)), int(t * (pic.shape[1] - WIDTH))
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pic[top : top + HEIGHT, left : left + WIDTH]),
                                               format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return frames


def _cpu_s() -> float:
    """CPU seconds used by this process and its threads: on a shared machine, what the work cost (wall time
    also counts the time other processes held the cores)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="bundled model name or checkpoint folder")
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--fps", type=int, default=2, help="source frame rate of the synthesized clip")
    p.add_argument("--gop", type=int, default=250, help="frames between keyframes")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: ingest's own choice)")
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args(argv)

    model = bench_model(args.model)
    with tempfile.TemporaryDirectory(prefix="bench_hour_") as tmp:
        clip = Path(tmp) / f"clip_{args.minutes:g}min_{args.fps}fps.mp4"
        made = time.perf_counter()
        frames = make_clip(clip, args.minutes, args.fps, args.gop)
        made = time.perf_counter() - made
        config = IngestConfig(batch_size=args.batch_size, torch_threads=args.threads, decoder="pyav")
        start, cpu = time.perf_counter(), _cpu_s()
        summary = ingest_paths([clip], home=Path(tmp) / "home", model=model, model_name=args.model, config=config)
        wall, cpu = time.perf_counter() - start, _cpu_s() - cpu
        if summary.count("ingested") != 1:
            raise SystemExit(f"ingest failed: {summary.text()}")
        size_mb = clip.stat().st_size / 1e6
    seconds = args.minutes * 60
    segments = int(np.ceil(seconds / model.voco.segment_seconds))
    result = {
        "bench": "hour_ingest",
        "clip": {"minutes": args.minutes, "fps": args.fps, "frames": frames, "size": f"{WIDTH}x{HEIGHT}",
                 "gop": args.gop, "mb": round(size_mb, 1), "synthesis_s": round(made, 1)},
        "segments": segments,
        "sampled_frames": segments * model.voco.frames_per_segment,
        "ingest_wall_s": round(wall, 1),
        "ingest_cpu_s": round(cpu, 1),
        "source_frames_per_s": round(frames / wall, 1),
        "video_seconds_per_wall_second": round(seconds / wall, 1),
        "hour_estimate_s": round(wall * 60 / args.minutes, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "settings": {"model": args.model, "batch_size": args.batch_size, "torch_threads": torch.get_num_threads()},
        "machine": machine(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
