"""Teams in a real browser (Debian's chromium, headless): a member opens the invite link,
joins, and holds a seat; the team's admin sees the seat used on the board and removes the
member, whose seat page is gone at once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from labyard.services import Labyard
from labyard.settings import Settings
from tests.api.conftest import Server, browser_sign_up
from tests.conftest import IMAGES_DIR

PASSWORD = "correct horse battery"


@pytest.fixture
def pages(browser: Browser) -> Iterator[tuple[Page, Page]]:
    """Two separate browsers' worth of cookies: the admin's and the member's."""
    contexts = [browser.new_context(viewport={"width": 1280, "height": 800}) for _ in range(2)]
    yield contexts[0].new_page(), contexts[1].new_page()
    for context in contexts:
        context.close()


def paid_team(server: Server) -> tuple[str, str, dict[str, Any]]:
    """A buyer's paid seats order (2 seats, paid by invoice): (email, team id, admin view)."""
    buyer = server.signup(PASSWORD)
    bought = buyer.api(
        "POST", "/api/billing/checkout", json={"plan": "premium", "interval": "monthly", "seats": 2}
    )
    assert bought.status_code == 201, bought.text
    settings = Settings(
        data_dir=server.data_dir,
        images_dir=IMAGES_DIR,
        database_url=f"sqlite:///{server.data_dir}/labyard.db",
    )
    labyard = Labyard(settings)  # the server's database, as `labyard admin` opens it
    try:
        operator = labyard.accounts.create_user(
            f"operator-{bought.json()['order_id']}@example.com", PASSWORD, role="admin"
        )
        labyard.billing.orders.mark_paid(operator, bought.json()["order_id"])
    finally:
        labyard.close()
    (team,) = buyer.api("GET", "/api/teams").json()
    return buyer.email, team["id"], buyer.api("GET", f"/api/teams/{team['id']}").json()


def sign_in(page: Page, server: Server, email: str) -> None:
    page.goto(f"{server.url}/login?next=/teams")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{server.url}/teams")


def test_join_by_invite_link_and_removal_from_the_board(
    server: Server, pages: tuple[Page, Page]
) -> None:
    admin, member = pages
    buyer_email, team_id, team = paid_team(server)
    browser_sign_up(member, server)
    member.goto(team["invite_url"].replace("http://testserver", server.url))
    expect(member.locator(".seats")).to_have_text("2 of 2 seats free")
    member.get_by_role("button", name=re.compile("^Join ")).click()
    member.wait_for_url(f"{server.url}/teams/{team_id}")
    expect(member.locator("#my-seat")).to_contain_text("You hold a seat: the premium plan")
    expect(member.locator(".join-code")).to_have_count(0)  # members do not see the code

    sign_in(admin, server, buyer_email)
    expect(admin.locator(f'.teams a[href="/teams/{team_id}"]')).to_be_visible()
    admin.goto(f"{server.url}/teams/{team_id}")
    expect(admin.locator("#seats .used")).to_have_text("1")
    expect(admin.locator("#seats .free")).to_have_text("1")
    expect(admin.locator(".join-code")).to_have_text(team["join_code"])
    seated = admin.locator(
        ".members .list-item", has=admin.locator(".badge", has_text=re.compile("^seat$"))
    )
    seated.get_by_role("button", name="Remove").click()
    admin.wait_for_url(f"{server.url}/teams/{team_id}")
    expect(admin.locator("#seats .used")).to_have_text("0")

    member.reload()
    expect(member.locator("h1")).to_have_text("404")
    member.goto(f"{server.url}/account")
    expect(member.locator(".plan")).to_have_text("Free")
