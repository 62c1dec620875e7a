"""Reading a video's segment times with and without its thumbnails (issue 25: timelines and search asked only for
times but read every JPEG), side by side in one run.

    python bench/bench_segment_reads.py                    # one hour: 1,800 segments, SQLite
    python bench/bench_segment_reads.py --segments 18000   # ten hours

A store in a temporary home holds one ready video of --segments segments, each with a JPEG thumbnail of a 256 x 144
frame (a noisy gradient, about a real thumbnail's size) and a tiny cache.
`store.segments(id)` (times: what `load_timeline` and moment search read) against `store.segments(id,
thumbnails=True)` (what the app's timeline reads), best of --repeats. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import best_time, machine  # noqa: E402
from ingest.thumbs import encode_jpeg  # noqa: E402
from store import ModelInfo, ProbeRecord, SegmentRecord, Store, VideoKey  # noqa: E402
from store.claims import new_owner  # noqa: E402
from voco.cache import SegmentCache  # noqa: E402

FINGERPRINT = "ab" * 32


def fill(store: Store, segments: int, chunk: int = 200) -> int:
    """One ready video of `segments` segments with thumbnails; returns its id."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, 256)[None, :, None] + np.linspace(0, 50, 144)[:, None, None]  # [144, 256, 1]
    thumb = encode_jpeg((ramp + rng.integers(0, 24, (144, 256, 3))).astype(np.uint8))  # a photo's size, roughly
    model = store.register_model(ModelInfo(FINGERPRINT, "bench", "voco", 1, {"k": 1}))
    owner = new_owner()
    claim = store.claim(VideoKey("11" * 32, model, 2.0, 1, 0), fingerprint=FINGERPRINT, path="/hour.mp4", size=1,
                        owner=owner)
    store.set_probe(claim, owner, ProbeRecord(segments, 2.0 * segments, segments, 256, 144, 0, segments))
    cache = SegmentCache(torch.zeros(2, 2, 1, 1, 8), 1, FINGERPRINT, "voco")
    for i in range(0, segments, chunk):
        ids = range(i, min(i + chunk, segments))
        store.add_chunk(claim, owner, [SegmentRecord(j, 2.0 * j, 2.0 * j + 2, thumb, "image/jpeg") for j in ids],
                        [cache] * len(ids))
    store.finish(claim, owner)
    return claim.video_id


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--segments", type=int, default=1800)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as home, Store.open(home) as store:
        video = fill(store, args.segments)
        times = best_time(lambda: store.segments(video), args.repeats)
        with_thumbs = best_time(lambda: store.segments(video, thumbnails=True), args.repeats)
        thumb_bytes = sum(len(s.thumbnail) for s in store.segments(video, thumbnails=True))
    result = {"bench": "segment_reads", "segments": args.segments, "thumbnail_mb": round(thumb_bytes / 1e6, 1),
              "times_ms": round(times * 1000, 1), "with_thumbnails_ms": round(with_thumbs * 1000, 1),
              "ratio": round(with_thumbs / times, 1), "machine": machine()}
    print(f"{args.segments} segments: times only {result['times_ms']} ms, with thumbnails "
          f"{result['with_thumbnails_ms']} ms ({result['ratio']}x, {result['thumbnail_mb']} MB of JPEG)",
          file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
