"""End to end in a real headless browser: open the page, pick a video, ask, see a streamed answer."""

import os
import shutil
from pathlib import Path

import pytest

from app.service import ChatService
from app.ui import build_ui
from ingest.run import ingest_paths
from tests.fixtures.videos import pattern_frames, write_video

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")]
SCREENSHOT = Path(os.environ.get("VOCO_SCREENSHOT", "app_screenshot.png"))


def test_pick_a_video_ask_and_see_the_answer(library, own_home, tmp_path):
    _, model = library
    wide = write_video(tmp_path / "wide 16x9.mp4", pattern_frames(30, height=180, width=320), fps=10)
    (result,) = ingest_paths([wide], model=model, model_name="tiny", store=own_home).files
    service = ChatService(own_home, model, model_name="tiny", upload_dir=tmp_path / "uploads")
    demo = build_ui(service, tmp_path)
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    video = service.video(result.video_id)
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
            thumbs = page.locator("#timeline img")
            thumbs.first.wait_for(timeout=20_000)
            assert thumbs.count() == video.num_segments
            # each 16:9 thumbnail is shown whole (letterboxed in its cell), not cropped to the cell
            shown = thumbs.first.evaluate("e => [e.naturalWidth, e.naturalHeight, getComputedStyle(e).objectFit]")
            assert shown[0] * 9 == shown[1] * 16 and shown[2] == "contain", shown
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
