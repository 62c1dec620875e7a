"""The README's screenshot: the chat app (`python -m app`, as a user starts it) over the quickstart library, one
question asked in a real headless browser.

    .venv/bin/python -m app.quickstart --no-launch      # the sample library, once
    .venv/bin/python scripts/screenshot_app.py          # -> docs/screenshot.png (~1 min)

Needs Debian's chromium (apt-get install chromium) and Playwright (the dev extra). The answer is whatever the model
says: nothing is staged.
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from store.home import DB_NAME

WAIT_MS = 120_000
READY = re.compile(r"open (http://\S+)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--home", type=Path, default=Path("voco_home"), help="the library (default: %(default)s)")
    p.add_argument("--model", default="default", help="the model the library was ingested with")
    p.add_argument("--video", default="bikes", help="a word of the video's file name (default: %(default)s)")
    p.add_argument("--question", default="When does the car appear?")
    p.add_argument("--out", type=Path, default=Path("docs/screenshot.png"))
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(home: Path, model: str) -> tuple[subprocess.Popen, str]:
    """`python -m app` on a free port, and its address once it listens."""
    app = subprocess.Popen([sys.executable, "-m", "app", "--home", str(home), "--model", model,
                            "--port", str(free_port())], stdout=subprocess.PIPE, text=True)
    for line in app.stdout:
        ready = READY.search(line)
        if ready:
            return app, ready.group(1)
    app.wait()
    sys.exit(f"the app exited ({app.returncode}) before it listened")


def ask(url: str, chromium: str, video: str, question: str, out: Path) -> str:
    """Pick `video`, ask `question`, save the page as `out`; the answer shown."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.locator("#video-picker input").click()
        page.get_by_role("option", name=re.compile(re.escape(video))).first.click()
        page.locator("#timeline img").first.wait_for(timeout=WAIT_MS)
        page.locator("#question textarea").fill(question)
        page.locator("#ask").click()
        page.locator("#stats").get_by_text("cache tokens").wait_for(timeout=WAIT_MS)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        answer = page.locator("#chat .message").last.inner_text().strip()
        browser.close()
    return answer


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("needs Debian's chromium (apt-get install chromium)")
    if not (args.home / DB_NAME).exists():
        sys.exit(f"{args.home}: no library here; run `python -m app.quickstart --no-launch` first")
    app, url = start_app(args.home, args.model)
    try:
        answer = ask(url, chromium, args.video, args.question, args.out)
    finally:
        app.terminate()  # SIGTERM ends the app as Ctrl-C does
        app.wait(timeout=30)
    print(f"{args.out}: {args.question!r} -> {answer!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
