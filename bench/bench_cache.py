"""Cache size and cache loading: bytes per segment on disk, and loading a 1-hour video's caches.

    python bench/bench_cache.py --model synthetic      # docs/measured.md's figures (bundled synthetic-world model)
    python bench/bench_cache.py --model default --segments 1800   # one hour of the default's 2 s segments
    python bench/bench_cache.py --model tiny --segments 600

Sizes: bytes per segment kept by voco (k = 1, 2), pool (m = k), qformer (m = 1) and full, computed and measured
(one cache as safetensors bytes; a whole video's pack file), and analytically for LLaVA-1.5-7B.
Loading: a video of `--segments` segments written through the store, then loaded through it cold
(page cache dropped for the file) and warm, against reading the same file's bytes raw; and warm with
every segment's checksum checked (what a process's first load of a pack costs).
Storage side by side (`cache_dtypes`): the same video stored as float32, as float16 (what a float16 model stores)
and as int8 (`python -m ingest --cache-dtype int8`, store/quant.py): bytes per segment as the database rows say
(scales included), the pack file, its load times (int8: read, checked, dequantized to the model dtype) and the error
of the caches read back against float32.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from ingest.run import model_info  # noqa: E402
from store import ProbeRecord, SegmentRecord, Store, VideoKey  # noqa: E402
from voco.cache import SegmentCache  # noqa: E402
from voco.cost import LLAVA_15_7B, DecoderShape, kv_bytes  # noqa: E402
from voco.model import VoCoModel  # noqa: E402


def drop_from_page_cache(path: Path) -> None:
    """Evict a file's clean pages so the next read comes from the disk (no root needed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def write_video(store: Store, model, caches: list[SegmentCache], chunk: int = 512,
                cache_dtype: str = "model") -> tuple[int, Path]:
    """Store `caches` as one video (stored as `cache_dtype`) through the store's own writer; (video id, pack file)."""
    model_id = store.register_model(model_info(model, "bench"))
    key = VideoKey(sha256=os.urandom(16).hex(), model_id=model_id, segment_seconds=1.0, frames_per_segment=2,
                   decode_max_side=0, cache_dtype=cache_dtype)
    claim = store.claim(key, fingerprint=model.fingerprint, path="bench.mp4", size=0, owner="bench")
    T = len(caches)
    store.set_probe(claim, "bench", ProbeRecord(duration=float(T), fps=1.0, num_frames=T, width=64, height=64,
                                                rotation=0, num_segments=T))
    for start in range(0, T, chunk):
        stop = min(T, start + chunk)
        segs = [SegmentRecord(index=t, start_s=float(t), end_s=float(t + 1)) for t in range(start, stop)]
        store.add_chunk(claim, "bench", segs, caches[start : start + chunk])
    store.finish(claim, "bench")
    packs = list(store.home.video_dir(claim.uid).rglob("*.safetensors"))
    return claim.video_id, max(packs, key=lambda p: p.stat().st_mtime)


def timed_load(store: Store, video_id: int, fingerprint: str, verify: bool = False) -> tuple[float, float]:
    """(open ms, open + touch every byte ms) of loading a video's caches through the store.

    A process checks every segment's checksum the first time it loads a pack (verify=True forces it).
    """
    start = time.perf_counter()
    caches = store.load_video_caches(video_id, fingerprint, verify=verify)
    opened = time.perf_counter()
    float(caches.kv.sum(dtype=torch.float32))  # touch every byte, as placing them on a timeline does
    return (opened - start) * 1000, (time.perf_counter() - start) * 1000


def raw_read_ms(path: Path) -> float:
    start = time.perf_counter()
    with open(path, "rb") as handle:
        while handle.read(1 << 24):
            pass
    return (time.perf_counter() - start) * 1000


def sizes(model) -> dict:
    """Bytes per segment per compressor: analytic KV, one cache as safetensors bytes, and overhead."""
    size = model.config.vision_config.image_size
    frames = np.zeros((model.voco.frames_per_segment, size, size, 3), dtype=np.uint8)
    out = {}
    for name, compressor, k in (("voco-1", "voco", 1), ("voco-2", "voco", 2), ("pool-2", "pool", 2),
                                ("qformer-1", "qformer", 1), ("full", "full", model.k)):
        # the same weights under another compressor (with a fresh module of its own, if it has one)
        variant = VoCoModel(model.config, dataclasses.replace(model.voco, compressor=compressor, k=k),
                            model.vision_tower, model.projector, model.lm, model.tokenizer).eval()
        (cache,) = variant.compress([frames])
        shape = DecoderShape.from_config(model.config.text_config, dtype_bytes=cache.kv.element_size())
        file_bytes = len(cache.to_bytes())
        out[name] = {"tokens": cache.k, "analytic_bytes": kv_bytes(shape, cache.k), "tensor_bytes": cache.nbytes,
                     "safetensors_bytes": file_bytes,
                     "overhead_pct": round(100 * (file_bytes - cache.nbytes) / cache.nbytes, 2)}
    return out


def segment_nbytes(store: Store, video_id: int) -> int:
    """Bytes per segment as the video's cache rows say (one value: every segment of a dense pack is alike)."""
    from sqlalchemy import func, select

    from store.models import Cache, Segment

    with store.read() as s:
        return int(s.scalar(select(func.max(Cache.nbytes)).join(Segment, Cache.segment_id == Segment.id)
                            .where(Segment.video_id == video_id)))


