"""The dashboard in a real browser (Debian's chromium, headless): an admin opens
/admin/analytics for the known world of data.py; the uPlot charts are drawn and every
headline figure and table row shown is the API's. At phone width nothing scrolls sideways."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from labyard.services import Labyard
from labyard.settings import Settings
from tests.analytics.data import FROM, PASSWORD, TO, fill
from tests.api.conftest import Server, browser, server  # noqa: F401 (the live server, chromium)
from tests.conftest import IMAGES_DIR

SCREENSHOTS = Path("/tmp")


@pytest.fixture(scope="module")
def admin_email(server: Server) -> str:  # noqa: F811
    """The world of data.py in the live server's database, and an admin to look at it."""
    settings = Settings(
        data_dir=server.data_dir,
        images_dir=IMAGES_DIR,
        database_url=f"sqlite:///{server.data_dir}/labyard.db",
    )
    labyard = Labyard(settings)
    try:
        fill(labyard)
        return labyard.accounts.create_user("owner@example.org", PASSWORD, role="admin").email
    finally:
        labyard.close()


@pytest.fixture(params=[(1280, 800), (390, 844)], ids=["desktop", "phone"])
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Page]:  # noqa: F811
    width, height = request.param
    context = browser.new_context(viewport={"width": width, "height": height})
    yield context.new_page()
    context.close()


def sign_in(page: Page, server: Server, email: str) -> None:  # noqa: F811
    page.goto(f"{server.url}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("form.form button[type=submit]")
    page.wait_for_url(f"{server.url}/playgrounds")


def test_the_dashboard_draws_the_apis_figures(
    server: Server,  # noqa: F811
    admin_email: str,
    page: Page,
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    sign_in(page, server, admin_email)
    page.goto(f"{server.url}/admin/analytics?from={FROM}&to={TO}")
    page.wait_for_selector("body[data-analytics=ready]", timeout=20_000)
    width = page.viewport_size["width"] if page.viewport_size else 0
    page.screenshot(path=SCREENSHOTS / f"labyard-analytics-{width}.png", full_page=True)
    assert errors == []

    # The charts: uPlot's canvases, drawn at a real size.
    sizes = page.eval_on_selector_all(
        ".chart .uplot canvas", "cs => cs.map(c => [c.width, c.height, c.clientWidth])"
    )
    assert len(sizes) == 2, sizes
    assert all(w > 0 and h > 0 and shown > 0 for w, h, shown in sizes), sizes

    report: dict[str, Any] = page.evaluate(
        """q => fetch(`/api/admin/analytics?${q}`).then(r => r.json())""",
        f"from={FROM}&to={TO}",
    )
    assert report["launches"] == 8  # the hand computation's (tests/analytics/data.py)
    shown = {
        box.get_attribute("data-figure"): box
        for box in page.locator("[data-figure]").element_handles()
    }
    assert len(shown) == 10
    for key, box in shown.items():
        value = box.query_selector(".value")
        assert value is not None
        assert page.evaluate("v => JSON.parse(v.dataset.value)", value) == report[key], key
    text = {key: (box.query_selector(".value") or box).inner_text() for key, box in shown.items()}
    assert text["launches"] == str(report["launches"])
    assert text["active_accounts"] == str(report["active_accounts"])
    assert text["free_play_share"] == f"{report['free_play_share'] * 100:.1f} %"
    assert text["mrr"].split("\n") == [f"{v / 100:.2f} {c}" for c, v in report["mrr"].items()]
    assert "▲ +5 vs 3" in (shown["launches"].inner_text())

    for table, column in (("top_playgrounds", "name"), ("top_content", "key")):
        cells = page.locator(f"[data-table={table}] tbody tr td:first-child").all_inner_texts()
        assert cells == [row[column] for row in report[table]], table
        link = page.locator(f"[data-table={table}] a.csv").get_attribute("href")
        assert link == f"/api/admin/analytics/{table}.csv?from={FROM}&to={TO}"

    # The page's own content fits (the top bar is base.html's, checked on every page by
    # tests/api/test_phone_width.py).
    assert page.evaluate("document.querySelector('main').scrollWidth") <= width


def test_presets_change_the_period(
    server: Server,  # noqa: F811
    admin_email: str,
    page: Page,
) -> None:
    sign_in(page, server, admin_email)
    page.goto(f"{server.url}/admin/analytics?from={FROM}&to={TO}")
    page.wait_for_selector("body[data-analytics=ready]", timeout=20_000)
    page.click("button[data-days='7']")
    page.wait_for_function(
        "() => window.labyardAnalytics.report && window.labyardAnalytics.report.period.days == 7"
    )
    assert "from=" in page.url and page.input_value("#from") != FROM
    assert page.locator(".chart .uplot").count() == 2  # redrawn, not added
