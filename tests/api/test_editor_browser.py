"""The editor tab in a real browser (Debian's chromium, headless): open /etc/motd, change
it, save, and `cat` it in the terminal tab of the same machine."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.api.conftest import Server, browser_sign_up

SCREENSHOTS = Path("/tmp")
PROMPT = re.compile(r"root@\S+:~#")
START_TIMEOUT_MS = 60_000
TIMEOUT_MS = 20_000
LINE = "Edited in the browser: héllo ✓"


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    yield context.new_page()
    context.close()


def rows(page: Page) -> Any:
    return page.locator(".terminal-pane:not([hidden]) .xterm-rows > div")


def test_open_change_save_and_cat_etc_motd(server: Server, page: Page) -> None:
    browser_sign_up(page, server)
    page.goto(f"{server.url}/catalog")
    page.locator('.card[data-playground="linux"] button[type=submit]').click()
    page.wait_for_url(re.compile(r"/playgrounds/[a-z0-9]+$"), timeout=START_TIMEOUT_MS)
    playground_id = page.url.rsplit("/", 1)[1]
    try:
        expect(rows(page).filter(has_text=PROMPT).first).to_be_visible(timeout=TIMEOUT_MS)
        page.click("#edit-tab-linux")
        editor = page.locator("#edit-linux")
        expect(editor.locator(".editor-dir")).to_have_value("/root", timeout=TIMEOUT_MS)
        editor.locator(".editor-dir").fill("/etc")
        editor.locator(".editor-dir").press("Enter")
        editor.locator('.editor-entry-name[data-name="motd"]').click()
        expect(editor.locator(".editor-path")).to_have_text("/etc/motd", timeout=TIMEOUT_MS)
        expect(editor.locator(".editor-status")).to_have_text("Opened /etc/motd")
        editor.locator(".cm-content").click()
        page.keyboard.press("Control+End")
        page.keyboard.type(f"\n{LINE}\n")
        expect(editor.locator(".editor-dirty")).to_be_visible()
        editor.locator("[data-editor-action=save]").click()
        expect(editor.locator(".editor-status")).to_have_text("Saved /etc/motd", timeout=TIMEOUT_MS)
        expect(editor.locator(".editor-dirty")).to_be_hidden()
        page.screenshot(path=SCREENSHOTS / "labyard-editor.png")

        page.click("#tab-linux")
        page.locator(".terminal-pane:not([hidden]) .xterm").click()
        page.keyboard.type("cat /etc/motd | tail -2")
        page.keyboard.press("Enter")
        expect(rows(page).filter(has_text=re.compile(rf"^{LINE}\s*$"))).to_have_count(
            1, timeout=TIMEOUT_MS
        )

        # A refusal is a message in the tab, not a broken page.
        page.click("#edit-tab-linux")
        editor.locator(".editor-dir").fill("/no/such/dir")
        editor.locator(".editor-dir").press("Enter")
        expect(editor.locator(".editor-status.error")).to_contain_text("no such file")
    finally:
        page.evaluate(
            """id => fetch(`/api/playgrounds/${id}`, {method: "DELETE", headers:
            {"X-CSRF-Token": document.cookie.match(/labyard_csrf=([^;]*)/)[1]}})""",
            playground_id,
        )
