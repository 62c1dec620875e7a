"""python -m app: the VoCo Video QA chat app.

    python -m app                          # 127.0.0.1:7860, videos from $VOCO_HOME (or the default home)
    python -m app --home ./voco_home --port 8000 --auth-file ~/.voco_auth   # a file holding user:password
    VOCO_APP_AUTH=alice:secret python -m app                                 # or the environment
    python -m app --max-batch 16 --max-queue 64   # answers decoded together; questions waiting (more: "busy")

Pick a stored video (or upload one: it is ingested in the background), ask questions, get streamed
answers computed from the video's VoCo caches. API: the named endpoints /ask, /videos, /search, /upload
(a file: gradio_client.handle_file(path)), /upload_status and /cancel_upload
(gradio_client.Client(url).predict(video_id=1, question="...", api_name="/ask") returns
{"answer": ..., "note": ..., "segments_used": ..., "tokens": ...}; a bad request raises its reason).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path

from ingest.config import DTYPES
from store import Store, StoreError, default_home

AUTH_ENV = "VOCO_APP_AUTH"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m app", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--home", help="folder with the database and caches (default: $VOCO_HOME or the default home)")
    p.add_argument("--db", help="SQLAlchemy URL of the database (default: SQLite in --home)")
    p.add_argument("--model", default="default", help="model name or checkpoint folder (default: the bundled one)")
    p.add_argument("--device", default="cpu", help="torch device for the model, e.g. cuda (default: %(default)s)")
    p.add_argument("--dtype", choices=DTYPES, default=None,
                   help="model weights' dtype (default: the checkpoint's); ingest with the same one, or the "
                   "library's caches belong to another model identity")
    p.add_argument("--compressor", metavar="NAME", help="how the library's segments were cached (voco, full, "
                   "pool_frames, pool, ...; default: what the library holds for --model, else the checkpoint's own)")
    p.add_argument("--k", type=int, metavar="K", help="tokens kept per segment, with --compressor (default: the "
                   "library's, else the checkpoint's)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public share link (off by default)")
    login = p.add_mutually_exclusive_group()
    login.add_argument("--auth-file", metavar="FILE",
                       help=f"require a login: FILE's first line is user:password (or set ${AUTH_ENV})")
    login.add_argument("--auth", metavar="USER:PASSWORD",
                       help="require a login (the password shows in the process list: prefer --auth-file)")
    p.add_argument("--max-upload-mb", type=int, default=512, help="largest upload accepted (default 512 MiB)")
    p.add_argument("--max-upload-minutes", type=float, default=120,
                   help="longest upload accepted, in minutes (default 120; 0: no limit; python -m ingest takes any)")
    p.add_argument("--concurrent-uploads", type=int, default=1,
                   help="uploads ingesting at once (default 1); the rest wait in line and see their place")
    p.add_argument("--max-batch", type=int, default=16, metavar="N",
                   help="answers decoded together, one model pass per token for all of them (default %(default)s; "
                        "1: one at a time)")
    p.add_argument("--max-queue", type=int, default=64, metavar="N",
                   help="questions waiting for a place in the batch, each shown its place (default %(default)s); "
                        "one more is told the app is busy")
    p.add_argument("--row-tile", type=int, metavar="T",
                   help="decode in T-row tiles: every answer bitwise the same whoever it is batched with, at some "
                        "speed (default: off, fastest)")
    p.add_argument("--concurrency", type=int, default=1,
                   help="other requests (video picker, search, uploads) handled at once (default %(default)s)")
    p.add_argument("--no-upload", action="store_true", help="switch uploads off")
    p.add_argument("--segments", choices=("retrieved", "uniform"), default="retrieved",
                   help="which segments answer when a video does not fit the context: the ones most relevant to "
                        "the question (the moment-search index, with neighbours and a uniform sketch; default) or "
                        "a uniform subset")
    p.add_argument("--retrieve-always", type=int, metavar="N",
                   help="with --segments retrieved: answer every question from at most N segments, even when all fit")
    args = p.parse_args(argv)
    if args.concurrent_uploads < 1 or args.max_upload_minutes < 0:
        p.error("--concurrent-uploads must be >= 1 and --max-upload-minutes >= 0")
    if args.max_batch < 1 or args.max_queue < 0 or (args.row_tile is not None and args.row_tile < 1):
        p.error("--max-batch and --row-tile must be >= 1, --max-queue >= 0")
    if args.retrieve_always is not None and (args.segments != "retrieved" or args.retrieve_always < 1):
        p.error("--retrieve-always N needs --segments retrieved and N >= 1")
    try:
        args.login = login_pair(args.auth, args.auth_file, os.environ.get(AUTH_ENV))
    except ValueError as err:
        p.error(str(err))
    return args


def login_pair(flag: str | None, file: str | None, env: str | None) -> tuple[str, str] | None:
    """(user, password) from --auth, --auth-file or $VOCO_APP_AUTH (in that order), or None: no login."""
    if flag is not None:
        text, source = flag, "--auth"
    elif file is not None:
        try:
            lines = Path(file).expanduser().read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"--auth-file {file}: cannot read it ({err})") from err
        text, source = (lines[0].strip() if lines else ""), f"--auth-file {file}"
    elif env:
        text, source = env.strip(), f"${AUTH_ENV}"
    else:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ValueError(f"{source} must be user:password (both non-empty)")
    return user, password


def port_problem(host: str, port: int) -> str | None:
    """Why the app could not listen on host:port (in use, not allowed), or None when it can."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no problem
        try:
            sock.bind((host, port))
        except OSError as err:
            return err.strerror or str(err)
    return None


