"""The web UI in a real browser (Debian's chromium, headless): sign up, start `linux` from the
catalog, use the terminal, reload and find the same shell."""

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
TERMINAL_TIMEOUT_MS = 20_000


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    yield context.new_page()
    context.close()


def terminal_rows(page: Page) -> Any:
    """The visible terminal's rows (xterm's DOM renderer: one div per row)."""
    return page.locator(".terminal-pane:not([hidden]) .xterm-rows > div")


def type_command(page: Page, command: str) -> None:
    page.locator(".terminal-pane:not([hidden]) .xterm").click()
    page.keyboard.type(command)
    page.keyboard.press("Enter")


def test_sign_up_start_type_reload(server: Server, page: Page) -> None:
    browser_sign_up(page, server)
    page.goto(f"{server.url}/catalog")
    page.locator('.card[data-playground="linux"] button[type=submit]').click()
    page.wait_for_url(re.compile(r"/playgrounds/[a-z0-9]+$"), timeout=START_TIMEOUT_MS)
    playground_id = page.url.rsplit("/", 1)[1]
    try:
        expect(terminal_rows(page).filter(has_text=PROMPT).first).to_be_visible(
            timeout=TERMINAL_TIMEOUT_MS
        )
        expect(page.locator(".terminal-pane:not([hidden]) .overlay")).to_be_hidden()
        type_command(page, "echo $((6*7))")
        answer = terminal_rows(page).filter(has_text=re.compile(r"^\s*42\s*$"))
        expect(answer).to_have_count(1, timeout=TERMINAL_TIMEOUT_MS)
        type_command(page, "ls --color=always / | head -4; echo héllo ✓")
        expect(terminal_rows(page).filter(has_text="héllo ✓")).to_have_count(
            2, timeout=TERMINAL_TIMEOUT_MS
        )  # the typed line and the output
        page.screenshot(path=SCREENSHOTS / "labyard-playground.png")
        type_command(page, "seq -f 'line-%g' 1 120")  # more than a screen: some scroll off
        last_line = terminal_rows(page).filter(has_text=re.compile(r"^line-120\s*$"))
        expect(last_line).to_have_count(1, timeout=TERMINAL_TIMEOUT_MS)

        page.reload()
        # Same screen after the reload (tmux redraws it) ...
        expect(last_line).to_have_count(1, timeout=TERMINAL_TIMEOUT_MS)
        page.screenshot(path=SCREENSHOTS / "labyard-playground-reloaded.png")
        # ... with what scrolled off before the reload back in the scrollback ...
        page.evaluate("() => window.labyard.terminals.get('linux').term.scrollToTop()")
        expect(terminal_rows(page).filter(has_text="echo $((6*7))")).to_have_count(
            1, timeout=TERMINAL_TIMEOUT_MS
        )
        expect(answer).to_have_count(1)
        expect(terminal_rows(page).filter(has_text=re.compile(r"^line-1\s*$"))).to_have_count(1)
        # ... and the same shell, whose history has the command.
        type_command(page, "history | tail -4")
        in_history = terminal_rows(page).filter(has_text=re.compile(r"\d+\s+echo \$\(\(6\*7"))
        expect(in_history.first).to_be_visible(timeout=TERMINAL_TIMEOUT_MS)
    finally:
        page.evaluate(
            """id => fetch(`/api/playgrounds/${id}`, {method: "DELETE", headers:
            {"X-CSRF-Token": document.cookie.match(/labyard_csrf=([^;]*)/)[1]}})""",
            playground_id,
        )


def start_linux(page: Page, server: Server) -> None:
    """Sign up, start `linux` from the catalog and wait for its prompt."""
    browser_sign_up(page, server)
    page.goto(f"{server.url}/catalog")
    page.locator('.card[data-playground="linux"] button[type=submit]').click()
    page.wait_for_url(re.compile(r"/playgrounds/[a-z0-9]+$"), timeout=START_TIMEOUT_MS)
    prompt = terminal_rows(page).filter(has_text=PROMPT).first
    expect(prompt).to_be_visible(timeout=TERMINAL_TIMEOUT_MS)


def test_copy_and_paste(server: Server, page: Page) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    start_linux(page, server)
    page.locator(".terminal-pane:not([hidden]) .xterm").click()
    page.evaluate("() => navigator.clipboard.writeText('echo pasted-$((3+4))')")
    page.keyboard.press("Control+v")
    page.keyboard.press("Enter")
    expect(terminal_rows(page).filter(has_text=re.compile(r"^pasted-7\s*$"))).to_have_count(
        1, timeout=TERMINAL_TIMEOUT_MS
    )
    # Ctrl+C copies a selection (and does not interrupt) ...
    page.evaluate("() => window.labyard.terminals.get('linux').term.selectAll()")
    page.keyboard.press("Control+c")
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert "pasted-7" in copied
    # ... and interrupts when nothing is selected.
    page.keyboard.press("Control+c")
    expect(terminal_rows(page).filter(has_text=re.compile(r"# \^C\s*$"))).to_have_count(
        1, timeout=TERMINAL_TIMEOUT_MS
    )


