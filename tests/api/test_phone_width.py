"""Every web page at phone width (390 x 844 in Chromium): nothing runs off the right edge,
so the page never scrolls sideways.

"Every page" is the app's own list of HTML page routes, not a list kept here: the test
signs in as an admin (who sees the most), starts a playground, follows the links on the
pages it visits and checks one page for each route; a route it cannot reach by a link
needs an entry in EXAMPLES, and the test fails until it has one, so a page added later is
checked too. Pages are checked signed in; the sign-in and sign-up forms signed out.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.routing import APIRoute
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page

from labyard.api.app import create_app
from labyard.services import Labyard
from labyard.settings import Settings
from tests.api.conftest import Account, Server
from tests.api.test_authz import all_routes
from tests.conftest import IMAGES_DIR, REPO

WIDTH, HEIGHT = 390, 844
PASSWORD = "correct horse battery"
NOT_PAGES = ("/api/", "/p/", "/s/", "/static/", "/metrics", "/healthz")
"""The JSON API, machines' own web servers (private and shared ports), files, operations."""
SIGNED_OUT = {"/login", "/signup"}
"""Pages that send a signed-in visitor elsewhere: checked signed out."""
EXAMPLES: dict[str, str] = {
    "/teams/join/{code}": "/teams/join/ABCDEFGH",  # an unknown code: the page says so
    "/classes/join/{code}": "/classes/join/ABCDEF",  # likewise
    "/classes/{class_id}/watch/{account_id}": "/classes/cl_000000000000/watch/1",
    "/lti/courses/{course_id}": "/lti/courses/1",  # courses come from an LMS launch
}
"""Concrete URLs for routes no visited page links to (a page that says "not found" is a
page too); the admin's own team and class are reached by links."""


