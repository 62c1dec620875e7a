"""Command line of the video-QA evaluation (scripts/eval_videoqa.py and its per-dataset wrappers)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from evaluation.judge_prompts import read_script_judge
from evaluation.judges import JUDGES, ExactJudge, JudgeFatal
from evaluation.openai_judge import OpenAIJudge, Prompts
from evaluation.predictions import PREDICTIONS, PredictionsError, Shard, part_path
from evaluation.readers import DATASETS, DatasetError, read_dataset
from evaluation.runner import (
    DATASET_TITLES,
    JUDGE_CACHE,
    MISSING_VIDEOS,
    RunError,
    check_run_info,
    clear_outputs,
    judge_and_score,
    make_plan,
    merge,
    predict,
    read_run_info,
    todo_items,
    write_missing_videos,
)

EXIT_OK, EXIT_ERROR, EXIT_FAILURES, EXIT_INTERRUPTED = 0, 1, 2, 130
OPENAI_URL = "https://api.openai.com/v1"
DEFAULT_JUDGE_MODEL = "gpt-3.5-turbo"
DEFAULT_JUDGE_TEMPERATURE = 0.0

DESCRIPTION = """\
Zero-shot video QA evaluation (MSVD-QA, MSRVTT-QA, ActivityNet-QA, or your own files) of a VoCo model,
scored as in Video-ChatGPT: an LLM judge says yes/no and gives a 0-5 score per answer; accuracy is
yes / (yes + no), score the mean. One command per dataset:

  python scripts/eval_msvd.py --root data/MSVD_Zero_Shot_QA --judge openai --out runs/msvd
  python scripts/eval_activitynet.py --root data/activitynet-qa --videos data/anet/videos --out runs/anet
  python scripts/eval_videoqa.py --dataset custom --root data/synth_test --judge exact --out runs/synth

Steps: read the annotations (questions joined to answers by question_id), find each video file,
answer every question with the model (caches per video computed once; with --home taken from and
kept in the store), append each prediction to OUT/parts/ (a killed run resumes where it stopped),
merge into OUT/predictions.jsonl, judge, and write OUT/metrics-JUDGE.json and .md.
"""

EPILOG = """\
sharding: run `--shard I/N` for I = 0..N-1 (any machines sharing OUT); each answers the questions of
its videos only. Then run the same command with --merge: it checks that every question has a
prediction, merges, judges and scores. A later --merge --judge openai rescores an exact run without
answering again.

