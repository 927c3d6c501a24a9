"""Who may do what: every playground endpoint, HTTP and WebSocket, is the owner's alone.

User A starts a `linux` playground through the API (on the fake driver: its machine is a
process answering real SSH); user B then tries every endpoint with A's playground id (taken
from the OpenAPI spec and the app's routes, so a new endpoint is covered without editing
this file) and must get 404, exactly as for a playground that does not exist, while A's
playground stays as it was. Every order endpoint likewise: B gets
404 for A's order (403 under /api/admin, whatever the id). Every team endpoint and page: a
stranger gets 404, a member may read the team but gets 403 for what only its admins do.
Every class endpoint and page likewise: a stranger or another instructor gets 404, a
member may read the class but gets 403 for what only its instructor does.
Also: sign-in, CSRF, plan limits, login throttling, `labyard admin create-user`, /healthz
and /metrics.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import BaseRoute, WebSocketRoute
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from labyard.api.app import create_app
from labyard.services import Labyard, User
from labyard.settings import Settings
from tests.api.openapi_examples import body_for, fill, operations, path_params
from tests.conftest import IMAGES_DIR, REPO

PASSWORD = "a long enough password"
MARKER = "/root/written-by-someone-else"
# Endpoints under /api that answer without signing in; everything else there must 401.
PUBLIC = {
    ("POST", "/api/signup"),
    ("POST", "/api/login"),
    ("POST", "/api/tokens"),
    ("GET", "/api/catalog"),
    ("POST", "/api/billing/webhooks/stripe"),  # Stripe's, authenticated by its signature
    ("POST", "/api/classes/join/guest"),  # a class's guest: a display name, no account yet
    ("GET", "/api/pricing"),  # the prices for the caller's country, like the /pricing page
}
PUBLIC_READS_UNDER = "/api/content"  # the content folder (no answers in it), for anyone
# LTI 1.3 endpoints an LMS and its users' browsers call before anyone is signed in: the
# tool's public keys, the login initiation and the launch (authenticated by the platform's
# signed id_token, docs/lti.md). They are outside /api (LMSs are given fixed URLs), so the
# 401 walk above does not see them; test_lti_endpoints_... below walks every /lti route.
LTI_PUBLIC = {
    ("GET", "/lti/jwks"),
    ("GET", "/lti/login"),
    ("POST", "/lti/login"),
    ("POST", "/lti/launch"),
}
# Query parameters A's own reads need to succeed (B's requests get 404 without them too).
OWNER_READ_QUERIES = {
    "/api/playgrounds/{playground_id}/machines/{machine}/files/content": {"path": "/etc/hostname"},
}
# A's own reads that are 404 for A as well: the authors' task panel needs an attempt in the
# playground (tests/api/test_devtools.py covers its owner).
OWNER_READS_NOT_FOUND = {"/api/playgrounds/{playground_id}/devtools"}
# The WebSocket routes on a playground when this was written: the test fails if one
# vanishes, and checks any new one automatically.
EXPECTED_WEBSOCKETS = {
    "/api/playgrounds/{playground_id}/machines/{machine}/terminal",
    "/api/playgrounds/{playground_id}/machines/{machine}/ssh",
    "/p/{playground_id}/{machine}/{port}/{path:path}",
}


@dataclass(frozen=True)
class Account:
    user: User
    email: str
    token: str


@dataclass(frozen=True)
class World:
    a: Account
    b: Account
    playground_id: str
    machine: str
    share_token: str

    @property
    def params(self) -> dict[str, Any]:
        """Values for path parameters and body fields: all of them A's real ones."""
        return {
            "playground_id": self.playground_id,
            "machine": self.machine,
            "token": self.share_token,
            "port": 80,
            "path": "",
            "command": f"touch {MARKER}",
            "task": "a-task",  # the authors' task panel (devtools)
            "step": 0,
        }


def make_account(labyard: Labyard, role: str = "learner", plan: str = "free") -> Account:
    email = f"{role}-{secrets.token_hex(5)}@example.org"
    user = labyard.accounts.create_user(email, PASSWORD, role=role, plan=plan)
    return Account(user, email, labyard.accounts.issue(user, "api", "authz test"))


def api(app: FastAPI, token: str | None = None, address: str = "192.0.2.10") -> httpx.AsyncClient:
    """An in-process client; `address` is the client IP the server sees (login throttle)."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=headers, timeout=120
    )


def playground_operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    return [op for op in operations(app.openapi()) if "{playground_id}" in op[1]]


def all_routes(app: FastAPI) -> list[tuple[str, BaseRoute]]:
    """(full path, route) for every route, routers included (FastAPI may nest them)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes is flat already
        return [(getattr(r, "path", ""), r) for r in app.routes]
    return [(c.path or "", c.original_route) for c in iter_route_contexts(app.routes)]


def websocket_routes(app: FastAPI) -> set[str]:
    return {
        path
        for path, route in all_routes(app)
        if isinstance(route, WebSocketRoute | APIWebSocketRoute) and "{playground_id}" in path
    }


async def snapshot(app: FastAPI, world: World) -> dict[str, Any]:
    """What A sees of the playground: state, machines, expiry, share links."""
    async with api(app, world.a.token) as client:
        playground = await client.get(f"/api/playgrounds/{world.playground_id}")
        shares = await client.get(f"/api/playgrounds/{world.playground_id}/shares")
    assert playground.status_code == 200, playground.text
    assert shares.status_code == 200, shares.text
    return {"playground": playground.json(), "shares": shares.json()}


async def exec_as_a(app: FastAPI, world: World, command: str) -> dict[str, Any]:
    async with api(app, world.a.token) as client:
        r = await client.post(
            f"/api/playgrounds/{world.playground_id}/exec", json={"command": command}
        )
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def labyard(fake_labyard: Labyard) -> Labyard:
    """Who may do what is the services' and the API's business, not the machines': the
    fake driver runs these playgrounds (processes answering real SSH)."""
    return fake_labyard


