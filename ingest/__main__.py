"""python -m ingest: the command line over `ingest.run.ingest_paths` and the store.

Exit status: 0 nothing failed; 2 some files failed (the others are stored); 1 usage or environment
error (bad arguments, model not found, database unusable); 130 interrupted (work so far is kept).
Output closed early (`--list | head`) ends quietly with the command's own status.

Only the ingest itself imports torch and transformers (in `cmd_ingest`): `--help`, `--list` and
`--remove` start in a fraction of a second.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from ingest.config import CACHE_DTYPES, DECODERS, DTYPES, IngestConfig
from ingest.display import shown
from ingest.results import EXIT_OK, EXIT_USAGE
from store import HOME_ENV, NotFound, Store, StoreError, default_home

DESCRIPTION = """\
Ingest videos: decode, cut into segments, compress each segment into a VoCo cache, store.

  python -m ingest ./videos clip.mp4                 ingest files and folders (recursive)
  python -m ingest ./videos --json                   machine-readable summary on stdout
  python -m ingest --list [--json]                   list stored videos
  python -m ingest --remove ID [ID ...]              delete videos and their cache files
  python -m ingest --search "a cat" [--top 10]        ranked moments (video, start-end, score) in the library
  python -m ingest --rebuild-index                   recompute missing search vectors, rebuild the faiss index
  python -m ingest --follow cam.ts                   a recording still being written (or - for a pipe, or a
                                                     URL: rtsp://, udp://, http://): stored as it grows, "live"
                                                     in the app until the input ends (--idle-timeout S)
  python -m ingest ./videos --executor ray --workers 4 --db postgresql://user@host/voco --cache-root /shared/voco
                                                     Ray workers (one model each) on a shared store

Re-running is cheap: videos already stored (same bytes, model, segment length and decode size) are skipped,
unfinished ones resume where they stopped, failed ones are retried. Several ingest processes (and
Ray workers) may share a home (and a database) safely.
"""

EPILOG = f"""\
home folder: --home, else ${HOME_ENV}, else ~/.cache/voco (now: {default_home()}).
exit status: 0 ok, 2 some files failed, 1 usage/environment error, 130 interrupted.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors exit 1 (2 means "some files failed")
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m ingest", description=DESCRIPTION, epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", metavar="PATH", help="video files or folders (searched recursively for "
                   "mp4, m4v, mov, mkv, webm, avi, mpg, ts, wmv, flv, 3gp, ogv)")
    p.add_argument("--home", "--cache-root", dest="home", help="folder for the cache files and (without --db) the "
                   f"SQLite database (default ${HOME_ENV} or ~/.cache/voco)")
    p.add_argument("--db", metavar="URL", help="SQLAlchemy database URL (default: sqlite:///HOME/voco.db), "
                   "e.g. postgresql+psycopg://user@host/voco")
    p.add_argument("--model", default="default", help="VoCo checkpoint: a bundled name or a local folder "
                   "(default: the bundled 'default' model)")
    p.add_argument("--segment-seconds", type=float, metavar="S",
                   help="segment length in seconds (default: the model's voco.json segment_seconds)")
    p.add_argument("--batch-size", type=int, default=8, metavar="B", help="segments per model call "
                   "(default: %(default)s)")
    p.add_argument("--chunk-segments", type=int, default=64, metavar="N", help="compressed segments written "
                   "per chunk file: the most work a kill can lose (default: %(default)s)")
    p.add_argument("--decode-max-side", type=int, metavar="PX", help="downscale decoded frames to at most PX per "
                   "side before the model resizes them (default: 2x the model's image size; 0: native)")
    p.add_argument("--decoder", "--backend", dest="decoder", choices=DECODERS, default="auto",
                   help="decoder to try first (default auto: decord if installed, else PyAV); where one fails on "
                   "a file, the other (if installed) carries on")
    p.add_argument("--max-duration", type=float, default=IngestConfig.max_duration_s, metavar="S",
                   help="refuse videos that claim to last longer than S seconds (default: %(default)s = 24 h; "
                   "0: no limit)")
    p.add_argument("--max-frame-pixels", type=int, default=IngestConfig.max_frame_pixels, metavar="N",
                   help="refuse videos whose frames hold more than N pixels (default: %(default)s, 8K passes; "
                   "0: no limit)")
    p.add_argument("--max-segments", type=int, default=IngestConfig.max_segments, metavar="N",
                   help="refuse videos planned as more than N segments, saying what they would cost (default: "
                   "%(default)s, four hours of 2-second segments; 0: no limit)")
    p.add_argument("--threads", type=int, metavar="N", default=max(1, (os.cpu_count() or 2) - 1),
                   help="torch threads for the model (default: the cores less one, left to the decoder "
                   "thread: %(default)s here)")
    p.add_argument("--device", default=IngestConfig.device,
                   help="torch device for the model, e.g. cuda (default: %(default)s; caches are stored from the CPU)")
    p.add_argument("--dtype", choices=DTYPES, default=None,
                   help="model weights' dtype (default: the checkpoint's); part of the model identity, so caches of "
                   "another dtype are kept apart")
    p.add_argument("--compressor", metavar="NAME", help="how each segment is cached: voco (the k <voco> tokens a "
                   "VoCo-tuned model reads), full (every vision token's KV: a stock LLaVA-family checkpoint answers "
                   "zero-shot), pool_frames (each frame's token grid pooled to k tokens by the model's own pooling, "
                   "zero-shot; k a square: 4, 16, 36, ...), pool (k average-pooled tokens + a trained linear), "
                   "qformer, atp, atp+voco (default: the checkpoint's voco.json; voco for a plain checkpoint); part of "
                   "the model identity, so libraries never mix")
    p.add_argument("--k", type=int, metavar="K", help="tokens kept per segment for voco / pool, per frame for "
                   "pool_frames (default: the checkpoint's)")
    p.add_argument("--cache-dtype", choices=CACHE_DTYPES, default=IngestConfig.cache_dtype,
                   help="how caches are stored: 'model' (as computed, in the model's dtype; default) or 'int8' (about "
                   "0.26x the bytes of float32: int8 per head_dim vector with a float16 scale, read back in the "
                   "model's dtype); part of the video's key, so int8 and float caches of a file never mix")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where videos are ingested: this process (local, default) or Ray worker actors (ray: "
                   "pip install -e '.[ray]'); with many machines use --db postgresql+psycopg://... and a --cache-root "
                   "every node sees")
    p.add_argument("--ray-address", metavar="ADDR", help="with --executor ray: the cluster to join ('auto': the "
                   "running one, or ray://host:10001); default: start a local Ray")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="with --executor ray: worker actors, one model each (default: %(default)s)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0, metavar="C",
                   help="with --executor ray: Ray CPUs per worker (default: %(default)s)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="G",
                   help="with --executor ray: Ray GPUs per worker (default: %(default)s)")
    p.add_argument("--no-wait", action="store_true", help="do not wait for videos another process is ingesting; "
                   "report them as failed (busy)")
    p.add_argument("--lease-seconds", type=float, default=IngestConfig.lease_s,
                   help="a claim not refreshed for this long is taken over (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print a JSON summary (or listing) on stdout")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars on stderr (default: when stderr is a terminal)")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    p.add_argument("--list", action="store_true", help="list stored videos and exit")
    p.add_argument("--remove", type=int, nargs="+", metavar="ID", help="delete these videos and their caches")
    p.add_argument("--force", action="store_true", help="with --remove: also remove a video being ingested")
    p.add_argument("--search", metavar="TEXT", help="search the library's segments for TEXT and exit")
    p.add_argument("--top", type=int, default=10, metavar="N", help="with --search: moments shown "
                   "(default: %(default)s)")
    p.add_argument("--follow", metavar="SOURCE", help="follow a live source until it ends: a file still being "
                   "written (MPEG-TS, Matroska, fragmented MP4), - (standard input), a named pipe or a URL; "
                   "segments are stored as they complete and a restart resumes")
    p.add_argument("--name", help="with --follow: what the store calls the source (a pipe's name; default: its "
                   "path or URL); a restart with the same name resumes it")
    p.add_argument("--idle-timeout", type=float, default=10.0, metavar="S", help="with --follow: the input has "
                   "ended when nothing new arrives for S seconds (default 10)")
    p.add_argument("--rebuild-index", action="store_true", help="write the missing search vectors of the "
                   "--model's videos and rebuild its search index from the database and vector files")
    return p