exit status: 0 done; 1 error (bad files, model not found, incomplete merge, --strict and missing
videos); 2 done, but some questions could not be answered or judged (counted in the metrics);
130 interrupted (predictions so far are kept).
judge key: the openai judge reads OPENAI_API_KEY (not needed by a local endpoint without auth).
"""


def build_parser(dataset: str | None = None) -> argparse.ArgumentParser:
    prog = f"python scripts/eval_{dataset}.py" if dataset else "python scripts/eval_videoqa.py"
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    data = p.add_argument_group("data")
    if dataset is None:
        data.add_argument("--dataset", required=True, choices=DATASETS,
                          help="which dataset layout to look for under --root (custom: test_q.json + test_a.json "
                               "or test_qa.json, videos in ROOT/videos)")
    data.add_argument("--root", required=True, type=Path, metavar="DIR",
                      help="dataset folder (see evaluation/README.md for the layouts found automatically)")
    data.add_argument("--videos", type=Path, metavar="DIR", help="video folder, searched recursively "
                      "(default: found under --root, e.g. videos/, videos/all/, all_test/)")
    data.add_argument("--questions", type=Path, metavar="FILE", help="test_q.json to use (with --answers)")
    data.add_argument("--answers", type=Path, metavar="FILE", help="test_a.json to use (with --questions)")
    data.add_argument("--qa", type=Path, metavar="FILE", help="a single LLaMA-VID-style test_qa.json to use")
    data.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N questions of the file")
    data.add_argument("--strict", action="store_true",
                      help="fail when any video file is missing (default: list them and skip their questions)")

    model = p.add_argument_group("model")
    model.add_argument("--model", default="default", help="VoCo checkpoint: a bundled name or a local folder "
                       "(default: %(default)s)")
    model.add_argument("--segment-seconds", type=float, metavar="S", help="override the model's segment length")
    model.add_argument("--max-new-tokens", type=int, default=32, metavar="N",
                       help="longest answer in tokens (default: %(default)s)")
    model.add_argument("--device", default="cpu", help="torch device for the model (default: %(default)s)")
    model.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None,
                       help="model dtype (default: float32)")
    model.add_argument("--segments", choices=("retrieved", "uniform", "all"), default="retrieved",
                       help="which segments answer (voco.session, as the app): retrieved = all when they fit the "
                       "context, else those most relevant to the question with neighbours and a uniform sketch; "
                       "uniform = an even subset; all = every one (a video too long is that question's error) "
                       "(default: %(default)s)")
    model.add_argument("--max-segments", type=int, metavar="N",
                       help="with --segments retrieved or uniform: answer from at most N segments even when all fit")
    model.add_argument("--home", type=Path, metavar="DIR",
                       help="store home: take the videos' caches from the store there, ingesting the videos it "
                            "lacks (and keeping their caches); without it caches live in memory for the run only")
    model.add_argument("--db", metavar="URL", help="store database URL (with --home; default SQLite in the home)")
    model.add_argument("--answerer", metavar="MODULE:CALLABLE",
                       help="use another answerer: CALLABLE(args) returns an object with "
                            "answer(video_path, question) -> str (see evaluation/answerers.py)")

    run = p.add_argument_group("run")
    run.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created; reruns resume)")
    run.add_argument("--shard", type=Shard.parse, metavar="I/N",
                     help="answer only shard I of N (split by video); then run once with --merge")
    run.add_argument("--merge", action="store_true",
                     help="answer nothing: merge the shards' predictions, check none is missing, judge, score")
    run.add_argument("--overwrite", action="store_true",
                     help="discard OUT's predictions and results first (keeps the judge cache)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")

    judge = p.add_argument_group("judge")
    judge.add_argument("--judge", choices=JUDGES, default="exact",
                       help="exact: offline normalised match of one-word answers (accuracy, no score); openai: the "
                            "Video-ChatGPT LLM judge, which published numbers use (default: %(default)s)")
    judge.add_argument("--judge-url", default=os.environ.get("OPENAI_BASE_URL", OPENAI_URL), metavar="URL",
                       help="OpenAI-compatible API base; requests go to URL/chat/completions "
                            f"(default: $OPENAI_BASE_URL or {OPENAI_URL})")
    judge.add_argument("--judge-model", metavar="NAME",
                       help=f"judge model (default: the --judge-prompt-from script's, else {DEFAULT_JUDGE_MODEL}, "
                            "as in the published protocol)")
    judge.add_argument("--judge-concurrency", type=int, default=4, metavar="N",
                       help="requests in flight at most (default: %(default)s)")
    judge.add_argument("--judge-retries", type=int, default=6, metavar="N",
                       help="retries of a request on 429/5xx/network errors/malformed replies (default: %(default)s)")
    judge.add_argument("--judge-timeout", type=float, default=60.0, metavar="S",
                       help="seconds per request (default: %(default)s)")
    judge.add_argument("--judge-temperature", type=float, metavar="T",
                       help=f"sampling temperature of the judge (default: {DEFAULT_JUDGE_TEMPERATURE}; with "
                            "--judge-prompt-from, the script's setting: none sent, the API default, 1.0)")
    judge.add_argument("--judge-cache", type=Path, metavar="FILE",
                       help=f"judgment cache, JSONL (default: OUT/{JUDGE_CACHE}); share it between runs freely")
    wording = judge.add_mutually_exclusive_group()
    wording.add_argument("--judge-prompt", type=Path, metavar="FILE",
                         help='JSON {"system": ..., "user": ... with {question} {answer} {pred}} to replace the '
                              "built-in prompts")
    wording.add_argument("--judge-prompt-from", type=Path, metavar="PY",
                         help="the published judge exactly: path to quantitative_evaluation/evaluate_activitynet_qa.py "
                              "in your checkout of Video-ChatGPT; its prompts, model and decoding settings are read "
                              "from it (parsed, never run); --judge-model / --judge-temperature still override")
    return p


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR


def openai_judge_settings(args) -> dict:
    """Prompts, their source, model, temperature and decoding of the openai judge: explicit flags first, then
    the --judge-prompt-from script's own settings, then this project's defaults. Raises on a bad prompt file."""
    if args.judge_prompt_from is not None:
        script = read_script_judge(args.judge_prompt_from)
        prompts, source = script.prompts, f"{script.path} (extracted)"
        model, decoding = script.model, dict(script.decoding)
        temperature = decoding.pop("temperature", None)  # absent in the script: the API default, as they ran it
    elif args.judge_prompt is not None:
        prompts, source = Prompts.load(args.judge_prompt), str(Path(args.judge_prompt).resolve())
        model, temperature, decoding = None, DEFAULT_JUDGE_TEMPERATURE, {}
    else:
        prompts, source = Prompts(), "built-in"
        model, temperature, decoding = None, DEFAULT_JUDGE_TEMPERATURE, {}
    if args.judge_temperature is not None:
        temperature = args.judge_temperature
    return {"prompts": prompts, "prompt_source": source, "model": args.judge_model or model or DEFAULT_JUDGE_MODEL,
            "temperature": temperature, "decoding": decoding}


def build_judge(args, out: Path):
    if args.judge == "exact":
        return ExactJudge()
    settings = openai_judge_settings(args)
    return OpenAIJudge(args.judge_url, settings.pop("model"), api_key=os.environ.get("OPENAI_API_KEY") or None,
                       cache_path=args.judge_cache or out / JUDGE_CACHE, concurrency=args.judge_concurrency,
                       max_retries=args.judge_retries, timeout=args.judge_timeout, **settings)


def model_arg(name: str) -> str:
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def build_answerer(args):
    """The answerer this run uses, or raises FileNotFoundError when there is no such model."""
    from evaluation.answerers import Answerer, ModelAnswerer, StoreAnswerer, load_factory

    if args.answerer:
        answerer = load_factory(args.answerer)(args)
        if not isinstance(answerer, Answerer):
            raise ValueError(f"--answerer {args.answerer} returned {type(answerer).__name__}, which has no "
                             "answer(video_path, question) method")
        return answerer
    import torch

    from voco import VoCoModel

    overrides = {}
    if args.segment_seconds is not None:
        overrides["segment_seconds"] = args.segment_seconds
    dtype = getattr(torch, args.dtype) if args.dtype else None
    print(f"loading model {args.model} ...", file=sys.stderr)
    model = VoCoModel.from_pretrained(args.model, dtype=dtype, device=args.device, **overrides)
    model.eval()
    selection = {"segments": args.segments, "max_segments": args.max_segments}
    if args.home is None:
        return ModelAnswerer(model, max_new_tokens=args.max_new_tokens, **selection)
    from store import StoreError

    try:
        return StoreAnswerer(model, args.home, db_url=args.db, model_name=args.model,
                             max_new_tokens=args.max_new_tokens, show_progress=not args.no_progress, **selection)
    except StoreError as err:  # an unusable home or database ends the run
        raise RunError(f"--home {args.home}: cannot open the store ({err})") from err


def main(argv: list[str] | None = None, dataset: str | None = None) -> int:
    args = build_parser(dataset).parse_args(argv)
    if dataset is not None:
        args.dataset = dataset
    try:
        return run(args)
    except KeyboardInterrupt:
        print("\ninterrupted: the predictions so far are kept; run the same command again to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except (DatasetError, RunError, PredictionsError, JudgeFatal, ValueError) as err:
        return _error(str(err))


def _usage_error(args) -> str | None:
    """What is wrong with this combination of options, or None."""
    if args.shard is not None and args.merge:
        return "--shard and --merge do not go together: run the shards, then --merge once"
    if args.overwrite and (args.shard is not None or args.merge):
        return ("--overwrite would delete the other shards' predictions: to start over, run once without "
                "--shard/--merge and with --overwrite, or use a new --out")
    if args.limit is not None and args.limit < 1:
        return "--limit must be >= 1"
    if args.max_segments is not None and (args.max_segments < 1 or args.segments == "all"):
        return "--max-segments N needs N >= 1 and --segments retrieved or uniform"
    if args.shard is None and args.judge == "openai" and not os.environ.get("OPENAI_API_KEY") \
            and args.judge_url.rstrip("/").startswith(OPENAI_URL):
        return f"--judge openai with {args.judge_url} needs OPENAI_API_KEY in the environment"
    if args.judge != "openai" and (args.judge_prompt or args.judge_prompt_from):
        return "--judge-prompt and --judge-prompt-from apply to --judge openai"
    return None


def run(args) -> int:
    problem = _usage_error(args)
    if problem:
        return _error(problem)
    if args.judge == "openai":
        openai_judge_settings(args)  # a bad prompt file fails now, not after answering

    progress = not args.no_progress
    dataset = read_dataset(args.dataset, args.root, questions=args.questions, answers=args.answers, qa=args.qa,
                           videos=args.videos)
    for note in dataset.notes:
        _note(note)
    plan = make_plan(dataset, args.limit, args.strict)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.overwrite:
        clear_outputs(out)
    write_missing_videos(out, plan)
    videos = len(plan.video_paths) + len(plan.missing_videos)
    print(f"{DATASET_TITLES[dataset.name]}: {len(plan.items)} questions on {videos} videos "
          f"({', '.join(str(f) for f in dataset.files)}; videos in {dataset.videos_dir})", file=sys.stderr)
    if plan.missing_videos:
        _note(f"{len(plan.missing_videos)} videos have no file ({len(plan.missing_items)} questions skipped, "
              f"counted as missing): listed in {out / MISSING_VIDEOS}; --strict makes this an error")

    info = {"dataset": dataset.name, "root": str(Path(args.root).resolve()),
            "annotation_files": [str(f) for f in dataset.files]}
    if args.answerer:
        info["answerer_spec"] = args.answerer
    else:
        info["model"] = model_arg(args.model)
        info["max_new_tokens"] = args.max_new_tokens
        info["segment_seconds_override"] = args.segment_seconds

    try:
        answer_errors = 0 if args.merge else _answer(args, plan, out, info, progress)
    except FileNotFoundError as err:  # no such model, answerer or file: one line, no traceback
        return _error(str(err))
    if args.shard is not None:
        print(f"shard {args.shard} done ({part_path(out, args.shard)}); when every shard is done, run the same "
              "command without --shard and with --merge", file=sys.stderr)
        return EXIT_FAILURES if answer_errors else EXIT_OK
    return _merge_and_judge(args, plan, out, info, progress)


def _answer(args, plan, out: Path, info: dict, progress: bool) -> int:
    """Answer the questions this run (or shard) has no prediction for: how many failed."""
    todo = todo_items(plan, out, args.shard)
    if not todo:
        check_run_info(out, info, write=False)
        print("every question already has a prediction" + (f" in shard {args.shard}" if args.shard else ""),
              file=sys.stderr)
        return 0
    answerer = build_answerer(args)
    describe = getattr(answerer, "describe", None)
    check_run_info(out, {**info, **(describe() if callable(describe) else {})})
    try:
        stats = predict(todo, plan, answerer, out, args.shard, progress)
    finally:
        close = getattr(answerer, "close", None)
        if callable(close):
            close()
    if stats.recovered_torn_tail:
        _note(f"{part_path(out, args.shard)}: a line cut by an earlier kill was dropped (its question was "
              "answered again)")
    print(f"answered {stats.written} questions in {stats.elapsed_s:.1f} s"
          + (f"; {stats.errors} failed, e.g. {stats.error_examples[0]}" if stats.errors else ""),
          file=sys.stderr)
    return stats.errors


def _merge_and_judge(args, plan, out: Path, info: dict, progress: bool) -> int:
    merged = merge(plan, out)
    if merged.duplicates:
        _note(f"{merged.duplicates} duplicate predictions dropped in the merge (one kept per question)")
    if merged.unknown:
        _note(f"{merged.unknown} predictions in {out / 'parts'} are for questions outside this evaluation "
              "(another --limit?) and were left out")
    judge = build_judge(args, out)
    report = judge_and_score(plan, merged.records, judge, out, progress, read_run_info(out) or info)
    md = (out / f"metrics-{judge.name}.md").read_text(encoding="utf-8")
    print(md)
    if getattr(judge, "requests", None) is not None:
        print(f"judge: {judge.requests} requests sent", file=sys.stderr)
    print(f"wrote {out / PREDICTIONS}, {out / f'judgments-{judge.name}.jsonl'}, "
          f"{out / f'metrics-{judge.name}.json'} and .md", file=sys.stderr)
    overall = report["overall"]
    return EXIT_FAILURES if overall["answer_error"] or overall["judge_error"] else EXIT_OK