@pytest.fixture(scope="module")
def app(labyard: Labyard) -> FastAPI:
    return create_app(labyard, reconcile_interval_s=None)


@pytest.fixture(scope="module")
async def world(labyard: Labyard, app: FastAPI) -> AsyncIterator[World]:
    a, b = make_account(labyard), make_account(labyard)
    async with api(app, a.token) as client:
        started = await client.post("/api/playgrounds", json={"name": "linux"})
        assert started.status_code == 201, started.text
        playground_id: str = started.json()["id"]
        try:
            machine: str = started.json()["machines"][0]["name"]
            share = await client.post(
                f"/api/playgrounds/{playground_id}/shares", json={"machine": machine, "port": 80}
            )
            assert share.status_code == 201, share.text
            yield World(a, b, playground_id, machine, share.json()["token"])
        finally:
            if playground_id in [p.id for p in await labyard.playgrounds.list()]:
                await asyncio.shield(labyard.playgrounds.destroy(playground_id))


@dataclass(frozen=True)
class LiveServer:
    url: str


@pytest.fixture(scope="module")
async def live_server(app: FastAPI) -> AsyncIterator[LiveServer]:
    """The same app behind real uvicorn, for WebSockets (ASGITransport does not do them)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", ws_ping_interval=None)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(15):
            while not server.started:
                assert not task.done(), "uvicorn stopped while starting"
                await asyncio.sleep(0.02)
        yield LiveServer(f"127.0.0.1:{port}")
    finally:
        server.should_exit = True
        async with asyncio.timeout(15):
            await task
        sock.close()


# -- every playground endpoint is the owner's --------------------------------------------


async def test_other_users_get_404_from_every_playground_endpoint(
    app: FastAPI, world: World
) -> None:
    spec = app.openapi()
    on_playgrounds = playground_operations(app)
    names = {f"{m} {p}" for m, p, _ in on_playgrounds}
    # Guard against an iteration that quietly finds nothing.
    assert {
        "GET /api/playgrounds/{playground_id}",
        "DELETE /api/playgrounds/{playground_id}",
        "POST /api/playgrounds/{playground_id}/exec",
    } <= names

    # A's own reads with the same values succeed: the ids below are real, not just wrong.
    async with api(app, world.a.token) as a_client:
        for method, path, _ in on_playgrounds:
            if method == "GET":
                r = await a_client.get(
                    fill(path, world.params), params=OWNER_READ_QUERIES.get(path)
                )
                expected = 404 if path in OWNER_READS_NOT_FOUND else 200
                assert r.status_code == expected, f"A: {method} {path}: {r.status_code} {r.text}"

    before = await snapshot(app, world)
    outcomes: dict[str, str] = {}
    async with api(app, world.b.token, address="192.0.2.11") as b_client:
        for method, path, operation in on_playgrounds:
            body = body_for(operation, spec, world.params)
            r = await b_client.request(method, fill(path, world.params), json=body)
            outcomes[f"{method} {path}"] = f"{r.status_code} {r.text[:200]}"
        # Routes outside the spec (web pages, port proxy) that take a playground id.
        for path, route in all_routes(app):
            if not isinstance(route, APIRoute) or route.include_in_schema:
                continue
            if "{playground_id}" not in path:
                continue
            for method in sorted((route.methods or set()) - {"HEAD", "OPTIONS"}):
                r = await b_client.request(method, fill(path, world.params), follow_redirects=True)
                outcomes[f"{method} {path} (no schema)"] = f"{r.status_code} {r.text[:200]}"

    assert len(outcomes) >= len(on_playgrounds)
    wrong = {k: v for k, v in outcomes.items() if not v.startswith("404 ")}
    assert wrong == {}, f"B reached A's playground: {wrong}"
    assert await snapshot(app, world) == before
    result = await exec_as_a(app, world, f"test -e {MARKER}; echo $?")
    assert result["stdout"].strip() == "1", "B's exec ran in A's machine"


async def test_signed_out_requests_get_401(app: FastAPI, world: World) -> None:
    spec = app.openapi()
    under_api = [op for op in operations(spec) if op[1].startswith("/api/")]
    listed = {(m, p) for m, p, _ in under_api}
    assert listed >= PUBLIC, f"public endpoints gone from the spec: {PUBLIC - listed}"
    private = [
        (m, p, o)
        for m, p, o in under_api
        if (m, p) not in PUBLIC and not (m == "GET" and p.startswith(PUBLIC_READS_UNDER))
    ]
    assert len(private) >= 10

    revoked = make_account(api_labyard(app))
    api_labyard(app).accounts.revoke(revoked.token)
    for credentials in (None, "not-a-token", revoked.token):
        outcomes: dict[str, int] = {}
        async with api(app, credentials) as client:
            for method, path, operation in private:
                # Other ids (of attempts, say) need no real value: nobody is signed in.
                values = {**{p: "x" for p in path_params(path)}, **world.params}
                body = body_for(operation, spec, values)
                r = await client.request(method, fill(path, values), json=body)
                outcomes[f"{method} {path}"] = r.status_code
                if r.status_code == 401:
                    assert r.json()["error"]["reason"] == "unauthenticated"
        wrong = {k: v for k, v in outcomes.items() if v != 401}
        assert wrong == {}, f"with credentials {credentials!r}: {wrong}"

    async with api(app) as client:
        assert (await client.get("/api/catalog")).status_code == 200


def api_labyard(app: FastAPI) -> Labyard:
    labyard: Labyard = app.state.labyard
    return labyard


async def test_cookie_sessions_need_the_csrf_header_and_tokens_do_not(
    app: FastAPI, world: World
) -> None:
    exec_url = f"/api/playgrounds/{world.playground_id}/exec"
    async with api(app, address="192.0.2.12") as browser:
        login = await browser.post(
            "/api/login", json={"email": world.a.email, "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        csrf = browser.cookies.get("labyard_csrf")
        assert csrf and browser.cookies.get("labyard_session")
        assert (await browser.get("/api/me")).status_code == 200  # reads need no header

        missing = await browser.post(exec_url, json={"command": "true"})
        assert missing.status_code == 403, missing.text
        assert missing.json()["error"]["reason"] == "csrf_failed"
        wrong = await browser.post(
            exec_url, json={"command": "true"}, headers={"X-CSRF-Token": csrf + "x"}
        )
        assert wrong.status_code == 403, wrong.text
        logout = await browser.post("/api/logout")
        assert logout.status_code == 403, logout.text

        right = await browser.post(
            exec_url, json={"command": "echo cookie"}, headers={"X-CSRF-Token": csrf}
        )
        assert right.status_code == 200, right.text
        assert right.json()["stdout"] == "cookie\n"
        # The session survived the refused logout.
        assert (await browser.get("/api/me")).json()["email"] == world.a.email

    async with api(app, world.a.token) as cli:
        r = await cli.post(exec_url, json={"command": "echo token"})
        assert r.status_code == 200, r.text
        assert r.json()["stdout"] == "token\n"


# -- every invoice endpoint is the buyer's -----------------------------------------------


async def test_other_users_never_see_an_accounts_invoices(app: FastAPI, labyard: Labyard) -> None:
    spec = app.openapi()
    buyer, other = make_account(labyard), make_account(labyard)
    operator = make_account(labyard, role="admin")
    details = {"name": "Buyer Secret GmbH", "address": "1 Hidden Way", "country": "DE"}
    async with api(app, buyer.token) as a_client, api(app, operator.token) as o:
        assert (await a_client.put("/api/billing/profile", json=details)).status_code == 200
        bought = await a_client.post(
            "/api/billing/checkout", json={"plan": "premium", "interval": "monthly"}
        )
        assert bought.status_code == 201, bought.text
        paid = await o.post(f"/api/admin/orders/{bought.json()['order_id']}/mark-paid")
        assert paid.status_code == 200, paid.text
        (invoice,) = (await a_client.get("/api/billing/invoices")).json()
        assert (await a_client.get(invoice["pdf"])).status_code == 200
        assert (await o.get(invoice["pdf"])).status_code == 200  # admins may
        before = (await a_client.get("/api/billing/invoices")).json()
    values = {"number": invoice["number"]}
    on_invoices = [op for op in operations(spec) if "{number}" in op[1]]
    assert {f"{m} {p}" for m, p, _ in on_invoices} >= {"GET /api/billing/invoices/{number}.pdf"}

    outcomes: dict[str, str] = {}
    async with api(app, other.token, address="192.0.2.14") as b_client:
        for method, path, operation in on_invoices:
            body = body_for(operation, spec, values)
            r = await b_client.request(method, fill(path, values), json=body)
            outcomes[f"{method} {path}"] = f"{r.status_code} {r.text[:200]}"
        for path in ("/api/billing/invoices", "/api/billing/profile", "/api/billing"):
            r = await b_client.get(path)
            outcomes[f"GET {path}"] = f"{r.status_code} {r.text}"
        admin = await b_client.get("/api/admin/invoices")
        outcomes["GET /api/admin/invoices"] = str(admin.status_code)
    wrong = {
        k: v
        for k, v in outcomes.items()
        if ("{number}" in k and not v.startswith("404 "))
        or ("{number}" not in k and (invoice["number"] in v or "Buyer Secret" in v))
    }
    assert wrong == {}, f"B reached A's invoice: {wrong}"
    assert outcomes["GET /api/admin/invoices"] == "403"
    async with api(app, buyer.token) as a_client:
        assert (await a_client.get("/api/billing/invoices")).json() == before


# -- every order endpoint is the buyer's -------------------------------------------------


async def test_other_users_never_see_an_accounts_orders(app: FastAPI, world: World) -> None:
    spec = app.openapi()
    async with api(app, world.a.token) as a_client:
        bought = await a_client.post(
            "/api/billing/checkout", json={"plan": "premium", "interval": "monthly"}
        )
        assert bought.status_code == 201, bought.text
        values = {**world.params, "order_id": bought.json()["order_id"]}
        before = (await a_client.get("/api/billing/orders")).json()
    on_orders = [op for op in operations(spec) if "{order_id}" in op[1]]
    names = {f"{m} {p}" for m, p, _ in on_orders}
    assert {
        "GET /api/billing/orders/{order_id}",
        "POST /api/admin/orders/{order_id}/mark-paid",
    } <= names

    outcomes: dict[str, str] = {}
    async with api(app, world.b.token, address="192.0.2.13") as b_client:
        for method, path, operation in on_orders:
            body = body_for(operation, spec, values)
            r = await b_client.request(method, fill(path, values), json=body)
            outcomes[f"{method} {path}"] = f"{r.status_code} {r.text[:200]}"
        for path in ("/api/billing/orders", "/api/billing", "/api/admin/orders"):
            r = await b_client.get(path)
            outcomes[f"GET {path}"] = f"{r.status_code} {r.text[:200]}"
    expected = {
        key: "403" if "/api/admin/" in key else "404"
        for key in outcomes
        if "{order_id}" in key or "/api/admin/" in key
    }
    wrong = {
        k: v for k, v in outcomes.items() if k in expected and not v.startswith(expected[k] + " ")
    }
    assert wrong == {}, f"B reached A's order: {wrong}"
    assert values["order_id"] not in outcomes["GET /api/billing/orders"]
    assert values["order_id"] not in outcomes["GET /api/billing"]
    async with api(app, world.a.token) as a_client:
        assert (await a_client.get("/api/billing/orders")).json() == before


# -- every team endpoint is its members' (and what changes it, its admins') ---------------


async def test_others_never_see_a_team_and_members_cannot_administer_it(
    app: FastAPI, labyard: Labyard
) -> None:
    spec = app.openapi()
    buyer, member, stranger = make_account(labyard), make_account(labyard), make_account(labyard)
    operator = make_account(labyard, role="admin")
    async with (
        api(app, buyer.token) as b,
        api(app, operator.token) as o,
        api(app, member.token) as m,
    ):
        bought = await b.post(
            "/api/billing/checkout", json={"plan": "premium", "interval": "monthly", "seats": 2}
        )
        assert bought.status_code == 201, bought.text
        paid = await o.post(f"/api/admin/orders/{bought.json()['order_id']}/mark-paid")
        assert paid.status_code == 200, paid.text
        (team,) = (await b.get("/api/teams")).json()
        code = (await b.get(f"/api/teams/{team['id']}")).json()["join_code"]
        assert (await m.post("/api/teams/join", json={"code": code})).status_code == 200
        before = (await b.get(f"/api/teams/{team['id']}")).json()
    values = {"team_id": team["id"], "account_id": member.user.id, "code": code}
    on_teams = [op for op in operations(spec) if "{team_id}" in op[1]]
    assert {
        "GET /api/teams/{team_id}",
        "DELETE /api/teams/{team_id}/members/{account_id}",
        "POST /api/teams/{team_id}/code",
    } <= {f"{m} {p}" for m, p, _ in on_teams}
    pages = [
        (method, path)
        for path, route in all_routes(app)
        if isinstance(route, APIRoute) and not route.include_in_schema and "{team_id}" in path
        for method in sorted((route.methods or set()) - {"HEAD", "OPTIONS"})
    ]
    assert ("GET", "/teams/{team_id}") in pages and len(pages) >= 4

    outcomes: dict[str, dict[str, str]] = {"stranger": {}, "member": {}}
    for who, account in (("stranger", stranger), ("member", member)):
        async with api(app, account.token, address="192.0.2.14") as client:
            client.cookies.set("labyard_csrf", "walk")
            for method, path, operation in on_teams:
                body = body_for(operation, spec, values)
                r = await client.request(method, fill(path, values), json=body)
                outcomes[who][f"{method} {path}"] = f"{r.status_code} {r.text[:200]}"
            for method, path in pages:
                form = {"csrf": "walk", "name": "taken over"} if method == "POST" else None
                r = await client.request(method, fill(path, values), data=form)
                outcomes[who][f"{method} {path} (page)"] = f"{r.status_code} {r.text[:100]}"
            seen = (await client.get("/api/teams")).json()
            outcomes[who]["GET /api/teams"] = f"200 {[t['id'] for t in seen]}"
    wrong = {k: v for k, v in outcomes["stranger"].items() if not v.startswith("404 ")}
    wrong.pop("GET /api/teams", None)
    assert wrong == {}, f"a stranger reached the team: {wrong}"
    assert team["id"] not in outcomes["stranger"]["GET /api/teams"]
    member_may = {"GET /api/teams/{team_id}", "GET /teams/{team_id} (page)", "GET /api/teams"}
    wrong = {
        k: v
        for k, v in outcomes["member"].items()
        if not v.startswith("200 " if k in member_may else "403 ")
    }
    assert wrong == {}, f"a member administered the team: {wrong}"
    async with api(app, buyer.token) as b:
        assert (await b.get(f"/api/teams/{team['id']}")).json() == before
    assert labyard.entitlements.effective(member.user.id).name == "premium"


# -- promo codes are the admins' ---------------------------------------------------------


async def test_learners_get_403_from_every_promo_code_endpoint(
    app: FastAPI, world: World, labyard: Labyard
) -> None:
    spec = app.openapi()
    operator = make_account(labyard, role="admin")
    async with api(app, operator.token) as admin_client:
        made = await admin_client.post("/api/admin/promos", json={"code": "AUTHZ", "percent": 5})
        assert made.status_code == 201, made.text
        before = (await admin_client.get("/api/admin/promos/AUTHZ")).json()
    on_promos = [op for op in operations(spec) if op[1].startswith("/api/admin/promos")]
    assert {f"{m} {p}" for m, p, _ in on_promos} >= {
        "POST /api/admin/promos",
        "GET /api/admin/promos",
        "GET /api/admin/promos/{code}",
        "POST /api/admin/promos/{code}/disable",
    }
    values = {**world.params, "code": "AUTHZ", "percent": 50}
    outcomes: dict[str, int] = {}
    async with api(app, world.b.token, address="192.0.2.15") as learner:
        for method, path, operation in on_promos:
            body = body_for(operation, spec, values)
            r = await learner.request(method, fill(path, values), json=body)
            outcomes[f"{method} {path}"] = r.status_code
        for page in ("/admin/promos", "/admin/promos/AUTHZ/disable"):
            method = "GET" if page == "/admin/promos" else "POST"
            outcomes[f"{method} {page}"] = (await learner.request(method, page)).status_code
    assert outcomes == dict.fromkeys(outcomes, 403), outcomes
    async with api(app, operator.token) as admin_client:
        assert (await admin_client.get("/api/admin/promos/AUTHZ")).json() == before


# -- the analytics are the admins' ------------------------------------------------------


async def test_only_admins_see_the_analytics(app: FastAPI, world: World, labyard: Labyard) -> None:
    spec = app.openapi()
    on_analytics = [op for op in operations(spec) if op[1].startswith("/api/admin/analytics")]
    assert {f"{m} {p}" for m, p, _ in on_analytics} >= {
        "GET /api/admin/analytics",
        "GET /api/admin/analytics/{table}.csv",
    }
    paths = ["/api/admin/analytics"] + [
        f"/api/admin/analytics/{table}.csv"
        for table in ("top_playgrounds", "top_content", "revenue_by_month", "country_tiers")
    ]
    period = {"from": "2025-03-01", "to": "2025-03-10"}
    operator = make_account(labyard, role="admin")
    outcomes: dict[str, int] = {}
    async with api(app, operator.token) as admin_client:
        for path in paths:
            assert (await admin_client.get(path, params=period)).status_code == 200, path
    async with api(app, world.b.token, address="192.0.2.14") as b_client:
        for path in [*paths, "/admin/analytics"]:
            outcomes[path] = (await b_client.get(path, params=period)).status_code
    assert outcomes == {path: 403 for path in [*paths, "/admin/analytics"]}


# -- LTI: the LMS's endpoints are public, the rest needs a teacher or an admin -----------


async def test_lti_endpoints_are_public_only_for_the_lms_and_admins_only_for_platforms(
    app: FastAPI, labyard: Labyard
) -> None:
    lti_routes = {
        (method, path)
        for path, route in all_routes(app)
        if isinstance(route, APIRoute) and path.startswith(("/lti/", "/admin/lti"))
        for method in (route.methods or set()) - {"HEAD", "OPTIONS"}
    }
    assert lti_routes >= LTI_PUBLIC and len(lti_routes) >= 9
    values = {"course_id": 1, "link_id": 1, "platform_id": 1}
    outcomes: dict[str, int] = {}
    async with api(app, address="192.0.2.15") as nobody:
        for method, path in sorted(lti_routes):
            r = await nobody.request(method, fill(path, values))
            outcomes[f"{method} {path}"] = r.status_code
            # Refused launches and logins say why on a page; the rest sends to sign-in.
            if (method, path) in LTI_PUBLIC:
                assert r.status_code in (200, 400), f"{method} {path}: {r.status_code}"
            else:
                assert r.status_code == 303, f"{method} {path}: {r.status_code}"
                assert r.headers["location"].startswith("/login?next="), path

    learner = make_account(labyard)
    admin = make_account(labyard, role="admin")
    spec = app.openapi()
    on_lti = [op for op in operations(spec) if op[1].startswith(("/api/lti/", "/api/admin/lti/"))]
    assert {f"{m} {p}" for m, p, _ in on_lti} >= {
        "GET /api/admin/lti/platforms",
        "POST /api/admin/lti/platforms",
        "DELETE /api/admin/lti/platforms/{platform_id}",
        "GET /api/lti/courses/{course_id}/roster",
        "POST /api/lti/links/{link_id}/grades",
    }
    registration = {
        "issuer": "https://lms.example.edu", "client_id": "authz", "deployment_ids": ["1"],
        "jwks_url": "https://lms.example.edu/jwks", "auth_url": "https://lms.example.edu/auth",
        "token_url": "https://lms.example.edu/token",
    }  # fmt: skip
    async with api(app, admin.token) as a:
        made = await a.post("/api/admin/lti/platforms", json=registration)
        assert made.status_code == 201, made.text
    values["platform_id"] = made.json()["id"]
    async with api(app, learner.token, address="192.0.2.16") as client:
        client.cookies.set("labyard_csrf", "walk")
        for method, path, operation in on_lti:
            body = body_for(operation, spec, {**values, **registration})
            r = await client.request(method, fill(path, values), json=body)
            want = 403 if "/api/admin/" in path else (200 if "{" not in path else 404)
            assert r.status_code == want, f"{method} {path}: {r.status_code} {r.text[:200]}"
        for method, path in sorted(lti_routes - LTI_PUBLIC):
            if "deep-link" in path:
                continue  # a learner's own picker request, checked in tests/lti
            form = {"csrf": "walk"} if method == "POST" else None
            r = await client.request(method, fill(path, values), data=form)
            assert r.status_code in (403, 404), f"{method} {path}: {r.status_code}"
    async with api(app, admin.token) as a:
        (platform,) = [p for p in (await a.get("/api/admin/lti/platforms")).json()
                       if p["client_id"] == "authz"]  # fmt: skip
        assert platform["id"] == values["platform_id"]  # the learner's DELETE did nothing
        assert (await a.delete(f"/api/admin/lti/platforms/{platform['id']}")).status_code == 204


# -- every class endpoint is its instructor's (and what members may do, its members') ----

CLASS_STREAMS = {"/api/classes/{class_id}/events", "/api/classes/{class_id}/board/events"}
"""Event streams last a minute: walked by those refused at once (404/403) only."""


async def test_others_never_see_a_class_and_members_cannot_run_it(
    app: FastAPI, labyard: Labyard
) -> None:
    spec = app.openapi()
    teacher, member = make_account(labyard, role="instructor"), make_account(labyard)
    stranger, other_teacher = make_account(labyard), make_account(labyard, role="instructor")
    at = datetime.now(UTC)
    body = {
        "title": "Walked",
        "content": ["linux"],
        "seats": 2,
        "starts_at": (at - timedelta(minutes=1)).isoformat(),
        "ends_at": (at + timedelta(hours=1)).isoformat(),
        "guests": False,
    }
    async with api(app, teacher.token) as t, api(app, member.token) as m:
        made = await t.post("/api/classes", json=body)
        assert made.status_code == 201, made.text
        cls = made.json()
        assert (
            await m.post("/api/classes/join", json={"code": cls["join_code"]})
        ).status_code == 200
        before = (await t.get(f"/api/classes/{cls['id']}")).json()
    values = {
        "class_id": cls["id"],
        "account_id": member.user.id,
        "code": cls["join_code"],
        "look_id": 1,  # a look at someone else, if any (api/looks.py)
    }
    on_classes = [op for op in operations(spec) if "{class_id}" in op[1]]
    assert {
        "GET /api/classes/{class_id}",
        "GET /api/classes/{class_id}/results",
        "POST /api/classes/{class_id}/end",
        "POST /api/classes/{class_id}/playground",
    } <= {f"{m} {p}" for m, p, _ in on_classes}
    pages = [
        (method, path)
        for path, route in all_routes(app)
        if isinstance(route, APIRoute) and not route.include_in_schema and "{class_id}" in path
        for method in sorted((route.methods or set()) - {"HEAD", "OPTIONS"})
    ]
    assert ("GET", "/classes/{class_id}/board") in pages

    outcomes: dict[str, dict[str, str]] = {"stranger": {}, "other": {}, "member": {}}
    who_is = (("stranger", stranger), ("other", other_teacher), ("member", member))
    for who, account in who_is:
        async with api(app, account.token, address="192.0.2.15") as client:
            for method, path, operation in on_classes:
                if who == "member" and path in CLASS_STREAMS:
                    continue
                if who == "member" and path.startswith("/api/classes/{class_id}/playground"):
                    continue  # a member's own machine: tests/classes/test_api.py
                r = await client.request(
                    method, fill(path, values), json=body_for(operation, spec, values)
                )
                outcomes[who][f"{method} {path}"] = f"{r.status_code} {r.text[:200]}"
            for method, path in pages:
                r = await client.request(method, fill(path, values))
                outcomes[who][f"{method} {path} (page)"] = f"{r.status_code} {r.text[:100]}"
            seen = (await client.get("/api/classes")).json()
            outcomes[who]["GET /api/classes"] = f"200 {[c['id'] for c in seen]}"
    for who in ("stranger", "other"):
        wrong = {k: v for k, v in outcomes[who].items() if not v.startswith("404 ")}
        wrong.pop("GET /api/classes", None)
        assert wrong == {}, f"{who} reached the class: {wrong}"
        assert cls["id"] not in outcomes[who]["GET /api/classes"]
    member_may = {
        "GET /api/classes/{class_id}",
        "GET /api/classes/{class_id}/broadcasts",
        "GET /classes/{class_id} (page)",
        "GET /api/classes",
        "GET /api/classes/{class_id}/looks",  # the looks at them
    }
    # Granting input is the learner watched's alone: for anyone else no such look.
    member_404 = {k for k in outcomes["member"] if "{look_id}" in k}
    wrong = {
        k: v
        for k, v in outcomes["member"].items()
        if not v.startswith("200 " if k in member_may else ("404 " if k in member_404 else "403 "))
    }
    assert wrong == {}, f"a member ran the class: {wrong}"
    async with api(app, member.token) as m:
        seen_by_member = (await m.get(f"/api/classes/{cls['id']}")).json()
        assert (
            "members" not in seen_by_member and seen_by_member["me"]["account_id"] == member.user.id
        )
    async with api(app, teacher.token) as t:
        assert (await t.get(f"/api/classes/{cls['id']}")).json() == before


# -- WebSockets --------------------------------------------------------------------------


async def ws_outcome(url: str, headers: dict[str, str], seconds: float = 5.0) -> str:
    """`http NNN` (handshake refused), `close NNNN` (closed by the server), or `open`
    (still open after `seconds`, or it sent bytes: something answered)."""
    try:
        async with asyncio.timeout(seconds + 10):
            async with ws_connect(
                url, additional_headers=headers, open_timeout=10, ping_interval=None
            ) as ws:
                try:
                    async with asyncio.timeout(seconds):
                        while True:
                            frame = await ws.recv()
                            if isinstance(frame, bytes):
                                return f"open (got {frame[:40]!r})"
                except TimeoutError:
                    return "open"
                except ConnectionClosed as closed:
                    code = closed.rcvd.code if closed.rcvd else 1006
                    return f"close {code}"
    except InvalidStatus as refused:
        return f"http {refused.response.status_code}"
    return "open"


async def test_websockets_refuse_other_users(
    app: FastAPI, world: World, live_server: LiveServer
) -> None:
    routes = websocket_routes(app)
    assert routes >= EXPECTED_WEBSOCKETS, f"WebSocket routes gone: {EXPECTED_WEBSOCKETS - routes}"
    before = await snapshot(app, world)
    outcomes: dict[str, dict[str, str]] = {}
    for path in sorted(routes):
        url = f"ws://{live_server.url}{fill(path, world.params)}"
        outcomes[path] = {
            "A": await ws_outcome(url, {"Authorization": f"Bearer {world.a.token}"}),
            "B": await ws_outcome(url, {"Authorization": f"Bearer {world.b.token}"}),
            "nobody": await ws_outcome(url, {}),
        }
    for path, seen in outcomes.items():
        assert seen["B"] in ("close 4404", "http 404"), f"{path}: {seen}"
        assert seen["A"] not in ("close 4404", "http 404"), f"{path}: A refused: {seen}"
        assert seen["nobody"] in ("close 4401", "close 4404", "http 401", "http 404"), (
            f"{path}: {seen}"
        )
    ssh = outcomes["/api/playgrounds/{playground_id}/machines/{machine}/ssh"]
    assert ssh["A"].startswith("open (got b'SSH-2.0"), ssh
    assert await snapshot(app, world) == before


# Looking over a class member's shoulder (api/looks.py): the class's WebSocket routes.
EXPECTED_CLASS_WEBSOCKETS = {
    "/api/classes/{class_id}/members/{account_id}/watch",
    "/api/classes/{class_id}/looks/{look_id}/input",
}


async def test_only_the_instructor_watches_a_member_and_only_the_learner_grants_input(
    app: FastAPI, world: World, live_server: LiveServer, labyard: Labyard
) -> None:
    routes = {
        path
        for path, route in all_routes(app)
        if isinstance(route, WebSocketRoute | APIWebSocketRoute) and "{class_id}" in path
    }
    assert routes == EXPECTED_CLASS_WEBSOCKETS, "a class WebSocket came or went: walk it here"
    teacher, other_teacher = (make_account(labyard, role="instructor") for _ in range(2))
    admin, classmate = make_account(labyard, role="admin"), make_account(labyard)
    at = datetime.now(UTC)
    body = {
        "title": "Watched",
        "content": ["linux"],
        "seats": 3,
        "starts_at": (at - timedelta(minutes=1)).isoformat(),
        "ends_at": (at + timedelta(hours=1)).isoformat(),
        "guests": False,
    }
    before = await snapshot(app, world)
    async with api(app, teacher.token) as t:
        cls = (await t.post("/api/classes", json=body)).json()
    for learner in (world.a, classmate):
        async with api(app, learner.token) as client:
            joined = await client.post("/api/classes/join", json={"code": cls["join_code"]})
            assert joined.status_code == 200, joined.text
    async with api(app, world.a.token) as a_client:
        started = await a_client.post(
            f"/api/classes/{cls['id']}/playground", json={"content": "linux"}
        )
        assert started.status_code == 201, started.text
        machine = started.json()["machines"][0]["name"]
        # The learner's tab exists once their own terminal has opened it.
        opened = await a_client.post(
            f"/api/playgrounds/{started.json()['id']}/exec",
            json={"command": "tmux -L labyard new-session -d -s main"},
        )
        assert opened.status_code == 200, opened.text
    values = {"class_id": cls["id"], "account_id": world.a.user.id, "machine": machine}
    base = f"ws://{live_server.url}"
    watch = base + fill("/api/classes/{class_id}/members/{account_id}/watch", values)

    def bearer(account: Account) -> dict[str, str]:
        return {"Authorization": f"Bearer {account.token}"}

    seen = {
        "teacher": await ws_outcome(watch, bearer(teacher), seconds=10),
        "admin": await ws_outcome(watch, bearer(admin), seconds=10),
        "other teacher": await ws_outcome(watch, bearer(other_teacher)),
        "classmate": await ws_outcome(watch, bearer(classmate)),
        "the learner": await ws_outcome(watch, bearer(world.a)),
        "stranger": await ws_outcome(watch, bearer(world.b)),
        "nobody": await ws_outcome(watch, {}),
    }
    assert seen["teacher"].startswith("open (got") and seen["admin"].startswith("open (got")
    assert {k: v for k, v in seen.items() if k not in ("teacher", "admin")} == {
        "other teacher": "close 4404",
        "classmate": "close 4403",
        "the learner": "close 4403",
        "stranger": "close 4404",
        "nobody": "close 4401",
    }

    async with ws_connect(watch, additional_headers=bearer(teacher)) as view:
        look = json.loads(await asyncio.wait_for(view.recv(), 20))
        assert look["type"] == "look", look
        values["look_id"] = look["id"]
        keys = base + fill("/api/classes/{class_id}/looks/{look_id}/input", values)
        typed = {
            "teacher": await ws_outcome(keys, bearer(teacher)),  # not granted
            "admin": await ws_outcome(keys, bearer(admin)),
            "classmate": await ws_outcome(keys, bearer(classmate)),
            "the learner": await ws_outcome(keys, bearer(world.a)),
            "stranger": await ws_outcome(keys, bearer(world.b)),
            "nobody": await ws_outcome(keys, {}),
        }
        assert typed == {
            "teacher": "close 4403",
            "admin": "close 4404",
            "classmate": "close 4404",
            "the learner": "close 4404",
            "stranger": "close 4404",
            "nobody": "close 4401",
        }
        grant = fill("/api/classes/{class_id}/looks/{look_id}/grant", values)
        for account in (teacher, admin, classmate, world.b):
            async with api(app, account.token, address="192.0.2.17") as client:
                assert (await client.post(grant)).status_code == 404
    async with api(app, world.b.token, address="192.0.2.17") as client:
        assert (await client.get(f"/api/classes/{cls['id']}/looks")).status_code == 404
    async with api(app, teacher.token) as t:
        logged = (await t.get(f"/api/classes/{cls['id']}/looks")).json()
        assert {x["watcher_id"] for x in logged} == {teacher.user.id, admin.user.id}
        assert not any(x["input_granted"] for x in logged)
        assert (await t.delete(f"/api/classes/{cls['id']}")).status_code == 204
    assert await snapshot(app, world) == before


# -- plans -------------------------------------------------------------------------------

FOUR_MACHINES = """\
kind: playground
name: four
machines:
  - {name: m1, image: linux}
  - {name: m2, image: linux}
  - {name: m3, image: linux}
  - {name: m4, image: linux}
