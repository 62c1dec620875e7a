"""Synthetic video-QA data sets: per-split seed streams, mp4 writing and the MSVD-QA file layout.

Python use (no files)::

    for video, qas in iter_split("train", num_videos=1000, base_seed=0):
        video.frames  # uint8 [N, H, W, 3]
        qas[0].question, qas[0].answer, qas[0].type

Command line (writes the Video-LLaVA MSVD-QA evaluation layout)::

    python -m voco.data.synthetic --out data/synth_test --videos 50 --seed 0 --split test

    DIR/videos/<video_name>.mp4   h264, yuv420p, crf 18
    DIR/test_q.json               [{"video_name", "question_id", "question"}, ...]
    DIR/test_a.json               [{"question_id", "answer", "type"}, ...]
    DIR/ground_truth.jsonl        one line per video: objects, events, backgrounds, questions
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from voco.data.questions import QA, make_questions
from voco.data.world import Video, WorldConfig, generate_video

SPLITS: tuple[str, ...] = ("train", "val", "test")
# Spawn-key prefix per split: SeedSequence streams with different spawn keys never coincide.
_SPLIT_STREAM: dict[str, int] = {"train": 1, "val": 2, "test": 3}


def video_seed_sequence(split: str, index: int, base_seed: int = 0) -> np.random.SeedSequence:
    """Seed of video ``index`` of ``split``; disjoint across splits, indices and base seeds."""
    if split not in _SPLIT_STREAM:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if index < 0 or base_seed < 0:
        raise ValueError("index and base_seed must be >= 0")
    return np.random.SeedSequence(entropy=base_seed, spawn_key=(_SPLIT_STREAM[split], index))


def video_name(split: str, index: int, base_seed: int = 0) -> str:
    """File-name-safe id, e.g. ``voco_test_s0_00003``."""
    return f"voco_{split}_s{base_seed}_{index:05d}"


def make_example(
    split: str,
    index: int,
    base_seed: int = 0,
    config: WorldConfig | None = None,
    questions_per_video: int = 6,
    render: bool = True,
) -> tuple[Video, list[QA]]:
    """One video and its questions; world and questions use separate child streams of the video seed."""
    world_seed, question_seed = video_seed_sequence(split, index, base_seed).spawn(2)
    video = generate_video(config, world_seed, video_name(split, index, base_seed), render=render)
    return video, make_questions(video, question_seed, questions_per_video)


def iter_split(
    split: str,
    num_videos: int,
    base_seed: int = 0,
    config: WorldConfig | None = None,
    questions_per_video: int = 6,
    start_index: int = 0,
    render: bool = True,
) -> Iterator[tuple[Video, list[QA]]]:
    """Yield (video, questions) for indices start_index .. start_index + num_videos - 1 of a split."""
    for index in range(start_index, start_index + num_videos):
        yield make_example(split, index, base_seed, config, questions_per_video, render)


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: int, crf: int = 18) -> None:
    """Encode uint8 [N, H, W, 3] RGB frames as h264/yuv420p mp4, atomically (temp file + os.replace)."""
    import av  # imported here so that the in-memory API works without PyAV

    num_frames, height, width, channels = frames.shape
    if channels != 3 or frames.dtype != np.uint8 or height % 2 or width % 2:
        raise ValueError(f"need uint8 [N, H, W, 3] with even H, W; got {frames.dtype} {frames.shape}")
    path = Path(path)
    tmp_path = path.with_name(f".{path.stem}.tmp{os.getpid()}.mp4")
    try:
        with av.open(str(tmp_path), "w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": str(crf), "preset": "veryfast"}
            for frame_rgb in frames:  # [H, W, 3]
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_rgb), format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))  # flush
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _write_json_atomic(path: Path, payload: object, jsonl: bool = False) -> None:
    tmp_path = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp_path, "w", encoding="utf-8") as handle:
        if jsonl:
            handle.writelines(json.dumps(item) + "\n" for item in payload)  # type: ignore[union-attr]
        else:
            json.dump(payload, handle, indent=1)
    os.replace(tmp_path, path)


def write_dataset(
    out_dir: str | os.PathLike,
    num_videos: int,
    base_seed: int = 0,
    split: str = "test",
    config: WorldConfig | None = None,
    questions_per_video: int = 6,
    crf: int = 18,
    progress: bool = False,
) -> dict:
    """Write videos/, test_q.json, test_a.json and ground_truth.jsonl into out_dir; return a summary."""
    out_dir = Path(out_dir)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    questions, answers, truths = [], [], []
    type_counts: Counter[str] = Counter()
    total_frames, total_seconds = 0, 0.0
    examples: Iterable[tuple[Video, list[QA]]] = iter_split(split, num_videos, base_seed, config,
                                                            questions_per_video)
    examples = _maybe_progress(examples, num_videos, progress)
    for video, qas in examples:
        assert video.frames is not None
        write_mp4(out_dir / "videos" / f"{video.video_id}.mp4", video.frames, video.fps, crf)
        total_frames += video.num_frames
        total_seconds += video.duration_s
        truth = video.ground_truth()
        truth["questions"] = []
        for i, qa in enumerate(qas):
            qid = f"{video.video_id}_{i}"
            questions.append({"video_name": video.video_id, "question_id": qid, "question": qa.question})
            answers.append({"question_id": qid, "answer": qa.answer, "type": qa.type})
            truth["questions"].append({"question_id": qid, "question": qa.question, "answer": qa.answer,
                                       "type": qa.type, "scope": qa.scope, "object_ids": list(qa.object_ids)})
            type_counts[qa.type] += 1
        truths.append(truth)
    _write_json_atomic(out_dir / "test_q.json", questions)
    _write_json_atomic(out_dir / "test_a.json", answers)
    _write_json_atomic(out_dir / "ground_truth.jsonl", truths, jsonl=True)
    written = {truth["video_id"] for truth in truths}
    stale = sorted(p.name for p in (out_dir / "videos").glob("*.mp4") if p.stem not in written)
    return {"videos": num_videos, "questions": len(questions), "frames": total_frames,
            "seconds": round(total_seconds, 1), "types": dict(sorted(type_counts.items())),
            "stale_videos": stale}


def _maybe_progress(items: Iterable, total: int, enabled: bool) -> Iterable:
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, total=total, desc="videos", unit="video")


def read_annotations(out_dir: str | os.PathLike) -> list[dict]:
    """Join test_q.json and test_a.json on question_id.

    Returns [{video_name, question_id, question, answer, type}] in test_q.json order.
    """
    out_dir = Path(out_dir)
    questions = json.loads((out_dir / "test_q.json").read_text(encoding="utf-8"))
    answers = {a["question_id"]: a for a in json.loads((out_dir / "test_a.json").read_text(encoding="utf-8"))}
    return [{**q, "answer": answers[q["question_id"]]["answer"], "type": answers[q["question_id"]]["type"]}
            for q in questions]


def _even_int(text: str) -> int:
    value = int(text)
    if value < 32 or value % 2:
        raise argparse.ArgumentTypeError(f"must be an even number >= 32 (yuv420p), got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m voco.data.synthetic",
        description=(
            "Write a seeded synthetic video-QA set in the Video-LLaVA MSVD-QA layout: coloured shapes "
            "enter, move, change colour and leave over a background that may change colour. Writes "
            "OUT/videos/<video_name>.mp4 (h264, yuv420p), OUT/test_q.json, OUT/test_a.json and "
            "OUT/ground_truth.jsonl. Same --seed and --split give the same files; train, val and test "
            "come from disjoint seed streams."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", required=True, type=Path, default=argparse.SUPPRESS,
                        help="output directory (created if missing)")
    parser.add_argument("--videos", type=int, default=10, help="number of videos to write")
    parser.add_argument("--seed", type=int, default=0, help="base seed (>= 0)")
    parser.add_argument("--split", choices=SPLITS, default="test", help="which seed stream to draw from")
    parser.add_argument("--size", type=_even_int, default=96, help="frame height = width in pixels (even)")
    parser.add_argument("--fps", type=int, default=8, help="frames per second")
    parser.add_argument("--min-seconds", type=float, default=4.0, help="shortest video duration")
    parser.add_argument("--max-seconds", type=float, default=24.0, help="longest video duration")
    parser.add_argument("--questions", type=int, default=6, help="questions per video")
    parser.add_argument("--noise", type=float, default=0.0, help="std of Gaussian pixel noise (0 = clean)")
    parser.add_argument("--crf", type=int, default=18, help="x264 constant rate factor (lower = better)")
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.videos < 1 or args.seed < 0 or args.questions < 1:
        print("error: --videos and --questions must be >= 1 and --seed >= 0", file=sys.stderr)
        return 2
    try:
        config = WorldConfig(size=args.size, fps=args.fps, min_seconds=args.min_seconds,
                             max_seconds=args.max_seconds, noise_std=args.noise)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    summary = write_dataset(args.out, args.videos, args.seed, args.split, config, args.questions, args.crf,
                            progress=not args.no_progress)
    elapsed = time.perf_counter() - started
    types = ", ".join(f"{name} {count}" for name, count in summary["types"].items())
    print(f"wrote {summary['videos']} {args.split} videos ({summary['seconds']} s, "
          f"{summary['frames']} frames, {args.size}x{args.size} @ {args.fps} fps) "
          f"and {summary['questions']} questions [{types}] "
          f"to {args.out} in {elapsed:.1f} s")
    if summary["stale_videos"]:
        print(f"note: {len(summary['stale_videos'])} other mp4 files in {args.out / 'videos'} are not in "
              "these annotations (left from an earlier run?)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
