"""An author's learning page in a real browser (Debian's chromium, headless): the task panel
beside the terminal shows the check's output live, Re-run counts up, a solution step solves
the first task; the text's `::open-file` button opens /etc/motd in the editor tab."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.api.conftest import Server
from tests.api.learn_server import learn_server
from tests.api.test_devtools import CONTENT, KEY, MARKER, PASSWORD, sign_in_as

SCREENSHOTS = Path("/tmp")
PROMPT = re.compile(r"root@\S+:~#")
START_TIMEOUT_MS = 60_000
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with learn_server(CONTENT) as found:
        yield found


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    yield context.new_page()
    context.close()


def test_the_author_panel_and_open_file(server: Server, page: Page) -> None:
    author = sign_in_as(server, "author")
    page.goto(f"{server.url}/login")
    page.fill("input[name=email]", author.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.goto(f"{server.url}/{KEY}")
    page.click("#start")
    rows = page.locator(".terminal-pane:not([hidden]) .xterm-rows > div")
    expect(rows.filter(has_text=PROMPT).first).to_be_visible(timeout=START_TIMEOUT_MS)
    try:
        first = page.locator('.devtools-task[data-task="first"]')
        check = first.locator('.devtools-check[data-kind="run"]')
        expect(check).to_contain_text(f"stdout-{MARKER}", timeout=TIMEOUT_MS)
        expect(check).to_contain_text(f"stderr-{MARKER}")
        expect(check).to_contain_text("exit 1")
        expect(first).to_contain_text("GREETING=hello-from-env")
        second = page.locator('.devtools-task[data-task="second"]')
        expect(second).to_contain_text("waits for: first")
        counted = first.locator(".devtools-runs")
        runs = counted.inner_text()  # how often it ran so far
        first.get_by_role("button", name="Re-run").click()
        expect(counted).not_to_have_text(runs, timeout=TIMEOUT_MS)
        page.screenshot(path=SCREENSHOTS / "labyard-devtools.png")

        page.locator('.devtools-step[data-step="0"]').get_by_role("button", name="Run").click()
        expect(first).to_have_attribute("data-state", "completed", timeout=TIMEOUT_MS)
        expect(second).to_have_attribute("data-state", "running", timeout=TIMEOUT_MS)

        page.click("button.open-file")
        editor = page.locator(".editor-pane:not([hidden])")
        expect(editor.locator(".editor-path")).to_have_text("/etc/motd", timeout=TIMEOUT_MS)
        expect(editor.locator(".cm-content")).to_contain_text("Debian")
        page.screenshot(path=SCREENSHOTS / "labyard-learn-editor.png")
    finally:
        page.evaluate(
            """() => fetch(`/api/attempts/${window.labyard.attempt().id}`, {method: "DELETE",
            headers: {"X-CSRF-Token": document.cookie.match(/labyard_csrf=([^;]*)/)[1]}})"""
        )
