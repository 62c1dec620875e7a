"""End to end in a real headless browser: open the page, pick a video, ask, see a streamed answer."""

import os
import shutil
from pathlib import Path

import pytest

from app.service import ChatService
from app.ui import build_ui

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")]
SCREENSHOT = Path(os.environ.get("VOCO_SCREENSHOT", "app_screenshot.png"))


def test_pick_a_video_ask_and_see_the_answer(library, store, tmp_path):
    _, model = library
    service = ChatService(store, model, model_name="tiny", upload_dir=tmp_path / "uploads")
    demo = build_ui(service, tmp_path)
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    video = service.videos()[0]
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.locator("#video-picker input").click()
            page.get_by_role("option", name=f"{video.id} · ").first.click()
            page.get_by_text("segments of").first.wait_for(timeout=20_000)  # the info line of the picked video
            page.locator("#question textarea").fill("What shape appears first?")
            page.locator("#ask").click()
            stats = page.locator("#stats")
            stats.get_by_text("cache tokens").wait_for(timeout=60_000)
            bubbles = page.locator("#chat .message")
            assert bubbles.count() >= 2
            assert "What shape appears first?" in bubbles.first.inner_text()
            answer = bubbles.last.inner_text().strip()
            assert answer
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            browser.close()
    finally:
        demo.close()
    assert SCREENSHOT.stat().st_size > 10_000