"""


async def test_plan_limits_say_what_is_over(app: FastAPI, world: World, labyard: Labyard) -> None:
    before = await snapshot(app, world)
    async with api(app, world.a.token) as a_client:
        second = await a_client.post("/api/playgrounds", json={"name": "linux"})
        assert second.status_code == 429, second.text
        error = second.json()["error"]
        assert error["reason"] == "limit_exceeded"
        assert "1 playground(s) at a time" in error["message"]
        assert "destroy one first" in error["message"]

        extend = await a_client.post(
            f"/api/playgrounds/{world.playground_id}/extend", json={"seconds": 60}
        )
        assert extend.status_code == 429, extend.text
        assert "3600 s in all" in extend.json()["error"]["message"]
        assert len((await a_client.get("/api/playgrounds")).json()) == 1

    author = make_account(labyard, role="author")
    async with api(app, author.token) as author_client:
        big = await author_client.post("/api/playgrounds", json={"manifest": FOUR_MACHINES})
        assert big.status_code == 429, big.text
        assert "4 machines" in big.json()["error"]["message"]
        assert "allows 3 per playground" in big.json()["error"]["message"]

        long = await author_client.post(
            "/api/playgrounds", json={"name": "linux", "lifetime_s": 7200}
        )
        assert long.status_code == 429, long.text
        assert "7200 s is over the Free plan's 3600 s" in long.json()["error"]["message"]
        assert (await author_client.get("/api/playgrounds")).json() == []

    async with api(app, world.b.token) as learner:
        raw = await learner.post("/api/playgrounds", json={"manifest": FOUR_MACHINES})
        assert raw.status_code == 403, raw.text
        assert "only authors" in raw.json()["error"]["message"]
        assert (await learner.get("/api/playgrounds")).json() == []
    assert await snapshot(app, world) == before


# -- sign-in -----------------------------------------------------------------------------


async def test_the_sixth_wrong_password_is_throttled(app: FastAPI, labyard: Labyard) -> None:
    victim = make_account(labyard)
    async with api(app, address="198.51.100.7") as attacker:
        for attempt in range(5):
            r = await attacker.post(
                "/api/login", json={"email": victim.email, "password": f"guess {attempt}"}
            )
            assert r.status_code == 401, (attempt, r.text)
        sixth = await attacker.post(
            "/api/login", json={"email": victim.email, "password": "guess 6"}
        )
        assert sixth.status_code == 429, sixth.text
        assert sixth.json()["error"]["reason"] == "too_many_attempts"
        # Locked out even with the right password, and through the token endpoint too.
        right = await attacker.post(
            "/api/login", json={"email": victim.email, "password": PASSWORD}
        )
        assert right.status_code == 429, right.text
        token = await attacker.post(
            "/api/tokens", json={"email": victim.email, "password": PASSWORD}
        )
        assert token.status_code == 429, token.text


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="labyard-admin-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_admin_create_user_makes_an_admin_who_can_sign_in(data_dir: Path) -> None:
    env = {**os.environ, "LABYARD_DATA_DIR": str(data_dir), "LABYARD_IMAGES_DIR": str(IMAGES_DIR)}
    env.pop("LABYARD_DATABASE_URL", None)
    command = [str(REPO / ".venv/bin/labyard"), "admin", "create-user"]

    def run(*args: str, password: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *args],
            input=password + "\n",
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    created = run("Boss@Example.org", "--role", "admin", "--plan", "premium", password=PASSWORD)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().isdigit()
    assert "boss@example.org (admin, premium)" in created.stderr
    again = run("boss@example.org", password=PASSWORD)
    assert again.returncode != 0 and "exists already" in again.stderr
    short = run("short@example.org", password="short")
    assert short.returncode != 0 and "at least 8 characters" in short.stderr

    settings = Settings(
        data_dir=data_dir,
        images_dir=IMAGES_DIR,
        database_url=f"sqlite:///{data_dir / 'labyard.db'}",
    )
    labyard = Labyard(settings)
    try:
        async with api(create_app(labyard, reconcile_interval_s=None)) as client:
            wrong = await client.post(
                "/api/login", json={"email": "boss@example.org", "password": "not it at all"}
            )
            assert wrong.status_code == 401
            login = await client.post(
                "/api/login", json={"email": "boss@example.org", "password": PASSWORD}
            )
            assert login.status_code == 200, login.text
            me = (await client.get("/api/me")).json()
            assert (me["email"], me["role"], me["plan"]) == ("boss@example.org", "admin", "premium")
            assert me["limits"]["concurrent_playgrounds"] == 5
            assert me["id"] == int(created.stdout.strip())
    finally:
        labyard.close()


# -- saved playgrounds -------------------------------------------------------------------


async def test_others_never_see_or_start_a_saved_playground(app: FastAPI, labyard: Labyard) -> None:
    """A saves a stopped playground; B (an author, who may start own manifests) neither
    lists, starts nor removes it, by name or by its image, through the API or the pages."""
    a, b = make_account(labyard, plan="premium"), make_account(labyard, role="author")
    async with api(app, a.token) as a_client, api(app, b.token, "192.0.2.13") as b_client:
        started = await a_client.post("/api/playgrounds", json={"name": "linux"})
        assert started.status_code == 201, started.text
        playground_id = started.json()["id"]
        try:
            stop = await a_client.post(f"/api/playgrounds/{playground_id}/stop")
            assert stop.status_code == 200, stop.text
            saved = await a_client.post(
                f"/api/playgrounds/{playground_id}/save", json={"name": "a-box"}
            )
            assert saved.status_code == 201, saved.text
            image = saved.json()["images"][0]
            # B cannot save or fork A's playground either (the walk above covers these too).
            attempts = {
                "save": await b_client.post(
                    f"/api/playgrounds/{playground_id}/save", json={"name": "b-box"}
                ),
                "fork": await b_client.post(f"/api/playgrounds/{playground_id}/fork"),
                "page save": await b_client.post(f"/playgrounds/{playground_id}/save"),
            }
            wrong = {k: f"{r.status_code} {r.text[:200]}" for k, r in attempts.items()}
            assert {k: v for k, v in wrong.items() if not v.startswith("404 ")} == {}
        finally:
            await asyncio.shield(labyard.playgrounds.destroy(playground_id))

        assert (await b_client.get("/api/saved-playgrounds")).json() == []
        outcomes = {
            "start": await b_client.post("/api/saved-playgrounds/a-box/start", json={}),
            "remove": await b_client.delete("/api/saved-playgrounds/a-box"),
            "page start": await b_client.post("/saved-playgrounds/a-box/start"),
        }
        wrong = {k: f"{r.status_code} {r.text[:200]}" for k, r in outcomes.items()}
        assert {k: v for k, v in wrong.items() if not v.startswith("404 ")} == {}
        manifest = f"kind: playground\nname: sneaky\nmachines:\n  - name: m\n    image: {image}\n"
        sneaky = await b_client.post("/api/playgrounds", json={"manifest": manifest})
        assert sneaky.status_code == 404, sneaky.text
        assert "a-box" not in (await b_client.get("/catalog")).text

        mine = await a_client.get("/api/saved-playgrounds")
        assert [s["name"] for s in mine.json()] == ["a-box"]
        assert "a-box" in (await a_client.get("/catalog")).text
        assert (await a_client.delete("/api/saved-playgrounds/a-box")).status_code == 204


# -- operations --------------------------------------------------------------------------


async def test_healthz_and_metrics(app: FastAPI, world: World) -> None:
    async with api(app) as client:
        health = await client.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.text)
        for s in family.samples
    }
    assert samples[("labyard_playgrounds_running", ())] >= 1
    assert samples[("labyard_playground_starts_total", (("outcome", "started"),))] >= 1
