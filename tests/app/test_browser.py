"""End to end in a real headless browser (Debian's `chromium`, driven by Playwright): load the page, pick a
video, ask, see the answer and its stats, read the timeline, search moments, open a hit, upload a video and
cancel it.

Screenshots of each step are test artefacts: $VOCO_ARTIFACTS/browser/ (else the test session's temporary
folder). Without chromium the tests skip, saying why; with VOCO_REQUIRE_BROWSER=1 (CI, .ci/run) that is a
failure, as VOCO_REQUIRE_POSTGRES is for PostgreSQL.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path

import pytest

from app.search import WEAK_LABEL, find_moments
from app.service import ChatService
from app.ui import build_ui
from ingest.run import ingest_paths
from store import Store
from tests.app.conftest import new_video
from tests.fixtures.videos import pattern_frames, write_video

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LONG_SEGMENTS = 15
"""The timeline whose labels were cut off (issue 26)."""
WAIT_MS = 60_000


def chromium_or_skip() -> str:
    """The chromium executable; a skip when there is none (a failure under VOCO_REQUIRE_BROWSER=1)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    reason = "" if chromium else "needs Debian's chromium (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "needs playwright (pip install -e '.[dev]')"
    if reason:
        if os.environ.get("VOCO_REQUIRE_BROWSER") == "1":
            pytest.fail(f"VOCO_REQUIRE_BROWSER=1 but the browser test cannot run: {reason}")
        pytest.skip(reason)
    return chromium


@pytest.fixture(scope="module")
def browser():
    chromium = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    root = os.environ.get("VOCO_ARTIFACTS")
    folder = (Path(root) if root else tmp_path_factory.mktemp("artifacts")) / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def app(browser, library, tmp_path_factory):
    """The app over a copy of the test library plus a 16:9 video of `LONG_SEGMENTS` segments: (url, service, id)."""
    root, model = library
    tmp = tmp_path_factory.mktemp("browser_app")
    shutil.copytree(root / "home", tmp / "home")
    store = Store.open(tmp / "home")
    wide = write_video(tmp / "wide 16x9.mp4", pattern_frames(10 * LONG_SEGMENTS, height=180, width=320), fps=10)
    (result,) = ingest_paths([wide], model=model, model_name="tiny", store=store).files
    service = ChatService(store, model, model_name="tiny", upload_dir=tmp / "home" / "uploads")
    demo = build_ui(service, tmp)
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    yield url, service, result.video_id
    demo.close()
    store.close()


@pytest.fixture
def page(browser, app):
    url, _, _ = app
    opened = browser.new_page(viewport={"width": 1400, "height": 1000})
    opened.goto(url)
    yield opened
    opened.close()


def pick(page, video_id: int) -> None:
    page.locator("#video-picker input").click()
    page.get_by_role("option", name=f"{video_id} · ").first.click()
    page.get_by_text("segments of").first.wait_for(timeout=WAIT_MS)  # the info line of the picked video


def clipped_captions(page) -> list[str]:
    """The timeline captions not shown whole (their text wider or taller than their box)."""
    return page.locator("#timeline .caption-label").evaluate_all(
        "labels => labels.filter(l => l.scrollWidth > l.clientWidth || l.scrollHeight > l.clientHeight)"
        ".map(l => l.textContent)")


def selected_thumbnail(page) -> str:
    """The aria label of the timeline's selected thumbnail: "Thumbnail 5 of 15"."""
    selected = page.locator("#timeline .thumbnail-item.selected").first
    selected.wait_for(timeout=WAIT_MS)
    return selected.get_attribute("aria-label")


