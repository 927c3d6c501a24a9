"""/admin/cluster and GET /api/admin/cluster on the fake driver: without the `Cluster`
capability the page says this server runs every playground itself and still lists the
regions file's regions, with no buttons; with it (the fake driver made to look like two
servers) members show their regions, state, playgrounds and memory, Drain needs the CSRF
token and a ticked confirmation and then lists what it stopped with its owners, and Restore
puts the member back. Learners get 403, visitors the sign-in form. The same page on a real
two-member LXD cluster: tests/runtime/test_lxd_cluster.py."""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from labyard.api.app import create_app
from labyard.manifest import load_manifest
from labyard.services import Labyard, User
from tests.api.two_servers import TwoServers, instance

PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
async def single() -> AsyncIterator[Labyard]:
    async for made in instance(clustered=False):
        yield made


@pytest.fixture(scope="module")
async def clustered() -> AsyncIterator[Labyard]:
    async for made in instance(clustered=True):
        yield made


def person(labyard: Labyard, role: str) -> User:
    email = f"{role}-{secrets.token_hex(5)}@example.org"
    return labyard.accounts.create_user(email, PASSWORD, role=role)


@contextlib.asynccontextmanager
async def signed_in(labyard: Labyard, role: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client signed in as a new user of `role`."""
    async with signed_in_as(labyard, person(labyard, role)) as client:
        yield client


@contextlib.asynccontextmanager
async def signed_in_as(labyard: Labyard, user: User) -> AsyncIterator[httpx.AsyncClient]:
    """A client signed in as `user` (made by `person`)."""
    app: FastAPI = create_app(labyard, reconcile_interval_s=None)
    transport = httpx.ASGITransport(app=app, client=("192.0.2.50", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        r = await client.post("/api/login", json={"email": user.email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        yield client


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


async def test_without_a_cluster_the_page_says_so_and_lists_the_regions(single: Labyard) -> None:
    async with signed_in(single, "admin") as admin:
        page = await admin.get("/admin/cluster")
        assert page.status_code == 200, page.text
        text = " ".join(page.text.split())
        assert "This server runs every playground itself (the <code>fake</code> driver)" in text
        assert "Europe" in text and "India" in text and "BD IN" in text
        assert "(every other)" in text  # the default region's countries
        assert 'action="/admin/cluster/' not in text  # no Drain, no Restore
        assert 'href="/admin/cluster" aria-current="page"' in text  # in the admin nav

        data = (await admin.get("/api/admin/cluster")).json()
        assert (data["driver"], data["clustered"], data["members"]) == ("fake", False, [])
        assert [(r["name"], r["title"], r["group"]) for r in data["regions"]] == [
            ("europe", "Europe", "eu"),
            ("india", "India", "india"),
        ]

        refused = await admin.post(
            "/admin/cluster/m1/evacuate", data={"csrf": csrf_of(page), "confirm": "yes"}
        )
        assert refused.status_code == 409, refused.text
        assert "the fake runtime cannot drain a server" in refused.text
        assert "This server runs every playground itself" in refused.text


async def test_learners_get_403_and_visitors_the_sign_in_form(clustered: Labyard) -> None:
    async with signed_in(clustered, "learner") as learner:
        page = await learner.get("/admin/cluster")
        assert page.status_code == 403 and "m2" not in page.text
        assert (await learner.get("/api/admin/cluster")).status_code == 403
        drain = await learner.post(
            "/admin/cluster/m2/evacuate", data={"csrf": csrf_of(page), "confirm": "yes"}
        )
        assert drain.status_code == 403
    assert {m.state for m in await clustered.cluster.members()} == {"online"}
    app = create_app(clustered, reconcile_interval_s=None)
    transport = httpx.ASGITransport(app=app, client=("192.0.2.51", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as visitor:
        r = await visitor.get("/admin/cluster")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fadmin%2Fcluster"
        assert (await visitor.get("/api/admin/cluster")).status_code == 401


async def test_members_drain_with_csrf_and_a_confirmation_then_restore(
    clustered: Labyard,
) -> None:
    learner = person(clustered, "learner")
    running = await clustered.playgrounds.start(load_manifest("linux"), owner=learner.owner)
    async with signed_in(clustered, "admin") as admin:
        page = await admin.get("/admin/cluster")
        assert page.status_code == 200, page.text
        m2 = re.search(r'<tr id="member-m2".*?</tr>', page.text, re.S)
        assert m2, page.text
        row = " ".join(m2.group(0).split())
        assert "India" in row and 'class="badge member-online">online<' in row
        assert '<td class="num">1</td>' in row and "1.0 / 4.0 GiB" in row
        assert 'action="/admin/cluster/m2/evacuate"' in row and "required" in row
        assert "This server runs every playground itself" not in page.text
        action = "/admin/cluster/m2/evacuate"

        forged = await admin.post(action, data={"csrf": "not the token", "confirm": "yes"})
        assert forged.status_code == 403
        unconfirmed = await admin.post(action, data={"csrf": csrf_of(page)})
        assert unconfirmed.status_code == 422 and "tick the box" in unconfirmed.text
        assert {m.state for m in await clustered.cluster.members()} == {"online"}

        drained = await admin.post(action, data={"csrf": csrf_of(page), "confirm": "yes"})
        assert drained.status_code == 200, drained.text
        found = re.search(r'<section class="notice drained".*?</section>', drained.text, re.S)
        assert found, drained.text
        shown = " ".join(found.group(0).split())
        assert "m2 is drained" in shown and "1 playground on it was stopped" in shown
        assert running.id in shown and learner.email in shown and "running" in shown
        assert (await clustered.playgrounds.get(running.id)).state == "stopped"
        assert 'action="/admin/cluster/m2/restore"' in drained.text
        assert 'class="badge member-evacuated">evacuated<' in drained.text

        restored = await admin.post("/admin/cluster/m2/restore", data={"csrf": csrf_of(page)})
        assert restored.status_code == 303 and restored.headers["location"] == "/admin/cluster"
        assert {m.state for m in await clustered.cluster.members()} == {"online"}
    await clustered.playgrounds.destroy(running.id)


async def test_a_member_that_does_not_answer_reads_offline_with_no_button(
    clustered: Labyard,
) -> None:
    assert isinstance(clustered.driver, TwoServers)
    clustered.driver.states["m2"] = "offline"
    try:
        async with signed_in(clustered, "admin") as admin:
            page = await admin.get("/admin/cluster")
    finally:
        clustered.driver.states["m2"] = "online"
    assert page.status_code == 200, page.text
    m2 = re.search(r'<tr id="member-m2".*?</tr>', page.text, re.S)
    assert m2, page.text
    row = " ".join(m2.group(0).split())
    assert 'class="badge member-offline">offline<' in row and "did not answer" in row
    assert "<form" not in row  # neither Drain nor Restore
    india = re.search(r'<tr id="region-india".*?</tr>', page.text, re.S)
    assert india and 'class="badge region-down">down<' in india.group(0)
