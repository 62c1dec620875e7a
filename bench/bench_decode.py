"""The decoder alone on 720p30 H.264 as cameras, screen recorders and the old bench encode it: every frame vs
only what the segment plan needs (`voco.video.decode.fetch_frames`), side by side on the same files.

    python bench/bench_decode.py                  # three 2-minute 1280x720 30 fps clips, ~3 min (making them ~2)
    python bench/bench_decode.py --minutes 1 --encodings camera

Encodings (libx264, made here by `bench_hour_ingest.make_clip`'s panning picture; making them is not timed):
  camera     preset veryfast (B-frames), a keyframe every 36 frames (1.2 s): phones and action cameras
  streaming  preset veryfast (B-frames), a keyframe every 75 frames (2.5 s): screen recorders, web video
  long-gop   preset ultrafast (no B-frames), a keyframe every 250 frames: the worst case (x264's default GOP,
             nothing to seek over, no non-reference frames); the clip bench/bench_hour_ingest.py makes
Per encoding, both for one frame per 2-second segment (the default model) plus its thumbnails, RGB conversion
and resizes included: `every_frame` decodes every frame from the first wanted one and converts the wanted ones
(what ingest did before it knew keyframes: `decode_pyav(skipping=False)`); `plan` seeks over stretches and drops
the non-reference frames no wanted frame shows (`voco.video.decode.ForwardDecoder`). CPU seconds are the
figure a busy machine does not inflate; `hour_cpu_s` scales the plan's CPU to one hour of this encoding.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_hour_ingest import HEIGHT, WIDTH, picture  # noqa: E402
from bench.common import machine  # noqa: E402
from voco.video.decode import DecodeStats, FrameSizes, decode_pyav  # noqa: E402
from voco.video.plan import plan_segments, wanted_pts  # noqa: E402
from voco.video.probe import probe  # noqa: E402

FPS = 30
ENCODINGS = {  # name -> libx264 options
    "camera": {"preset": "veryfast", "crf": "26", "g": "36"},
    "streaming": {"preset": "veryfast", "crf": "26", "g": "75"},
    "long-gop": {"preset": "ultrafast", "crf": "30", "g": "250"},
}


def make_clip(path: Path, minutes: float, options: dict[str, str]) -> int:
    """A camera pan over a picture that changes every 20 s (as bench_hour_ingest's), encoded with `options`."""
    frames, per_scene = int(minutes * 60 * FPS), 20 * FPS
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = options
        for i in range(frames):
            if i % per_scene == 0:
                pic = picture(i // per_scene)
            t = (i % per_scene) / per_scene
            top, left = int(t * (pic.shape[0] - HEIGHT)), int(t * (pic.shape[1] - WIDTH))
            rgb = np.ascontiguousarray(pic[top: top + HEIGHT, left: left + WIDTH])
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode(None))
    return frames


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn) -> tuple[int, float, float]:
    wall, cpu = time.perf_counter(), _cpu_s()
    frames = fn()
    return frames, time.perf_counter() - wall, _cpu_s() - cpu


def decode(path: Path, skipping: bool) -> int:
    """Frames the decoder produced for the plan's wanted frames (each delivered, checked)."""
    info = probe(path)
    model_pts, thumb_pts = wanted_pts(plan_segments(info, 2.0, 1))
    stats = DecodeStats()
    sizes = FrameSizes(model=(448, 252), thumb=(256, 144))  # the default model's decode cap, ingest's thumbnails
    got = sum(1 for _ in decode_pyav(info, model_pts, thumb_pts, sizes, stats, skipping=skipping))
    if got != len(np.union1d(model_pts, thumb_pts)):
        raise SystemExit(f"{path}: {got} frames delivered, {len(np.union1d(model_pts, thumb_pts))} wanted")
    return stats.frames


def measure(path: Path, frames: int, minutes: float) -> dict:
    row = {}
    for name, skipping in (("every_frame", False), ("plan", True)):
        decoded, wall, cpu = timed(lambda skipping=skipping: decode(path, skipping))
        row[name] = {"frames_decoded": decoded, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                     "source_frames_per_cpu_s": round(frames / cpu)}
    row["cpu_ratio"] = round(row["every_frame"]["cpu_s"] / row["plan"]["cpu_s"], 2)
    row["hour_cpu_s"] = {name: round(row[name]["cpu_s"] * 60 / minutes, 1) for name in ("every_frame", "plan")}
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=2.0, help="length of each clip")
    p.add_argument("--encodings", default=",".join(ENCODINGS), help=f"comma-separated, of {', '.join(ENCODINGS)}")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.encodings.split(",") if n.strip()]
    unknown = [n for n in names if n not in ENCODINGS]
    if unknown:
        p.error(f"--encodings: unknown {', '.join(unknown)} (known: {', '.join(ENCODINGS)})")
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench_decode_") as tmp:
        for name in names:
            path = Path(tmp) / f"{name}.mp4"
            frames = make_clip(path, args.minutes, ENCODINGS[name])
            rows[name] = {"options": ENCODINGS[name], "frames": frames, **measure(path, frames, args.minutes)}
            print(f"{name:10s} every frame {rows[name]['every_frame']['cpu_s']:6.2f} CPU-s, plan "
                  f"{rows[name]['plan']['cpu_s']:6.2f} CPU-s ({rows[name]['plan']['frames_decoded']} of {frames} "
                  f"frames decoded): {rows[name]['cpu_ratio']}x", file=sys.stderr)
    print(json.dumps({"bench": "decode", "clip": {"minutes": args.minutes, "fps": FPS, "size": f"{WIDTH}x{HEIGHT}"},
                      "encodings": rows, "machine": machine()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