def test_dropped_connection_and_buttons(server: Server, page: Page) -> None:
    start_linux(page, server)
    overlay = page.locator(".terminal-pane:not([hidden]) .overlay")
    # A dropped connection shows the overlay, then the terminal is back by itself.
    page.evaluate("() => window.labyard.terminals.get('linux').ws.close()")
    expect(overlay).to_contain_text("reconnecting")
    expect(overlay).to_be_hidden(timeout=TERMINAL_TIMEOUT_MS)
    type_command(page, "echo back-$((1+1))")
    expect(terminal_rows(page).filter(has_text=re.compile(r"^back-2\s*$"))).to_have_count(1)

    # Extend past the free plan's hour: the API's refusal is shown.
    page.click("[data-action=extend]")
    expect(page.locator("#status-msg")).to_contain_text("plan allows")

    page.click("[data-action=stop]")
    expect(page.locator("#state")).to_have_text("stopped", timeout=START_TIMEOUT_MS)
    expect(overlay).to_contain_text("waiting for it to run again", timeout=TERMINAL_TIMEOUT_MS)
    expect(terminal_rows(page).filter(has_text="back-2").first).to_be_visible()  # not wiped
    page.screenshot(path=SCREENSHOTS / "labyard-playground-stopped.png")

    page.click("[data-action=restart]")
    expect(page.locator("#state")).to_have_text("running", timeout=START_TIMEOUT_MS)
    expect(overlay).to_be_hidden(timeout=TERMINAL_TIMEOUT_MS)
    type_command(page, "echo restarted-$((2+2))")
    expect(terminal_rows(page).filter(has_text=re.compile(r"^restarted-4\s*$"))).to_have_count(
        1, timeout=TERMINAL_TIMEOUT_MS
    )

    page.goto(f"{server.url}/playgrounds")
    expect(page.locator(".list-item")).to_have_count(1)
    page.screenshot(path=SCREENSHOTS / "labyard-my-playgrounds.png")
    page.locator(".list-item a.button").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("[data-action=destroy]")
    page.wait_for_url(f"{server.url}/playgrounds", timeout=START_TIMEOUT_MS)
    expect(page.locator(".empty")).to_be_visible()


def test_one_tab_per_machine(server: Server, page: Page) -> None:
    browser_sign_up(page, server)
    page.goto(f"{server.url}/catalog")
    page.locator('.card[data-playground="linux-cluster"] button[type=submit]').click()
    page.wait_for_url(re.compile(r"/playgrounds/[a-z0-9]+$"), timeout=START_TIMEOUT_MS)
    # A terminal tab per machine (each with its editor tab beside it: test_editor_browser.py)
    terminal_tabs = page.locator(".tab:not(.tab-editor)")
    expect(terminal_tabs).to_have_text(["node-01", "node-02", "node-03"])
    expect(page.locator(".tab-editor")).to_have_count(3)
    # The page's script selects the first tab when it has wired the clicks: wait for that.
    first = page.locator(".tab:not(.tab-editor)[data-machine=node-01]")
    expect(first).to_have_attribute("aria-selected", "true")
    page.click(".tab:not(.tab-editor)[data-machine=node-02]")
    expect(page.locator("#term-node-02")).to_be_visible()
    expect(page.locator("#term-node-01")).to_be_hidden()
    expect(terminal_rows(page).filter(has_text="root@node-02").first).to_be_visible(
        timeout=TERMINAL_TIMEOUT_MS
    )
    type_command(page, "ping -c1 -W2 node-03 >/dev/null && echo reached-$((9-6))")
    expect(terminal_rows(page).filter(has_text=re.compile(r"^reached-3\s*$"))).to_have_count(
        1, timeout=TERMINAL_TIMEOUT_MS
    )
    page.screenshot(path=SCREENSHOTS / "labyard-cluster.png")


def test_pages_look_right(server: Server, page: Page) -> None:
    page.goto(f"{server.url}/")
    expect(page.locator("h1")).to_contain_text("Real Linux machines")
    page.screenshot(path=SCREENSHOTS / "labyard-landing.png")
    browser_sign_up(page, server)
    page.goto(f"{server.url}/catalog")
    expect(page.locator(".card")).not_to_have_count(0)
    page.screenshot(path=SCREENSHOTS / "labyard-catalog.png")
