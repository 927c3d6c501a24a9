"""The HTML pages against a real server: rendering, sign-in redirects, CSRF on forms,
and nobody seeing anyone else's playground."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from labyard.api import web
from labyard.errors import RuntimeFailure
from tests.api.conftest import Server

PASSWORD = "correct horse battery"


def _csrf_from(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def _form_signup(client: httpx.Client, email: str, next_url: str = "") -> httpx.Response:
    page = client.get("/signup")
    form = {"csrf": _csrf_from(page), "email": email, "password": PASSWORD, "next": next_url}
    return client.post("/signup", data=form)


@pytest.fixture
def browser_like(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def test_landing_renders_and_sets_a_csrf_cookie(browser_like: httpx.Client) -> None:
    page = browser_like.get("/")
    assert page.status_code == 200
    assert "labyard" in page.text and "Create an account" in page.text
    assert page.cookies.get("labyard_csrf")


@pytest.mark.parametrize(
    ("path", "login"),
    [
        ("/catalog", "/login?next=%2Fcatalog"),
        ("/playgrounds", "/login?next=%2Fplaygrounds"),
        ("/playgrounds/abc123?tab=x", "/login?next=%2Fplaygrounds%2Fabc123%3Ftab%3Dx"),
    ],
)
def test_signed_out_visitors_go_to_login(browser_like: httpx.Client, path: str, login: str) -> None:
    response = browser_like.get(path)
    assert response.status_code == 303 and response.headers["location"] == login


def test_form_signup_signs_in_and_follows_next(browser_like: httpx.Client) -> None:
    response = _form_signup(browser_like, "form-signup@example.com", "/catalog")
    assert response.status_code == 303 and response.headers["location"] == "/catalog"
    catalog = browser_like.get("/catalog")
    assert catalog.status_code == 200
    assert "Linux" in catalog.text and ">Start</button>" in catalog.text
    assert "form-signup@example.com" in catalog.text


def test_forms_without_the_csrf_field_are_refused(server: Server) -> None:
    with server.client() as client:
        client.get("/signup")  # the cookie alone is not enough: the field must match it
        form = {"email": "no-csrf@example.com", "password": PASSWORD}
        assert client.post("/signup", data=form).status_code == 403
        assert client.post("/login", data=form).status_code == 403
        wrong = client.post("/login", data={**form, "csrf": "forged"})
        assert wrong.status_code == 403 and "CSRF" in wrong.text


def test_form_login_and_logout(server: Server) -> None:
    account = server.signup(PASSWORD)
    with server.client() as client:
        page = client.get("/login?next=/playgrounds")
        form = {"csrf": _csrf_from(page), "email": account.email, "next": "/playgrounds"}
        bad = client.post("/login", data={**form, "password": "wrong password"})
        assert bad.status_code == 401 and "wrong email or password" in bad.text

        good = client.post("/login", data={**form, "password": PASSWORD})
        assert good.status_code == 303 and good.headers["location"] == "/playgrounds"
        assert client.get("/playgrounds").status_code == 200

        logout = client.get("/logout")
        assert client.post("/logout", data={"csrf": _csrf_from(logout)}).status_code == 303
        assert client.get("/playgrounds").status_code == 303


def test_next_never_leaves_the_site(browser_like: httpx.Client) -> None:
    response = _form_signup(browser_like, "open-redirect@example.com", "//evil.example/x")
    assert response.headers["location"] == "/playgrounds"


def test_start_form_and_playground_pages(server: Server) -> None:
    with server.client() as owner, server.client() as stranger:
        _form_signup(owner, "page-owner@example.com")
        _form_signup(stranger, "page-stranger@example.com")
        catalog = owner.get("/catalog")
        refused = owner.post("/playgrounds", data={"name": "linux"})
        assert refused.status_code == 403

        started = owner.post(
            "/playgrounds", data={"name": "linux", "csrf": _csrf_from(catalog)}, timeout=120
        )
        assert started.status_code == 303, started.text
        path = started.headers["location"]
        playground_id = path.rsplit("/", 1)[1]
        try:
            page = owner.get(path)
            assert page.status_code == 200
            assert 'data-machine="linux"' in page.text and 'data-action="destroy"' in page.text
            assert f'data-id="{playground_id}"' in page.text

            mine = owner.get("/playgrounds")
            assert f"/playgrounds/{playground_id}" in mine.text and "running" in mine.text

            theirs = stranger.get(path)
            assert theirs.status_code == 404 and "not yours" in theirs.text
            assert stranger.get("/playgrounds").text.count(playground_id) == 0
            assert owner.get("/playgrounds/nosuch").status_code == 404
        finally:
            token = owner.cookies.get("labyard_csrf", "")
            owner.delete(f"/api/playgrounds/{playground_id}", headers={"X-CSRF-Token": token})


def test_xterm_is_served_from_node_modules(browser_like: httpx.Client) -> None:
    for path in (
        "/static/vendor/xterm/lib/xterm.mjs",
        "/static/vendor/xterm/css/xterm.css",
        "/static/vendor/xterm-addon-fit/addon-fit.mjs",
        "/static/terminal.js",
    ):
        response = browser_like.get(path)
        assert response.status_code == 200, path
    assert "javascript" in browser_like.get("/static/terminal.js").headers["content-type"]


def test_the_server_refuses_to_start_without_xterm(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(web, "NODE_MODULES", tmp_path)
    with pytest.raises(RuntimeFailure, match=r"run scripts/setup\.sh"):
        web.mount_static(FastAPI())
