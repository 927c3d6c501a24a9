"""A start's notice in a real browser (Debian's chromium, headless), on the fake driver: when
the playground runs outside the learner's region, the catalog's Start shows the sentence on
the playground's page, once, and a challenge's Start above its terminals; when it runs in
their region, nothing is shown.

The driver is told where it "placed" a start (`Behaviour.placed_in`, as a cluster's driver
reports it), so the server runs in this process: real uvicorn in a thread of its own, on a
Labyard whose driver the tests hold. Learners here come from 127.0.0.1, a country nobody
knows, so their region is the regions file's `default_region`: India.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Page, expect

from labyard.api.app import create_app
from labyard.runtime.fake import Behaviour, FakeDriver
from labyard.services import Labyard
from labyard.settings import Settings
from tests.api.conftest import Server, browser_sign_up
from tests.api.learn_server import FIXTURE
from tests.conftest import IMAGES_DIR, dismantle

REGIONS = """\
default_region: india
regions:
  india: {title: India}
  europe: {title: Europe, group: eu}
"""
NOTICE = (
    "The servers of region India are full or unreachable, so this playground runs in "
    "Europe: it may feel slower."
)
ELSEWHERE = Behaviour(placed_in=("default", "eu"))
START_TIMEOUT_MS = 30_000
SCREENSHOTS = Path("/tmp")


@dataclass
class Live:
    server: Server
    driver: FakeDriver


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    """The app on the fake driver behind real uvicorn, in a thread with its own event loop
    (Playwright's sync API holds the main thread's)."""
    data_dir = Path(tempfile.mkdtemp(prefix="labyard-notice-"))
    (data_dir / "regions.yaml").write_text(REGIONS)
    settings = Settings(
        data_dir=data_dir,
        images_dir=IMAGES_DIR,
        database_url=f"sqlite:///{data_dir}/labyard.db",
        driver="fake",
    )
    labyard = Labyard(settings, content_dir=FIXTURE)
    assert isinstance(labyard.driver, FakeDriver)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(labyard, reconcile_interval_s=None)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws_ping_interval=None))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)  # polling a condition under a deadline
        yield Live(Server(f"http://127.0.0.1:{port}", data_dir), labyard.driver)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        with ThreadPoolExecutor(1) as pool:  # not on the main thread: Playwright's loop runs there
            pool.submit(asyncio.run, dismantle(labyard)).result()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def page(browser: Any, live: Live) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    yield context.new_page()
    context.close()
    live.driver.behaviour = Behaviour()


def start_from_catalog(page: Page, live: Live) -> None:
    browser_sign_up(page, live.server)
    page.goto(f"{live.server.url}/catalog")
    page.locator('.card[data-playground="linux"] button[type=submit]').click()
    page.wait_for_url(re.compile(r"/playgrounds/[a-z0-9]+$"), timeout=START_TIMEOUT_MS)


def test_a_start_elsewhere_says_so_on_the_playground_page_once(page: Page, live: Live) -> None:
    live.driver.behaviour = ELSEWHERE
    start_from_catalog(page, live)
    notice = page.locator("#start-notice[role=status]")
    expect(notice).to_be_visible()
    expect(notice).to_have_text(NOTICE)
    page.screenshot(path=str(SCREENSHOTS / "labyard-start-notice.png"))
    page.reload()  # said once: not again on the same page
    expect(page.locator(".tab").first).to_be_visible()
    expect(page.locator("#start-notice")).to_have_count(0)


def test_a_start_in_the_learners_region_says_nothing(page: Page, live: Live) -> None:
    start_from_catalog(page, live)
    expect(page.locator(".tab").first).to_be_visible()
    expect(page.locator("#start-notice")).to_have_count(0)
    assert NOTICE not in page.content()


def test_a_challenges_start_elsewhere_says_so_above_its_terminals(page: Page, live: Live) -> None:
    live.driver.behaviour = ELSEWHERE
    browser_sign_up(page, live.server)
    page.goto(f"{live.server.url}/challenges/touch-done")
    notice = page.locator("#lab-notice[role=status]")
    expect(notice).to_be_hidden()
    page.click("#start")
    expect(notice).to_be_visible(timeout=START_TIMEOUT_MS)
    expect(notice).to_have_text(NOTICE)
    expect(page.locator("#lab.live")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "labyard-start-notice-learn.png"))


def test_a_notice_cookie_set_by_another_page_is_not_shown(page: Page, live: Live) -> None:
    """Exposed ports may be served on sibling subdomains, whose pages can set cookies for
    this one: a notice cookie they made (unsigned, or signed for another playground) shows
    nothing. The control is the signed one the first test sees."""
    start_from_catalog(page, live)
    playground_id = page.url.rsplit("/", 1)[1]
    forged = "The servers are down: send your password to evil@example.org."
    for value in (f"0.{forged}", f"{'0' * 64}.{forged}"):
        page.context.add_cookies([{"name": "labyard_notice", "value": value, "url": page.url}])
        page.reload()
        expect(page.locator(".tab").first).to_be_visible()
        expect(page.locator("#start-notice")).to_have_count(0)
        assert "evil@example.org" not in page.content() and playground_id in page.url