def emit(text: str | None) -> None:
    """Print `text` on stdout (None: just flush). When the reader has closed it (`--list --json | head`),
    stop writing quietly: no traceback, and the command keeps its own exit status."""
    try:
        if text is None:
            sys.stdout.flush()
        else:
            print(text)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # later writes and the exit flush go nowhere


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def cmd_list(store: Store, as_json: bool) -> int:
    videos = store.list_videos()
    if as_json:
        emit(json.dumps({"videos": [v.to_dict() for v in videos]}, indent=1))
        return EXIT_OK
    if not videos:
        emit(f"no videos in {store.home.root} (ingest some: python -m ingest PATH)")
        return EXIT_OK
    emit(f"{'id':>5}  {'status':<8} {'duration':>8} {'segments':>9}  {'model':<24} path")
    for v in videos:
        segs = f"{v.segments_done}/{v.num_segments}" if v.num_segments is not None else "-"
        model = f"{v.model_name[-12:]}@{v.fingerprint[:8]}"
        model += f" {v.cache_dtype}" if v.cache_dtype != "model" else ""  # int8 and float videos of one file
        line = f"{v.id:>5}  {v.status:<8} {_fmt_duration(v.duration):>8} {segs:>9}  {shown(model):<24} {shown(v.path)}"
        if v.error:
            line += f"\n{'':>7}error: {shown(v.error)}"
        emit(line)
    return EXIT_OK


