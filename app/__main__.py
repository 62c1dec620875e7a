"""python -m app: the VoCo Video QA chat app.

    python -m app                          # 127.0.0.1:7860, videos from $VOCO_HOME (or the default home)
    python -m app --home ./voco_home --port 8000 --auth alice:secret

Pick a stored video (or upload one: it is ingested in the background), ask questions, get streamed
answers computed from the video's VoCo caches. API: the named endpoints /ask and /videos
(gradio_client.Client(url).predict(video_id=1, question="...", api_name="/ask")).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from store import Store, StoreError, default_home


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m app", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--home", help="folder with the database and caches (default: $VOCO_HOME or the default home)")
    p.add_argument("--db", help="SQLAlchemy URL of the database (default: SQLite in --home)")
    p.add_argument("--model", default="default", help="model name or checkpoint folder (default: the bundled one)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public share link (off by default)")
    p.add_argument("--auth", help="require a login, given as user:password")
    p.add_argument("--max-upload-mb", type=int, default=512, help="largest upload accepted (default 512 MiB)")
    p.add_argument("--concurrency", type=int, default=1, help="answers computed at once; the rest queue")
    p.add_argument("--no-upload", action="store_true", help="switch uploads off")
    args = p.parse_args(argv)
    if args.auth and ":" not in args.auth:
        p.error("--auth must be user:password")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from app.service import ChatService, ServiceLimits
    from app.ui import build_ui
    from voco import VoCoModel

    try:
        model = VoCoModel.from_pretrained(args.model).eval()
        store = Store.open(args.home, args.db)
    except (FileNotFoundError, ValueError, StoreError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    home = Path(args.home) if args.home else default_home()
    limits = ServiceLimits(max_upload_bytes=args.max_upload_mb * 2**20)
    service = ChatService(store, model, model_name=args.model, limits=limits,
                          upload_dir=None if args.no_upload else home / "uploads")
    thumbs = Path(tempfile.mkdtemp(prefix="voco_thumbs_"))
    demo = build_ui(service, thumbs)
    demo.queue(default_concurrency_limit=args.concurrency, max_size=64)
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    print(f"VoCo Video QA: {len(service.videos())} videos in {home}; open http://{args.host}:{args.port}", flush=True)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth,
                max_file_size=f"{args.max_upload_mb}mb", allowed_paths=[str(thumbs)], show_error=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
