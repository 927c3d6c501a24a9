"""The playground page's Save-as form and the catalog's saved playgrounds, as a browser uses
them (session cookie and the CSRF form field), with a real playground."""

from __future__ import annotations

import asyncio
import re
import secrets

import httpx
from fastapi import FastAPI

from labyard.api.app import create_app
from labyard.services import Labyard, User

PASSWORD = "a long enough password"


async def signed_in(app: FastAPI, labyard: Labyard, plan: str) -> tuple[httpx.AsyncClient, User]:
    email = f"saver-{secrets.token_hex(4)}@example.org"
    user = labyard.accounts.create_user(email, PASSWORD, plan=plan)
    transport = httpx.ASGITransport(app=app, client=("192.0.2.40", 40000))
    client = httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=120)
    login = await client.post("/api/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return client, user


def csrf_field(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF field on the page"
    return found.group(1)


async def test_save_button_then_start_from_the_catalog(labyard: Labyard) -> None:
    app = create_app(labyard, reconcile_interval_s=None)
    owner, user = await signed_in(app, labyard, "premium")
    stranger, _ = await signed_in(app, labyard, "premium")
    started = await labyard.playgrounds.start(
        labyard.catalog.get("linux").manifest, launch=user.launch()
    )
    copies: list[str] = []
    try:
        page = await owner.get(f"/playgrounds/{started.id}")
        assert page.status_code == 200 and f'action="/playgrounds/{started.id}/save"' in page.text
        csrf = csrf_field(page.text)
        running = await owner.post(
            f"/playgrounds/{started.id}/save", data={"name": "page-box", "csrf": csrf}
        )
        assert running.status_code == 409 and "stop it first" in running.text

        await labyard.playgrounds.stop(started.id)
        theirs = await stranger.post(
            f"/playgrounds/{started.id}/save", data={"name": "page-box", "csrf": csrf}
        )
        assert theirs.status_code == 404
        saved = await owner.post(
            f"/playgrounds/{started.id}/save", data={"name": "page-box", "csrf": csrf}
        )
        assert saved.status_code == 303 and saved.headers["location"] == "/catalog#saved"

        catalog = (await owner.get("/catalog")).text
        assert 'action="/saved-playgrounds/page-box/start"' in catalog
        assert "page-box" not in (await stranger.get("/catalog")).text
        start = await owner.post("/saved-playgrounds/page-box/start", data={"csrf": csrf})
        assert start.status_code == 303, start.text
        copies.append(start.headers["location"].rsplit("/", 1)[1])
        assert (await labyard.playgrounds.get(copies[0])).state == "running"
    finally:
        for playground_id in [started.id, *copies]:
            await asyncio.shield(labyard.playgrounds.destroy(playground_id))
        for saved_playground in labyard.saved.list(user.owner):
            labyard.saved.remove(user.owner, saved_playground.name)
        await owner.aclose()
        await stranger.aclose()