def cmd_remove(store: Store, ids: list[int], force: bool, as_json: bool) -> int:
    removed, errors = [], []
    for video_id in ids:
        try:
            removed.append(store.remove(video_id, force=force).to_dict())
        except (NotFound, StoreError) as err:
            errors.append(str(err))
    if removed and (store.home.root / "index").is_dir():  # faiss is imported only when there are indexes
        from store.index import drop_videos

        drop_videos(store, [info["id"] for info in removed])
    if as_json:
        emit(json.dumps({"removed": removed, "errors": errors}, indent=1))
    else:
        for info in removed:
            emit(f"removed video {info['id']}: {shown(info['path'])}")
        for error in errors:
            print(f"error: {shown(error)}", file=sys.stderr)
    return EXIT_USAGE if errors else EXIT_OK


def _executor(args: argparse.Namespace):
    """The executor the flags ask for (ImportError with what to install when Ray is missing)."""
    from ingest.config import RayConfig
    from ingest.executors import executor_for

    if args.executor == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise ImportError("--executor ray needs Ray: pip install -e '.[ray]'")
    ray = RayConfig(address=args.ray_address, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                    gpus_per_worker=args.gpus_per_worker)
    return executor_for(args.executor, ray=ray)


def ingest_config(args: argparse.Namespace) -> IngestConfig:
    """The ingest settings the flags give (files and --follow alike); ValueError names a bad one."""
    return IngestConfig(segment_seconds=args.segment_seconds, batch_size=args.batch_size,
                        chunk_segments=args.chunk_segments,
                        decode_max_side=args.decode_max_side, decoder=args.decoder,
                        max_duration_s=args.max_duration or None,
                        max_frame_pixels=args.max_frame_pixels or None,
                        max_segments=args.max_segments or None,
                        lease_s=args.lease_seconds, wait_for_others=not args.no_wait,
                        torch_threads=args.threads, device=args.device, dtype=args.dtype,
                        cache_dtype=args.cache_dtype, compressor=args.compressor, k=args.k)