def test_pick_a_video_ask_and_read_the_answer_and_the_timeline(page, app, artifacts):
    _, service, video_id = app
    video = service.video(video_id)
    pick(page, video_id)
    thumbs = page.locator("#timeline img")
    thumbs.first.wait_for(timeout=WAIT_MS)
    assert thumbs.count() == video.num_segments == LONG_SEGMENTS
    # each 16:9 thumbnail is shown whole (letterboxed in its cell), not cropped to the cell
    shown = thumbs.first.evaluate("e => [e.naturalWidth, e.naturalHeight, getComputedStyle(e).objectFit]")
    assert shown[0] * 9 == shown[1] * 16 and shown[2] == "contain", shown
    captions = page.locator("#timeline .caption-label")
    assert captions.nth(LONG_SEGMENTS - 1).inner_text() == "0:14"  # where the segment starts
    assert clipped_captions(page) == []

    page.locator("#question textarea").fill("What shape appears first?")
    page.locator("#ask").click()
    page.locator("#stats").get_by_text("cache tokens").wait_for(timeout=WAIT_MS)
    bubbles = page.locator("#chat .message")
    assert bubbles.count() >= 2
    assert "What shape appears first?" in bubbles.first.inner_text()
    assert bubbles.last.inner_text().strip()
    assert f"{LONG_SEGMENTS}/{LONG_SEGMENTS} segments" in page.locator("#stats").inner_text()
    # the answer's segments are marked: longer captions, still read whole (they were cut off: issue 26), also in
    # the smaller cells of a narrower window (there they wrap)
    captions.first.get_by_text("used").wait_for(timeout=WAIT_MS)
    assert clipped_captions(page) == []
    page.screenshot(path=str(artifacts / "1-answer.png"), full_page=True)
    page.set_viewport_size({"width": 1000, "height": 1000})
    assert clipped_captions(page) == []
    page.set_viewport_size({"width": 1400, "height": 1000})

    page.locator("#timeline .thumbnail-item").nth(3).click()  # the segment's number and span, under the timeline
    page.locator("#moment").get_by_text("segment #3 · 0:03-0:04").wait_for(timeout=WAIT_MS)
    page.screenshot(path=str(artifacts / "2-thumbnail.png"), full_page=True)
    assert (artifacts / "1-answer.png").stat().st_size > 10_000


def test_a_moment_search_hit_opens_its_video_and_segment(page, app, artifacts):
    _, service, _ = app
    page.get_by_text("Moment search").click()
    page.locator("#search-box textarea").fill("a red circle")
    page.locator("#search-box textarea").press("Enter")
    rows = page.locator("#search-hits [role=row]").filter(has=page.locator("[role=gridcell]"))  # not the header
    rows.first.wait_for(timeout=WAIT_MS)
    hits = find_moments(service.moments, "a red circle", 10)
    assert rows.count() == len(hits)
    cells = [[c.strip() for c in rows.nth(i).locator("[role=gridcell]").all_inner_texts()] for i in range(len(hits))]
    assert [(int(c[0]), int(c[2])) for c in cells] == [(h["video_id"], h["segment"]) for h in hits]
    assert [c[-1] for c in cells] == [WEAK_LABEL if h["weak"] else "good" for h in hits]  # weak matches marked
    page.locator("#search-note").get_by_text(re.compile("Click a moment|No good match")).wait_for(timeout=WAIT_MS)
    page.screenshot(path=str(artifacts / "3-search.png"), full_page=True)

    # a hit in another video (nothing is picked yet), then one in the video the picker is on now
    same = next(i for i, h in enumerate(hits) if i and h["video_id"] == hits[0]["video_id"])
    for shot, row in enumerate((0, same), start=4):
        hit = hits[row]
        rows.nth(row).locator("[role=gridcell]").nth(1).click()
        video = service.video(hit["video_id"])
        page.locator("#moment").get_by_text(f"segment #{hit['segment']} · ").wait_for(timeout=WAIT_MS)
        assert page.locator("#video-picker input").input_value().startswith(f"{video.id} · ")
        position = service.timeline_position(video.id, hit["segment"])
        assert selected_thumbnail(page) == f"Thumbnail {position + 1} of {video.num_segments}"
        start = page.locator("#moment strong").inner_text()
        assert page.locator("#question textarea").input_value() == f"What happens at {start}?"
        page.screenshot(path=str(artifacts / f"{shot}-hit.png"), full_page=True)


def test_an_upload_can_be_cancelled_from_the_page(page, app, artifacts, tmp_path, monkeypatch):
    _, service, _ = app
    before = service.counts()
    compress, release = service.model.compress, threading.Event()

    def held_compress(*args, **kwargs):  # the first batch waits until Cancel was clicked
        assert release.wait(WAIT_MS / 1000)
        return compress(*args, **kwargs)

    monkeypatch.setattr(service.model, "compress", held_compress)
    source = new_video(tmp_path / "holiday.mp4", 20, seed=61)  # 3 batches: the cancel lands after the first
    try:
        page.locator("#upload input[type=file]").set_input_files(str(source))
        status = page.locator("#upload-status")
        status.get_by_text("holiday.mp4").wait_for(timeout=WAIT_MS)
        assert "⚠️" not in status.inner_text(), status.inner_text()
        page.locator("#cancel-upload").click()
        status.get_by_text("cancelling").wait_for(timeout=WAIT_MS)
    finally:
        release.set()
    status.get_by_text("nothing of it is kept").wait_for(timeout=WAIT_MS)
    assert status.inner_text().startswith("⏹️ holiday.mp4: cancelled")
    assert not page.locator("#cancel-upload").is_visible()
    page.screenshot(path=str(artifacts / "6-upload-cancelled.png"), full_page=True)
    assert service.counts() == before
    assert not [v for v in service.store.list_videos() if Path(v.path).name == "holiday.mp4"]
