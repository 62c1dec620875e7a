"""The README's screenshot: the chat app over the quickstart library, one question asked in a real headless browser.

    .venv/bin/python -m app.quickstart --no-launch      # the sample library, once
    .venv/bin/python scripts/screenshot_app.py          # -> docs/screenshot.png (~1 min)

Needs Debian's chromium (apt-get install chromium) and Playwright (the dev extra). The answer is whatever the model
says: nothing is staged.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

from app.service import ChatService
from app.ui import build_ui
from store import Store
from store.home import DB_NAME
from voco import load_model

WAIT_MS = 120_000


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--home", type=Path, default=Path("voco_home"), help="the library (default: %(default)s)")
    p.add_argument("--model", default="default", help="the model the library was ingested with")
    p.add_argument("--video", default="bikes", help="a word of the video's file name (default: %(default)s)")
    p.add_argument("--question", default="When does the car appear?")
    p.add_argument("--out", type=Path, default=Path("docs/screenshot.png"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("needs Debian's chromium (apt-get install chromium)")
    if not (args.home / DB_NAME).exists():
        sys.exit(f"{args.home}: no library here; run `python -m app.quickstart --no-launch` first")
    from playwright.sync_api import sync_playwright

    store = Store.open(args.home)
    service = ChatService(store, load_model(args.model), model_name=args.model)
    with tempfile.TemporaryDirectory() as thumbs:
        demo = build_ui(service, Path(thumbs))
        _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(url)
                page.locator("#video-picker input").click()
                page.get_by_role("option", name=re.compile(re.escape(args.video))).first.click()
                page.locator("#timeline img").first.wait_for(timeout=WAIT_MS)
                page.locator("#question textarea").fill(args.question)
                page.locator("#ask").click()
                page.locator("#stats").get_by_text("cache tokens").wait_for(timeout=WAIT_MS)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out))
                answer = page.locator("#chat .message").last.inner_text().strip()
                browser.close()
        finally:
            demo.close()
            store.close()
    print(f"{args.out}: {args.question!r} -> {answer!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
