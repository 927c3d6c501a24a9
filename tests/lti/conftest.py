"""The LTI tests' world: a real labyard (the learn fixture's content, the real local driver,
on SQLite and on PostgreSQL) behind uvicorn on 127.0.0.1, and the test platform
(platform.py) registered with it by an admin through the API.

`lab.launch(Launch(...))` is what a browser does when a user opens a link in the LMS:
login initiation at labyard, redirect to the platform's authorization endpoint, the
auto-posted id_token back to labyard's launch URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select

from labyard.api.app import create_app
from labyard.runtime.local.names import nft_table
from labyard.services import Labyard, User
from labyard.settings import Settings
from labyard.store import TokenRow, UserRow
from tests.api.learn_server import FIXTURE
from tests.conftest import IMAGES_DIR
from tests.lti.platform import Launch, Platform, form_of
from tests.store.databases import KINDS, fresh_database_url

PASSWORD = "a long enough password"


@dataclass
class Lab:
    labyard: Labyard
    url: str
    platform: Platform
    admin: User
    admin_token: str

    def browser(self) -> httpx.AsyncClient:
        """A browser of its own: a cookie jar, redirects not followed."""
        return httpx.AsyncClient(base_url=self.url, timeout=60)

    def api(self, token: str) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=60)

    def account(self, role: str = "learner") -> tuple[User, str]:
        email = f"{role}-{secrets.token_hex(4)}@example.org"
        user = self.labyard.accounts.create_user(email, PASSWORD, role=role)
        return user, self.labyard.accounts.issue(user, "api", "lti test")

    async def initiate(self, browser: httpx.AsyncClient, launch: Launch) -> httpx.Response:
        """The login initiation; returns labyard's answer (a redirect to the platform)."""
        return await browser.get("/lti/login", params=self.platform.prepare(launch))

    async def authorize(self, redirect: httpx.Response) -> dict[str, str]:
        """Follow labyard's redirect to the platform: the launch form's fields."""
        assert redirect.status_code == 302, redirect.text
        async with httpx.AsyncClient(timeout=30) as lms:
            page = await lms.get(redirect.headers["location"])
        assert page.status_code == 200, page.text
        action, fields = form_of(page.text)
        assert action == f"{self.url}/lti/launch"
        return fields

    async def launch(self, browser: httpx.AsyncClient, launch: Launch) -> httpx.Response:
        fields = await self.authorize(await self.initiate(browser, launch))
        return await browser.post("/lti/launch", data=fields)

    def counts(self) -> tuple[int, int]:
        """(accounts, sessions and tokens): what a refused launch must not add to."""
        with self.labyard.db.session() as session:
            users = session.scalar(select(func.count()).select_from(UserRow))
            tokens = session.scalar(select(func.count()).select_from(TokenRow))
            return int(users or 0), int(tokens or 0)


def csrf(browser: httpx.AsyncClient) -> dict[str, str]:
    return {"X-CSRF-Token": browser.cookies.get("labyard_csrf") or ""}


@contextlib.asynccontextmanager
async def serving(labyard: Labyard) -> AsyncIterator[str]:
    """labyard's app behind real uvicorn on this event loop (the attempts' checks run here)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    app = create_app(labyard, reconcile_interval_s=None)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(30):
            while not server.started:
                assert not task.done(), "uvicorn stopped while starting"
                await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(30):
            await task
        sock.close()


@pytest.fixture(scope="module", params=KINDS)
async def lab(request: pytest.FixtureRequest) -> AsyncIterator[Lab]:
    # Not pytest's tmp_path: the machines' rootfs must be reachable by their mapped users,
    # and concurrent pytest runs reset /tmp/pytest-of-<user> to 0700 (like tests/conftest.py).
    tmp = Path(tempfile.mkdtemp(prefix="labyard-lti-"))
    with fresh_database_url(request.param, tmp) as database_url:
        settings = Settings(data_dir=tmp / "data", images_dir=IMAGES_DIR, database_url=database_url)
        labyard = Labyard(settings, content_dir=FIXTURE)
        platform = Platform()
        platform.start()
        try:
            async with serving(labyard) as url:
                platform.tool_launch_url = f"{url}/lti/launch"
                platform.tool_jwks_url = f"{url}/lti/jwks"
                email = f"admin-{secrets.token_hex(4)}@example.org"
                admin = labyard.accounts.create_user(email, PASSWORD, role="admin")
                token = labyard.accounts.issue(admin, "api", "lti test")
                lab = Lab(labyard, url, platform, admin, token)
                async with lab.api(token) as client:
                    added = await client.post(
                        "/api/admin/lti/platforms", json=platform.registration()
                    )
                    assert added.status_code == 201, added.text
                yield lab
                await labyard.lti.settle()
        finally:
            platform.stop()
            for playground_id in await labyard.driver.list():
                await labyard.driver.destroy(playground_id)
            table = ["nft", "delete", "table", "inet", nft_table(settings.instance)]
            subprocess.run(table, capture_output=True, check=False)
            labyard.close()
            shutil.rmtree(tmp, ignore_errors=True)
