"""A real labyard server for HTTP, WebSocket and browser tests.

`server` runs `labyard serve` in a subprocess on a free port with its own data dir (and the
host's built images), and destroys every playground it started when the session ends;
`fake_server` is the same on the fake driver, for tests that are not about machines.
`server.signup()` gives a signed-in `Account` (cookies + CSRF header, like the web UI);
`account.start("linux")` starts a playground through the API. `browser` is Debian's
chromium driven by Playwright (headless); `browser_sign_up(page, server)` signs up through
the web forms. Reuse these for any test that needs the whole server.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from labyard.runtime.local.names import nft_table
from labyard.services import Labyard
from labyard.settings import LxdSettings, Settings
from tests import lxd_daemon as lxd_daemons
from tests.conftest import IMAGES_DIR, REPO

START_DEADLINE_S = 60.0  # generous: a loaded CI box starts Python slowly
CHROMIUM = os.environ.get("LABYARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
_emails = itertools.count(1)


@dataclass
class Account:
    """A signed-in user: an httpx client holding the session and CSRF cookies."""

    email: str
    password: str
    client: httpx.Client
    started: list[str] = field(default_factory=list)

    @property
    def cookies(self) -> dict[str, str]:
        return dict(self.client.cookies.items())

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A JSON API call the way the web UI makes it: cookie plus X-CSRF-Token header."""
        headers = {"X-CSRF-Token": self.client.cookies.get("labyard_csrf", "")}
        return self.client.request(method, path, headers=headers, **kwargs)

    def start(self, name: str = "linux") -> dict[str, Any]:
        response = self.api("POST", "/api/playgrounds", json={"name": name}, timeout=120)
        assert response.status_code == 201, response.text
        playground: dict[str, Any] = response.json()
        self.started.append(playground["id"])
        return playground

    def destroy_all(self) -> None:
        for playground_id in self.started:
            self.api("DELETE", f"/api/playgrounds/{playground_id}", timeout=60)
        self.started.clear()


@dataclass
class Server:
    url: str
    """`http://127.0.0.1:PORT`, no trailing slash."""
    data_dir: Path
    accounts: list[Account] = field(default_factory=list)
    lxd: LxdSettings | None = None
    """For a server on the lxd driver: where its machines are."""

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")

    def client(self) -> httpx.Client:
        """A fresh client (own cookie jar) that does not follow redirects."""
        return httpx.Client(base_url=self.url, timeout=30)

    def signup(self, password: str = "correct horse battery") -> Account:
        email = f"user{next(_emails)}-{uuid.uuid4().hex[:6]}@example.com"
        client = self.client()
        response = client.post("/api/signup", json={"email": email, "password": password})
        assert response.status_code == 201, response.text
        account = Account(email, password, client)
        self.accounts.append(account)
        return account


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"labyard serve exited ({process.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # polling a condition under a deadline
    pytest.fail(f"labyard serve did not answer within {START_DEADLINE_S} s:\n{log.read_text()}")


async def _destroy_everything(settings: Settings) -> None:
    labyard = Labyard(settings)
    try:
        for playground_id in await labyard.driver.list():
            await labyard.driver.destroy(playground_id)
    finally:
        labyard.close()


def _serve(driver: str, lxd: LxdSettings | None = None) -> Iterator[Server]:
    """`labyard serve` on a free port, its own data dir, the runtime `driver` (for `lxd`, on
    the server and in the project `lxd` gives)."""
    driver_env = {}
    if lxd is not None:
        driver_env = {
            "LABYARD_LXD_URL": lxd.url,
            "LABYARD_LXD_POOL": lxd.pool,
            "LABYARD_LXD_PROJECT": lxd.project,
        }
    data_dir = Path(tempfile.mkdtemp(prefix="labyard-web-"))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "LABYARD_DATA_DIR": str(data_dir),
        "LABYARD_IMAGES_DIR": str(IMAGES_DIR),
        "LABYARD_DRIVER": driver,
        **driver_env,
    }
    env.pop("LABYARD_DATABASE_URL", None)
    log = data_dir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(REPO / ".venv/bin/labyard"), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(url, process, log)
        yield Server(url, data_dir, lxd=lxd)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        settings = Settings(
            data_dir=data_dir,
            images_dir=IMAGES_DIR,
            database_url=f"sqlite:///{data_dir}/labyard.db",
            driver=driver,
            lxd=lxd or LxdSettings(),
        )
        asyncio.run(_destroy_everything(settings))
        subprocess.run(
            ["nft", "delete", "table", "inet", nft_table(settings.instance)],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """A server whose machines are real (the local driver): for what is about machines."""
    yield from _serve("local")


@pytest.fixture(scope="session")
def lxd_server(lxd_daemon: lxd_daemons.Daemon) -> Iterator[Server]:
    """A server whose machines are LXD system containers, on the session's own LXD daemon
    (tests/lxd_daemon.py), in a project of its own."""
    yield from _serve("lxd", LxdSettings(lxd_daemon.url, project="web", pool=lxd_daemons.POOL))


@pytest.fixture(scope="session")
def fake_server() -> Iterator[Server]:
    """A server on the fake driver (machines that are processes answering real SSH): for
    what is about the API, the CLI and the services, not about machines; starts in a
    fraction of a second."""
    yield from _serve("fake")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian chromium under Playwright (sync API; use from sync tests).

    Module-scoped on purpose: while the sync API is open it keeps an event loop running on
    the main thread, which breaks every pytest-asyncio test that runs after it.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield instance
        instance.close()


def browser_sign_up(page: Any, server: Server, password: str = "correct horse battery") -> str:
    """Sign up through the web form in `page`; returns the new account's email."""
    email = f"browser{next(_emails)}-{uuid.uuid4().hex[:6]}@example.com"
    page.goto(f"{server.url}/signup")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("#signup-form button[type=submit]")
    page.wait_for_url(f"{server.url}/playgrounds")
    return email