def library_model(store: Store, args: argparse.Namespace):
    """The model the app answers with: --model with --compressor / --k, else with the compressor the library holds
    most of --model's videos cached by (a stock checkpoint ingested with --compressor full is answered with full
    caches), else the checkpoint's own."""
    from voco import load_model

    compressor, k = args.compressor, args.k
    if compressor is None:
        names = [args.model, *([str(Path(args.model).resolve())] if Path(args.model).exists() else [])]
        built = store.compressions(names)
        if built:
            compressor, k = built[0][0], built[0][1] if k is None else k
            others = ", ".join(f"{c} (k={n})" for c, n in built[1:])
            if others:
                print(f"the library also holds {args.model}'s videos cached by {others}: answering those needs "
                      "--compressor", file=sys.stderr)
    return load_model(args.model, args.device, args.dtype, compressor, k)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    problem = port_problem(args.host, args.port)  # before the model loads: one line, not a traceback after it
    if problem:
        print(f"error: cannot listen on {args.host}:{args.port} ({problem}): pass a free port with --port N, or stop "
              "what uses it", file=sys.stderr)
        return 1
    from app.lines import library_line
    from app.service import ChatService, ServiceLimits
    from app.ui import answer_slots, build_ui
    from voco.session import make_selector

    try:
        store = Store.open(args.home, args.db)
        model = library_model(store, args)
    except (FileNotFoundError, ValueError, StoreError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    home = Path(args.home) if args.home else default_home()
    limits = ServiceLimits(max_upload_bytes=args.max_upload_mb * 2**20,
                           max_upload_seconds=args.max_upload_minutes * 60 or None,
                           concurrent_uploads=args.concurrent_uploads, max_batch=args.max_batch,
                           max_queue=args.max_queue, row_tile=args.row_tile)
    options = {"max_segments": args.retrieve_always} if args.segments == "retrieved" else {}
    service = ChatService(store, model, model_name=args.model, limits=limits,
                          upload_dir=None if args.no_upload else home / "uploads",
                          selector=make_selector(args.segments, **options))  # retrieved: scored by service.moments
    swept = service.sweep_uploads()
    if swept:
        print(f"removed {len(swept)} upload(s) no stored video needs (failed, cancelled or duplicate) "
              f"from {home / 'uploads'}", flush=True)
    thumbs = Path(tempfile.mkdtemp(prefix="voco_thumbs_"))
    demo = build_ui(service, thumbs)
    demo.queue(default_concurrency_limit=args.concurrency, max_size=64)
    if args.auth_file and Path(args.auth_file).expanduser().stat().st_mode & 0o077:
        print(f"note: {args.auth_file} can be read by other users (chmod 600 it)", file=sys.stderr)
    if args.auth:
        print(f"note: --auth shows the password to anyone who can list processes; use --auth-file or ${AUTH_ENV}",
              file=sys.stderr)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill` ends the app like Ctrl-C: cleanup runs
    try:
        demo.launch(server_name=args.host, server_port=args.port, share=args.share, auth=args.login,
                    max_file_size=f"{args.max_upload_mb}mb", allowed_paths=[str(thumbs)], show_error=False,
                    prevent_thread_lock=True, quiet=True, max_threads=answer_slots(service) + 40)  # + gradio's own
        # the address only once the server listens (a failed launch has raised by now)
        print(f"VoCo Video QA: {library_line(service)} in {home}; open http://{args.host}:{args.port}", flush=True)
        demo.block_thread()
    finally:
        shutil.rmtree(thumbs, ignore_errors=True)  # this run's thumbnails; the next run writes its own
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
