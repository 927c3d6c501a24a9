"""Looking over a learner's shoulder in real browsers (Debian's chromium, headless), one
context each: the learner joins a class and types in their class playground's terminal;
the instructor opens the learner's terminal from the board and sees what was typed; the
learner's banner shows within 2 s; what the instructor types reaches nothing until the
learner clicks "Let the instructor type", and nothing again once the keyboard is taken
back; the banner goes within 2 s of the view closing.

Like tests/classes/test_browser.py, the scenario runs in a thread of its own (Playwright's
sync API keeps an event loop in the thread that starts it)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Locator, Page, ViewportSize, expect

from tests.api.conftest import Server
from tests.api.learn_server import learn_server
from tests.classes.test_browser import (
    create_class,
    in_chromium,
    instructor_cookies,
    join_signed_in,
    no_sideways_scroll,
)

PROMPT = re.compile(r"root@\S+:~#")
START_TIMEOUT_MS = 60_000
SHOW_MS = 5_000
BANNER_MS = 2_000
"""The promise: the learner sees the banner within 2 s of a look starting (and ending)."""
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with learn_server() as found:
        yield found


def rows(page: Page, where: str) -> Locator:
    return page.locator(f"{where} .xterm-rows > div")


def type_into(page: Page, where: str, text: str) -> None:
    page.locator(f"{where} .xterm").click()
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def scenario(browser: Browser, server: Server) -> None:
    teacher_context = browser.new_context(viewport=DESKTOP)
    teacher_context.add_cookies(instructor_cookies(server))  # type: ignore[arg-type]
    teacher = teacher_context.new_page()
    class_id, code = create_class(teacher, server)

    learner = join_signed_in(browser.new_context(viewport=DESKTOP), server, code)
    learner.click('button.start[data-key="linux"]')
    learner.wait_for_url(re.compile(r"/playgrounds/[a-z0-9]+$"), timeout=START_TIMEOUT_MS)
    pane = ".terminal-pane:not([hidden])"
    expect(rows(learner, pane).filter(has_text=PROMPT).first).to_be_visible(
        timeout=START_TIMEOUT_MS
    )
    type_into(learner, pane, "echo shoulder-$((20+22))")
    expect(rows(learner, pane).filter(has_text=re.compile(r"^shoulder-42\s*$"))).to_have_count(
        1, timeout=SHOW_MS
    )

    # From the board to the learner's terminal: what they typed is there, read-only.
    teacher.goto(f"{server.url}/classes/{class_id}/board")
    teacher.locator("#board tbody tr[data-account] a.watch").first.click()
    teacher.wait_for_url(re.compile(rf"/classes/{class_id}/watch/\d+$"))
    learner_id = teacher.url.rsplit("/", 1)[1]
    view = "#watch-terminal"
    expect(rows(teacher, view).filter(has_text=re.compile(r"^shoulder-42\s*$"))).to_have_count(
        1, timeout=SHOW_MS
    )
    banner = learner.locator(f"{pane} .look-banner")
    expect(banner).to_contain_text("is watching", timeout=BANNER_MS)
    expect(teacher.locator("#watch-state")).to_contain_text("read-only")
    learner.screenshot(path="/tmp/labyard-watched.png")
    teacher.screenshot(path="/tmp/labyard-watch.png")

    # The view cannot type ...
    type_into(teacher, view, "echo from-teacher-$((5+5))")
    type_into(learner, pane, "echo sync-$((3+4))")
    expect(rows(learner, pane).filter(has_text=re.compile(r"^sync-7\s*$"))).to_have_count(
        1, timeout=SHOW_MS
    )
    expect(rows(learner, pane).filter(has_text="from-teacher")).to_have_count(0)

    # ... until the learner lets the instructor type; then their keys reach the shell.
    learner.locator(f"{pane} .look-grant").click()
    expect(teacher.locator("#watch-state")).to_contain_text("lets you type", timeout=BANNER_MS)
    expect(banner).to_contain_text("may type", timeout=BANNER_MS)
    type_into(teacher, view, "echo granted-$((1+1))")
    expect(rows(learner, pane).filter(has_text=re.compile(r"^granted-2\s*$"))).to_have_count(
        1, timeout=SHOW_MS
    )
    learner.locator(f"{pane} .look-grant").click()  # "Take the keyboard back"
    expect(teacher.locator("#watch-state")).to_contain_text("read-only", timeout=BANNER_MS)
    type_into(teacher, view, "echo revoked-$((4+4))")
    type_into(learner, pane, "echo sync-$((8+1))")
    expect(rows(learner, pane).filter(has_text=re.compile(r"^sync-9\s*$"))).to_have_count(
        1, timeout=SHOW_MS
    )
    expect(rows(learner, pane).filter(has_text="revoked-8")).to_have_count(0)

    # The view closes: the banner goes.
    teacher.goto(f"{server.url}/classes/{class_id}/board")
    expect(banner).to_have_count(0, timeout=BANNER_MS)
    looks = teacher.request.get(f"{server.url}/api/classes/{class_id}/looks").json()
    assert [(x["input_granted"], x["live"]) for x in looks] == [(True, False)]

    phone = browser.new_context(viewport=PHONE)
    phone.add_cookies(instructor_cookies(server))  # type: ignore[arg-type]
    no_sideways_scroll(phone.new_page(), teacher.url.replace("/board", f"/watch/{learner_id}"))


def test_the_instructor_looks_over_a_learners_shoulder(server: Server) -> None:
    in_chromium(scenario, server, "watch-browser")