def team_and_class(admin: Account) -> None:
    """A team (three seats, paid by hand) and a running class, so their pages are real."""
    body = {"plan": "premium", "interval": "monthly", "seats": 3}
    order = admin.api("POST", "/api/billing/checkout", json=body)
    assert order.status_code == 201, order.text
    paid = admin.api("POST", f"/api/admin/orders/{order.json()['order_id']}/mark-paid")
    assert paid.status_code == 200, paid.text
    now = datetime.now(UTC)
    room = {
        "title": "Phone-width workshop",
        "content": ["linux"],
        "seats": 3,
        "starts_at": (now - timedelta(minutes=1)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
        "guests": True,
    }
    created = admin.api("POST", "/api/classes", json=room)
    assert created.status_code == 201, created.text


def page_routes() -> list[str]:
    """The path of every GET route that renders an HTML page, from the app itself."""
    data_dir = Path(tempfile.mkdtemp(prefix="labyard-routes-"))
    settings = Settings(data_dir, IMAGES_DIR, f"sqlite:///{data_dir}/labyard.db")
    labyard = Labyard(settings)
    try:
        app = create_app(labyard, reconcile_interval_s=None)
        return sorted(
            path
            for path, route in all_routes(app)
            if isinstance(route, APIRoute)
            and not route.include_in_schema
            and "GET" in (route.methods or set())
            and not path.startswith(NOT_PAGES)
        )
    finally:
        labyard.close()


def pattern(route: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", route)
    regex = "".join(
        ("[^/]+" if not p.endswith(":path}") else ".+") if p.startswith("{") else re.escape(p)
        for p in parts
    )
    return re.compile(f"^{regex}$")


def admin_account(server: Server, name: str = "phone-admin") -> Account:
    email = f"{name}-{uuid.uuid4().hex[:6]}@example.com"
    env = {**os.environ, "LABYARD_DATA_DIR": str(server.data_dir)}
    env.pop("LABYARD_DATABASE_URL", None)
    created = subprocess.run(
        [str(REPO / ".venv/bin/labyard"), "admin", "create-user", email, "--role", "admin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    client = server.client()
    login = client.post("/api/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return Account(email, PASSWORD, client)


@pytest.fixture
def phone(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    yield context
    context.close()


def overflow(page: Page, url: str) -> dict[str, Any] | None:
    """How wide the page at `url` is, or None when the route answers something else than
    HTML (a JSON document such as a JWKS, a file): not a page."""
    response = page.goto(url)
    assert response is not None, url
    if "text/html" not in response.headers.get("content-type", ""):
        return None
    page.wait_for_load_state("networkidle")
    found: dict[str, Any] = page.evaluate(
        """() => ({
            scrollWidth: document.documentElement.scrollWidth,
            innerWidth: window.innerWidth,
            status: document.title,
            culprits: [...document.querySelectorAll("body *")]
                .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)
                .slice(0, 5)
                .map(e => `${e.tagName.toLowerCase()}.${e.className}`),
        })"""
    )
    return found


def links(page: Page, base: str) -> list[str]:
    hrefs: list[str] = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    return [h.split("#")[0] for h in hrefs if h.startswith(base)]


def test_no_page_scrolls_sideways_at_390_px(server: Server, phone: Any) -> None:
    routes = page_routes()
    assert {"/", "/catalog", "/playgrounds/{playground_id}", "/account"} <= set(routes)
    admin = admin_account(server)
    playground = admin.start("linux")
    team_and_class(admin)
    try:
        page = phone.new_page()
        for out in sorted(SIGNED_OUT):
            result = overflow(page, server.url + out)
            assert result is not None and result["scrollWidth"] <= WIDTH, f"{out}: {result}"
        phone.add_cookies(
            [{"name": k, "value": v, "url": server.url} for k, v in admin.cookies.items()]
        )
        todo = [f"{server.url}/", f"{server.url}/playgrounds/{playground['id']}"]
        todo += [server.url + r for r in routes if "{" not in r and r not in SIGNED_OUT]
        todo += [server.url + url for url in EXAMPLES.values()]
        checked: dict[str, str] = {}  # route -> the URL checked for it
        wide: dict[str, Any] = {}
        seen: set[str] = set()
        not_pages: set[str] = set()
        while todo:
            url = todo.pop(0)
            path = urlsplit(url).path
            route = next((r for r in routes if pattern(r).match(path)), None)
            if url in seen or route is None or route in checked or route in SIGNED_OUT:
                continue
            seen.add(url)
            try:
                result = overflow(page, url)
            except PlaywrightError as exc:  # e.g. a redirect loop: a broken page is wrong too
                wide[url] = str(exc).splitlines()[0]
                page.close()
                page = phone.new_page()  # the failed navigation may still be under way
                continue
            checked[route] = url
            if result is None:
                not_pages.add(route)
                continue
            if result["scrollWidth"] > WIDTH:
                wide[url] = result
            todo += links(page, server.url)
        assert wide == {}, f"pages wider than {WIDTH} px: {wide}"
        missing = set(routes) - set(checked) - SIGNED_OUT
        assert missing == set(), f"no page checked for {missing}: add them to EXAMPLES"
        assert len(checked) - len(not_pages) >= 12
    finally:
        admin.destroy_all()


def test_a_long_email_fits_the_desktop_top_bar(server: Server, browser: Any) -> None:
    """At a laptop's width an admin's top bar, with a long email, stays inside the window:
    its links wrap onto another row, and the email is cut with an ellipsis (the whole one in
    its tooltip)."""
    admin = admin_account(server, "a-very-long-name.for-an-instructor-of-the-department")
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    try:
        context.add_cookies(
            [{"name": k, "value": v, "url": server.url} for k, v in admin.cookies.items()]
        )
        page = context.new_page()
        for path in ("/", "/catalog", "/account", "/admin/orders"):
            result = overflow(page, server.url + path)
            assert result is not None and result["scrollWidth"] <= 1024, f"{path}: {result}"
            bar = page.locator("header.topbar").bounding_box()
            sign_out = page.locator("header.topbar button.link").bounding_box()
            assert bar is not None and sign_out is not None, path
            assert sign_out["x"] + sign_out["width"] <= bar["x"] + bar["width"], f"{path}: cut"
            who = page.locator("a.who")
            title = who.get_attribute("title") or ""
            assert title.startswith(f"{admin.email} · "), title
            cut = who.evaluate("e => e.scrollWidth > e.clientWidth")
            assert cut, f"{path}: the email is shown whole, the test's email is not long"
    finally:
        context.close()
