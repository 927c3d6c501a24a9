"""A class in real browsers (Debian's chromium, headless), one context per person: an
instructor creates a class in the web form, three learners join by code (two signed in, one
as a guest with a display name), one starts the challenge from the class page and solves it
in the real machine's terminal, the board shows it within 2 s, and a broadcast reaches all
three learners within 2 s (the solver on the challenge's page, the others on the class
page). Every class page is also checked at 390 px: nothing scrolls sideways.

Playwright's sync API runs its own event loop in the thread that starts it; the scenario
runs in a thread of its own, so no loop is left behind for later pytest-asyncio tests."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    ViewportSize,
    expect,
    sync_playwright,
)

from tests.api.conftest import CHROMIUM, CHROMIUM_ARGS, Server, browser_sign_up
from tests.api.learn_server import learn_server
from tests.conftest import REPO

PASSWORD = "correct horse battery"
PROMPT = re.compile(r"root@\S+:~#")
START_TIMEOUT_MS = 60_000
CHECK_TIMEOUT_MS = 5_000
LIVE_MS = 2_000
"""The promise: a passing check on the board, a broadcast on the learners' pages."""
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with learn_server() as found:
        yield found


def instructor_cookies(server: Server) -> list[dict[str, str]]:
    email = f"teach-{uuid.uuid4().hex[:6]}@example.com"
    env = {**os.environ, "LABYARD_DATA_DIR": str(server.data_dir)}
    env.pop("LABYARD_DATABASE_URL", None)
    made = subprocess.run(
        [str(REPO / ".venv/bin/labyard"), "admin", "create-user", email, "--role", "instructor"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    with server.client() as client:
        login = client.post("/api/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        return [{"name": k, "value": v, "url": server.url} for k, v in client.cookies.items()]


def no_sideways_scroll(page: Page, url: str) -> None:
    page.goto(url)
    page.wait_for_load_state("domcontentloaded")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{url} is {width} px wide at {PHONE['width']} px"


def create_class(teacher: Page, server: Server) -> tuple[str, str]:
    teacher.goto(f"{server.url}/classes/new")
    teacher.fill("input[name=title]", "Monday workshop")
    teacher.fill("textarea[name=content]", "challenges/touch-done\nlinux")
    teacher.fill("input[name=seats]", "5")
    teacher.check("input[name=guests]")
    teacher.click("#new-class button[type=submit]")
    teacher.wait_for_url(re.compile(r"/classes/cl_[0-9a-f]+/board$"))
    class_id = teacher.url.rstrip("/").split("/")[-2]
    return class_id, teacher.locator(".join-code").first.inner_text().strip()


def join_signed_in(context: BrowserContext, server: Server, code: str) -> Page:
    page = context.new_page()
    browser_sign_up(page, server)
    page.goto(f"{server.url}/classes")
    page.fill("#code", code.lower())  # codes are case-insensitive
    page.click("#join-code button[type=submit]")
    page.click("#join-button")
    page.wait_for_url(re.compile(r"/classes/cl_[0-9a-f]+$"))
    return page


def join_as_guest(context: BrowserContext, server: Server, code: str) -> Page:
    page = context.new_page()
    page.goto(f"{server.url}/classes/join/{code}")
    page.fill("#guest-form input[name=name]", "Grace (guest)")
    page.click("#guest-form button[type=submit]")
    page.wait_for_url(re.compile(r"/classes/cl_[0-9a-f]+$"))
    return page


def solve_from_the_class_page(page: Page) -> None:
    page.click('button.start[data-key="challenges/touch-done"]')
    page.wait_for_url(re.compile(r"/challenges/touch-done$"), timeout=START_TIMEOUT_MS)
    rows = page.locator(".terminal-pane:not([hidden]) .xterm-rows > div")
    expect(rows.filter(has_text=PROMPT).first).to_be_visible(timeout=START_TIMEOUT_MS)
    task = page.locator('.task[data-task="done"]')
    expect(task).to_have_attribute("data-state", "running", timeout=CHECK_TIMEOUT_MS)
    page.locator(".terminal-pane:not([hidden]) .xterm").click()
    page.keyboard.type("touch /tmp/done")
    page.keyboard.press("Enter")
    expect(task).to_have_attribute("data-state", "completed", timeout=CHECK_TIMEOUT_MS)


def scenario(browser: Browser, server: Server) -> None:
    teacher_context = browser.new_context(viewport=DESKTOP)
    teacher_context.add_cookies(instructor_cookies(server))  # type: ignore[arg-type]
    teacher = teacher_context.new_page()
    class_id, code = create_class(teacher, server)
    assert len(code) == 6

    # The solver works at desktop width (the terminal sits below the text on a phone).
    learners = [browser.new_context(viewport=DESKTOP)]
    learners += [browser.new_context(viewport=PHONE) for _ in range(2)]
    pages = [
        join_signed_in(learners[0], server, code),
        join_signed_in(learners[1], server, code),
        join_as_guest(learners[2], server, code),
    ]
    board = teacher.locator("#board tbody")
    expect(board.locator("tr[data-account]")).to_have_count(3, timeout=CHECK_TIMEOUT_MS)
    expect(board.locator('td[data-online="yes"]')).to_have_count(3, timeout=CHECK_TIMEOUT_MS)
    expect(board).to_contain_text("Grace (guest)")

    solver = pages[0]
    solve_from_the_class_page(solver)
    # The learner's page turned green: the board follows within 2 s.
    expect(board.locator('td.completed[data-task="challenges/touch-done#done"]')).to_have_count(
        1, timeout=LIVE_MS
    )
    expect(board.locator("td.share").first).to_have_text("33 %")

    # The solver is still on the challenge's page, where it works: broadcasts show there too.
    assert "/challenges/" in solver.url, solver.url
    teacher.fill("#broadcast-message", "Break: back at 11:00")
    teacher.click("#broadcast-form button[type=submit]")
    for page in pages:
        expect(page.locator(".broadcast")).to_have_text("Break: back at 11:00", timeout=LIVE_MS)
    solver.goto(f"{server.url}/classes/{class_id}")  # and on the class page
    expect(solver.locator("#running")).to_contain_text("challenges/touch-done")
    expect(solver.locator(".broadcast")).to_have_text("Break: back at 11:00", timeout=LIVE_MS)

    phone_learner = learners[1].new_page()
    for url in (f"/classes/{class_id}", "/classes", "/classes/join", f"/classes/join/{code}"):
        no_sideways_scroll(phone_learner, server.url + url)
    phone_teacher = browser.new_context(viewport=PHONE)
    phone_teacher.add_cookies(instructor_cookies(server))  # type: ignore[arg-type]
    check = phone_teacher.new_page()
    for url in ("/classes/new", "/classes", f"/classes/{class_id}/board"):
        no_sideways_scroll(check, server.url + url)

    teacher.once("dialog", lambda dialog: dialog.accept())
    teacher.click("#end-class")
    expect(teacher.locator("#class-state")).to_have_text("ended", timeout=CHECK_TIMEOUT_MS)
    for page in pages[1:]:
        expect(page.locator("#class-state")).to_have_text("ended", timeout=CHECK_TIMEOUT_MS)


def in_chromium(play: Callable[[Browser, Server], None], server: Server, shots: str) -> None:
    """`play` in a Chromium of its own, on a thread of its own (Playwright's sync API will
    not run inside pytest's event loop); a failure leaves screenshots `/tmp/<shots>-N.png`."""

    def run() -> None:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            try:
                play(browser, server)
            except Exception:
                for index, context in enumerate(browser.contexts):
                    for page in context.pages:
                        page.screenshot(path=f"/tmp/{shots}-{index}.png")
                raise
            finally:
                browser.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(run).result()


def test_an_instructor_and_three_learners(server: Server) -> None:
    in_chromium(scenario, server, "class-browser")
