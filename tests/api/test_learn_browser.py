"""A challenge in a real browser (Debian's chromium, headless): sign up, Start, work in the
terminal, watch the task turn green and the solution appear; answer a user-input task.

Playwright's sync API runs its own event loop in the thread that starts it; each test runs
it in a thread of its own, so no loop is left behind for later pytest-asyncio tests."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.api.conftest import CHROMIUM, CHROMIUM_ARGS, Server, browser_sign_up
from tests.api.learn_server import learn_server

SCREENSHOTS = Path("/tmp")
PROMPT = re.compile(r"root@\S+:~#")
START_TIMEOUT_MS = 60_000
CHECK_TIMEOUT_MS = 5_000
"""Checks loop about once a second: a finished task turns green within a few seconds."""


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with learn_server() as found:
        yield found


def in_browser(scenario: Callable[[Page], None]) -> None:
    """Run `scenario` with a fresh page, in a thread of its own (see the module docstring)."""

    def run() -> None:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
                scenario(page)
            finally:
                browser.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(run).result()


def start(page: Page, server: Server, slug: str) -> None:
    browser_sign_up(page, server)
    page.goto(f"{server.url}/challenges/{slug}")
    page.click("#start")
    rows = page.locator(".terminal-pane:not([hidden]) .xterm-rows > div")
    expect(rows.filter(has_text=PROMPT).first).to_be_visible(timeout=START_TIMEOUT_MS)


def end_attempt(page: Page) -> None:
    page.evaluate(
        """() => fetch(`/api/attempts/${window.labyard.attempt().id}`, {method: "DELETE",
        headers: {"X-CSRF-Token": document.cookie.match(/labyard_csrf=([^;]*)/)[1]}})"""
    )


def test_solve_a_challenge_in_the_terminal(server: Server) -> None:
    def scenario(page: Page) -> None:
        start(page, server, "touch-done")
        task = page.locator('.task[data-task="done"]')
        rows = page.locator(".terminal-pane:not([hidden]) .xterm-rows > div")
        try:
            expect(task).to_have_attribute("data-state", "running", timeout=CHECK_TIMEOUT_MS)
            expect(page.locator("#solution")).to_be_hidden()
            page.click("pre[data-run] .code-button.run")  # Run: `ls -la /tmp` in the terminal
            expect(rows.filter(has_text="ls -la /tmp").first).to_be_visible()
            page.locator(".terminal-pane:not([hidden]) .xterm").click()
            page.keyboard.type("touch /tmp/done")
            page.keyboard.press("Enter")
            expect(task).to_have_attribute("data-state", "completed", timeout=CHECK_TIMEOUT_MS)
            expect(task.locator(".task-completed")).to_contain_text("There it is")
            expect(task.locator(".task-active")).to_be_hidden()
            expect(page.locator("#banner.banner-solved")).to_be_visible()
            expect(page.locator("#lab-count")).to_have_text("1/1 task")
            solution = page.locator("#solution")
            expect(solution).to_contain_text("touch /tmp/done", timeout=CHECK_TIMEOUT_MS)
            page.screenshot(path=SCREENSHOTS / "labyard-learn-solved.png")
            page.reload()  # back on the page: the attempt, its state and the solution
            expect(page.locator("#banner.banner-solved")).to_be_visible()
            expect(task).to_have_attribute("data-state", "completed")
            expect(solution).to_be_visible()
            expect(rows.filter(has_text="touch /tmp/done").first).to_be_visible(
                timeout=START_TIMEOUT_MS
            )
        finally:
            end_attempt(page)

    in_browser(scenario)


def test_user_input_task_shows_errors_then_completes(server: Server) -> None:
    def scenario(page: Page) -> None:
        start(page, server, "answer-input")
        task = page.locator('.task[data-task="answer"]')
        try:
            expect(task).to_have_attribute("data-state", "running", timeout=CHECK_TIMEOUT_MS)
            task.locator("input").fill("forty-two")
            task.locator("button").click()
            expect(task.locator(".task-error")).to_contain_text("not a valid answer")
            page.screenshot(path=SCREENSHOTS / "labyard-learn-input-error.png")
            task.locator("input").fill("42")
            task.locator("button").click()
            expect(task.locator(".task-error")).to_be_hidden()
            expect(task).to_have_attribute("data-state", "completed", timeout=CHECK_TIMEOUT_MS)
            expect(page.locator("#banner.banner-solved")).to_be_visible()
            expect(page.locator("#solution")).to_be_hidden()  # show_solution: never
        finally:
            end_attempt(page)

    in_browser(scenario)
