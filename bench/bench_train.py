"""Training throughput and peak memory of the real training step (engine, precision, gradient checkpointing).

    python bench/bench_train.py                                        # tiny random model, CPU, fp32
    python bench/bench_train.py --precision bf16 --checkpointing       # bf16 autocast + transformers' checkpointing
    torchrun --nproc_per_node 2 bench/bench_train.py --engine ddp      # (or fsdp) two processes

The paper's stage 2 (VoCo instruction tuning: projector + LM + <voco> train, lr 2e-5) on LLaVA-1.5-7B-shaped
random weights, for a GPU session (one command):

    python bench/bench_train.py --model llava7b --device cuda --precision bf16 --checkpointing --steps 30
    torchrun --nproc_per_node 8 bench/bench_train.py --model llava7b --engine fsdp --dtype float32 ...

Runs `voco.train.loop.train_step` on synthetic-world videos (segments sampled as `model.voco` says) after
`--warmup` untimed steps; prints one JSON line: samples (videos) / s and LM tokens / s over all processes,
seconds per step, peak memory of rank 0 (CUDA max allocated, or peak RSS on CPU), first and last loss.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_model, machine  # noqa: E402
from voco.train.config import EngineSpec, config_from_dict  # noqa: E402
from voco.train.data import Prefetcher, TrainStream  # noqa: E402
from voco.train.engine import make_engine  # noqa: E402
from voco.train.loop import Run, _loader, _stage_module, train_step  # noqa: E402
from voco.train.meter import StepMeter  # noqa: E402
from voco.train.state import TrainerState  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def bench_config(args, image_size: int):
    return config_from_dict({
        "output_dir": "runs/bench_train", "device": args.device, "threads": args.threads,
        "engine": {"kind": args.engine, "precision": args.precision, "gradient_checkpointing": args.checkpointing},
        "model": {"init": "new"},  # unused: the model comes from bench.common.bench_model
        "data": {"world": {"size": image_size, "min_seconds": args.seconds, "max_seconds": args.seconds},
                 "questions_per_video": 6, "videos_per_batch": args.batch, "workers": args.workers},
        "stages": [{"name": "voco_instruct", "steps": args.warmup + args.steps, "lr": 2e-5,
                    "train": ["projector", "lm", "voco_embedding"]}],
    })


def run(args) -> dict:
    engine = make_engine(EngineSpec(args.engine, args.precision, args.checkpointing), args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    # llava7b is built in its dtype right on the device (no fp32 host copy of 7B first)
    device = engine.device if args.model.startswith("llava7b") else "cpu"
    model = bench_model(args.model, device, DTYPES[args.dtype]).to(DTYPES[args.dtype])
    config = bench_config(args, model.config.vision_config.image_size)
    engine.prepare(model)
    state = TrainerState(engine=config.engine.kind)
    meter = StepMeter(model.lm.model, engine.dist.world)
    bench = Run(config, engine, model, state, None, Path(config.output_dir), [], time.perf_counter(), meter)
    stage = config.stages[0]
    _, wrapped, optimizer = _stage_module(bench, 0, stage)
    model.train()
    stream = TrainStream(num_videos=10_000, videos_per_batch=args.batch, seed=0, rank=engine.dist.rank,
                         world_size=engine.dist.world)
    entries = []
    for examples in Prefetcher(_loader(config, model, "train", stage), stream, 0, stage.steps, args.workers):
        entries.append(train_step(bench, stage, wrapped, optimizer, examples))
    meter.close()
    timed = entries[args.warmup:]
    seconds = sum(e["step_s"] for e in timed)
    peak, kind = engine.peak_memory_mb()
    params = sum(p.numel() for p in model.parameters())
    return {"bench": "train", "model": args.model, "engine": args.engine, "processes": engine.dist.world,
            "precision": args.precision, "param_dtype": args.dtype, "checkpointing": args.checkpointing,
            "videos_per_batch_per_process": args.batch, "steps_timed": len(timed),
            "samples_per_s": round(len(timed) * args.batch * engine.dist.world / seconds, 3),
            "tokens_per_s": round(sum(e["tokens"] for e in timed) / seconds, 1),
            "step_s": round(seconds / len(timed), 4), "peak_memory_mb": round(peak, 1), "memory": kind,
            "params_local": params, "loss_first": round(entries[0]["loss"], 4),
            "loss_last": round(entries[-1]["loss"], 4), "machine": machine(), "device": str(engine.device)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny",
                   help="tiny | smolvlm256m | llava7b | llava7b:LAYERS | a checkpoint folder")
    p.add_argument("--engine", default="single", choices=["single", "ddp", "fsdp"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--checkpointing", action="store_true", help="transformers' per-layer gradient checkpointing")
    p.add_argument("--dtype", default=None, choices=list(DTYPES),
                   help="parameter (master) dtype; default float32, bfloat16 for llava7b on one GPU")
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=8, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--batch", type=int, default=2, help="videos per step per process")
    p.add_argument("--seconds", type=float, default=4.0, help="video length (segments = seconds / segment_seconds)")
    p.add_argument("--workers", type=int, default=0, help="threads rendering the next batches")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    if args.dtype is None:
        args.dtype = "bfloat16" if args.model.startswith("llava7b") and args.engine == "single" else "float32"
    figures = run(args)
    if int(figures["processes"]) == 1 or torch.distributed.get_rank() == 0:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