def storage_columns(store: Store, model, caches: list[SegmentCache], repeats: int) -> dict:
    """The same caches stored as float32, float16 and int8: bytes, pack size, load times, error read back.

    A load reads every byte (no mmap), checks the header (and the checksums: a process's first load of a pack) and,
    for int8, dequantizes to the model dtype: the time until the caches are ready to place. The variants' loads
    take turns, so the machine's load and the allocator's state weigh on each alike.
    """
    exact = torch.stack([c.kv for c in caches]).float()
    stored = {"float32": ([dataclasses.replace(c, kv=c.kv.float()) for c in caches], "model"),
              "float16": ([dataclasses.replace(c, kv=c.kv.half()) for c in caches], "model"),
              "int8": ([dataclasses.replace(c, kv=c.kv.float()) for c in caches], "int8")}
    videos = {name: write_video(store, model, kept, cache_dtype=dtype) for name, (kept, dtype) in stored.items()}
    times: dict[str, dict[str, list[float]]] = {name: {"cold": [], "warm": [], "checked": []} for name in videos}
    for _ in range(repeats):
        for name, (video_id, pack) in videos.items():
            drop_from_page_cache(pack)
            times[name]["cold"].append(timed_load(store, video_id, model.fingerprint)[0])
            times[name]["warm"].append(timed_load(store, video_id, model.fingerprint)[0])
            times[name]["checked"].append(timed_load(store, video_id, model.fingerprint, verify=True)[0])
    out = {}
    for name, (video_id, pack) in videos.items():
        back = store.load_video_caches(video_id, model.fingerprint).kv.float()
        out[name] = {"bytes_per_segment": segment_nbytes(store, video_id), "pack_bytes": pack.stat().st_size,
                     "load_cold_ms": round(min(times[name]["cold"]), 2),
                     "load_warm_ms": round(min(times[name]["warm"]), 2),
                     "load_warm_with_checksums_ms": round(min(times[name]["checked"]), 2),
                     "relative_error": float((back - exact).norm() / exact.norm()),
                     "max_abs_error": float((back - exact).abs().max()),
                     "bytes_vs_float32": round(segment_nbytes(store, video_id) / caches[0].nbytes, 4)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="synthetic",
                        help="a bundled name ('default', 'synthetic'), 'tiny', or a checkpoint folder")
    parser.add_argument("--segments", type=int, default=3600, help="segments of the long video (3600 = 1 h at 1 s)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    model = bench_model(args.model).eval()
    size = model.config.vision_config.image_size
    rng = np.random.default_rng(0)
    distinct = model.compress([rng.integers(0, 256, (model.voco.frames_per_segment, size, size, 3), dtype=np.uint8)
                               for _ in range(16)])
    caches = [distinct[t % len(distinct)] for t in range(args.segments)]
    one_7b = SegmentCache(torch.zeros(32, 2, 32, 1, 128, dtype=torch.float16), 577, "x" * 64, "voco")

    with tempfile.TemporaryDirectory(prefix="voco_bench_cache_") as home:
        store = Store.open(home)
        video_id, pack = write_video(store, model, caches)
        pack_bytes = pack.stat().st_size
        raw_tensor = sum(c.nbytes for c in caches)
        cold, cold_touch, raw_cold = [], [], []
        for _ in range(args.repeats):
            drop_from_page_cache(pack)
            raw_cold.append(raw_read_ms(pack))
            drop_from_page_cache(pack)
            o, t = timed_load(store, video_id, model.fingerprint)
            cold.append(o)
            cold_touch.append(t)
        warm = [timed_load(store, video_id, model.fingerprint) for _ in range(args.repeats)]
        verified = [timed_load(store, video_id, model.fingerprint, verify=True)[0] for _ in range(args.repeats)]
        raw_warm = min(raw_read_ms(pack) for _ in range(args.repeats))
        storage = storage_columns(store, model, caches, args.repeats)
        store.close()

    mb = pack_bytes / 1e6
    result = {
        "bench": "cache", "machine": machine(), "model": args.model,
        "settings": {"segments": args.segments, "k": model.k, "dtype": str(model.dtype), "repeats": args.repeats},
        "per_segment": sizes(model),
        "llava7b": {"voco-1_bytes": kv_bytes(LLAVA_15_7B, 1), "voco-1_MB": kv_bytes(LLAVA_15_7B, 1) / 1e6,
                    "voco-1_safetensors_MB": len(one_7b.to_bytes()) / 1e6,
                    "full_576_MB": kv_bytes(LLAVA_15_7B, 576) / 1e6},
        "video": {"pack_bytes": pack_bytes, "raw_tensor_bytes": raw_tensor,
                  "pack_overhead_pct": round(100 * (pack_bytes - raw_tensor) / raw_tensor, 3),
                  "bytes_per_segment_on_disk": round(pack_bytes / args.segments, 1)},
        "load_ms": {"cold_open": round(min(cold), 2), "cold_open_and_touch": round(min(cold_touch), 2),
                    "warm_open": round(min(o for o, _ in warm), 2),
                    "warm_open_and_touch": round(min(t for _, t in warm), 2),
                    "warm_open_with_checksums": round(min(verified), 2),
                    "raw_read_cold": round(min(raw_cold), 2), "raw_read_warm": round(raw_warm, 2)},
        "MB_per_s": {"store_cold": round(mb / (min(cold_touch) / 1000), 1),
                     "raw_cold": round(mb / (min(raw_cold) / 1000), 1)},
    }
    result["cold_vs_raw_speed"] = round(result["MB_per_s"]["store_cold"] / result["MB_per_s"]["raw_cold"], 3)
    result["cache_dtypes"] = storage
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