def cmd_ingest(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from ingest.config import UsageError
    from ingest.run import ingest_paths

    hf_logging.disable_progress_bar()  # the weight-loading bar would mix with ours

    try:
        config = ingest_config(args)
        executor = _executor(args)
    except (ValueError, ImportError) as err:
        print(f"error: {shown(err)}", file=sys.stderr)
        return EXIT_USAGE
    show = sys.stderr.isatty() if args.progress is None else args.progress
    try:
        summary = ingest_paths(args.paths, home=args.home, db_url=args.db, model=args.model, config=config,
                               show_progress=show, executor=executor)
    except (UsageError, FileNotFoundError, StoreError, ValueError) as err:
        print(f"error: {shown(err)}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        emit(json.dumps(summary.to_dict(), indent=1))
    else:
        emit(summary.text())
    return summary.exit_code


def cmd_follow(args: argparse.Namespace) -> int:
    """--follow SOURCE: store a live source as it grows (ingest/follow.py)."""
    from transformers.utils import logging as hf_logging

    from ingest.follow import LiveSource, follow
    from ingest.results import EXIT_INTERRUPTED, EXIT_SOME_FAILED, FileStatus
    from voco import load_model
    from voco.timeline import clock
    from voco.video.probe import VideoError

    hf_logging.disable_progress_bar()

    def stored(state) -> None:
        print(f"live: {state.segments} segments stored, up to {clock(state.end_s)}", file=sys.stderr, flush=True)

    try:
        source = LiveSource.parse(args.follow, args.name)
        config = ingest_config(args)
        model = load_model(args.model, args.device, args.dtype, args.compressor, args.k)
        with Store.open(args.home, args.db) as store:
            result = follow(source, store=store, model=model, model_name=args.model, config=config,
                            idle_timeout_s=args.idle_timeout, on_stored=stored)
    except KeyboardInterrupt:
        print("interrupted: the segments stored so far are kept; run the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (VideoError, StoreError, FileNotFoundError, ValueError) as err:
        print(f"error: {shown(err)}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        emit(json.dumps(result.to_dict(), indent=1))
    else:
        emit(f"{shown(result.path)}: {result.status}" + (f", {result.segments} segments, {result.duration_s} s"
                                                          if result.segments else "")
             + (f" ({result.error})" if result.error else ""))
    return EXIT_SOME_FAILED if result.status == FileStatus.FAILED else EXIT_OK


def cmd_search(args: argparse.Namespace) -> int:
    """--search / --rebuild-index: both need the model (imported here, not at start-up)."""
    from ingest.search import MomentSearch
    from ingest.vectors import rebuild_index
    from voco import load_model

    try:
        model = load_model(args.model, args.device, args.dtype, args.compressor, args.k)
        with Store.open(args.home, args.db) as store:
            if args.rebuild_index:
                report = rebuild_index(store, model)
                emit(json.dumps(report) if args.json else
                     f"index: {report['videos']} videos, {report['segments']} segments "
                     f"({report['vectors_computed']} vector files computed)")
                if args.search is None:
                    return EXIT_OK
            hits = MomentSearch(store, model).search(args.search, args.top)
    except (StoreError, FileNotFoundError, ValueError) as err:
        print(f"error: {shown(err)}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        emit(json.dumps({"query": args.search, "hits": hits}, indent=1))
    elif not hits:
        emit("no moments found (is anything ingested with this model? python -m ingest --list)")
    for rank, h in enumerate(hits if not args.json else [], 1):
        emit(f"{rank:>3}. {h['score']:>9.3f}  video {h['video_id']:>4}  {h['start_s']:7.1f}-{h['end_s']:.1f} s  "
             f"{shown(h['path'])}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.list or args.remove:
        if args.paths:
            print("error: --list and --remove take no PATH arguments", file=sys.stderr)
            return EXIT_USAGE
        try:
            with Store.open(args.home, args.db) as store:
                return cmd_list(store, args.json) if args.list else cmd_remove(store, args.remove, args.force,
                                                                                args.json)
        except StoreError as err:
            print(f"error: {shown(err)}", file=sys.stderr)
            return EXIT_USAGE
    if args.follow is not None:
        if args.paths:
            print("error: --follow takes one SOURCE and no PATH arguments", file=sys.stderr)
            return EXIT_USAGE
        return cmd_follow(args)
    if args.search is not None or args.rebuild_index:
        if args.paths:
            print("error: --search and --rebuild-index take no PATH arguments", file=sys.stderr)
            return EXIT_USAGE
        return cmd_search(args)
    if not args.paths:
        build_parser().print_usage(sys.stderr)
        print("error: give at least one PATH (or --list / --remove ID)", file=sys.stderr)
        return EXIT_USAGE
    return cmd_ingest(args)


def run_cli(argv: list[str] | None = None) -> int:
    """`main`, flushing stdout before the interpreter exits (where a closed pipe would print a traceback)."""
    try:
        return main(argv)
    finally:  # --help too (argparse exits through SystemExit)
        emit(None)


if __name__ == "__main__":
    sys.exit(run_cli())
