"""Shared fixtures: one real labyard instance per test session (its own data dir, the
host's built images), torn down with everything it started."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from labyard.manifest import Manifest, load_manifest, manifest_from_text
from labyard.runtime.local.names import nft_table
from labyard.services import Labyard, Playground
from labyard.settings import LxdSettings, Settings
from tests import lxd_daemon as lxd_daemons

REPO = Path(__file__).resolve().parent.parent
IMAGES_DIR = Path(os.environ.get("LABYARD_IMAGES_DIR", "/var/lib/labyard/images"))


@pytest.fixture(scope="session")
def settings() -> Iterator[Settings]:
    data_dir = Path(tempfile.mkdtemp(prefix="labyard-test-"))
    yield Settings(
        data_dir=data_dir, images_dir=IMAGES_DIR, database_url=f"sqlite:///{data_dir}/labyard.db"
    )
    shutil.rmtree(data_dir, ignore_errors=True)


async def dismantle(instance: Labyard) -> None:
    """What a test's private instance leaves on the host goes: its machines and its
    nftables table; then its database is closed."""
    for playground_id in await instance.driver.list():
        await instance.driver.destroy(playground_id)
    subprocess.run(
        ["nft", "delete", "table", "inet", nft_table(instance.settings.instance)],
        capture_output=True,
        check=False,
    )
    instance.close()


@pytest.fixture(scope="session")
async def labyard(settings: Settings) -> AsyncIterator[Labyard]:
    instance = Labyard(settings)
    yield instance
    await dismantle(instance)


@pytest.fixture(scope="session")
async def fake_labyard() -> AsyncIterator[Labyard]:
    """A labyard instance of its own on the fake driver (machines that are processes answering
    real SSH, up in a fraction of a second): for tests of what is not about machines."""
    data_dir = Path(tempfile.mkdtemp(prefix="labyard-test-fake-"))
    instance = Labyard(
        Settings(
            data_dir=data_dir,
            images_dir=IMAGES_DIR,
            database_url=f"sqlite:///{data_dir}/labyard.db",
            driver="fake",
        )
    )
    yield instance
    await dismantle(instance)
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def lxd_daemon() -> Iterator[lxd_daemons.Daemon]:
    """A real LXD daemon of the test session's own (tests/lxd_daemon.py), for the lxd driver."""
    daemon = lxd_daemons.start()
    yield daemon
    lxd_daemons.stop(daemon)


@pytest.fixture(scope="session")
def incus_daemon() -> Iterator[lxd_daemons.Daemon]:
    """A real Incus daemon (Incus 6.0, from bookworm-backports), the same way: the lxd driver
    speaks to both."""
    daemon = lxd_daemons.start(engine=lxd_daemons.INCUS)
    yield daemon
    lxd_daemons.stop(daemon)


def lxd_settings(daemon: lxd_daemons.Daemon, data_dir: Path, project: str) -> Settings:
    """Settings for an lxd driver on `daemon`, its machines in `project`."""
    return Settings(
        data_dir=data_dir,
        images_dir=IMAGES_DIR,
        database_url=f"sqlite:///{data_dir}/labyard.db",
        driver="lxd",
        lxd=LxdSettings(url=daemon.url, project=project, pool=lxd_daemons.POOL),
    )


async def _labyard_on(daemon: lxd_daemons.Daemon) -> AsyncIterator[Labyard]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"labyard-test-{daemon.engine.client}-"))
    instance = Labyard(lxd_settings(daemon, data_dir, "services"))
    yield instance
    await dismantle(instance)
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
async def lxd_labyard(lxd_daemon: lxd_daemons.Daemon) -> AsyncIterator[Labyard]:
    """A labyard instance of its own on the lxd driver (the session's LXD daemon)."""
    async for instance in _labyard_on(lxd_daemon):
        yield instance


@pytest.fixture(scope="session")
async def incus_labyard(incus_daemon: lxd_daemons.Daemon) -> AsyncIterator[Labyard]:
    """The same on the session's Incus daemon: the lxd driver speaking to Incus."""
    async for instance in _labyard_on(incus_daemon):
        yield instance


class Starter:
    """Starts playgrounds for one test and destroys them after it."""

    def __init__(self, labyard: Labyard) -> None:
        self.labyard = labyard
        self.started: list[str] = []

    async def __call__(self, manifest: Manifest | str, lifetime_s: int | None = None) -> Playground:
        if isinstance(manifest, str):
            manifest = (
                manifest_from_text(manifest, "test.yaml")
                if "\n" in manifest
                else load_manifest(manifest)
            )
        playground = await self.labyard.playgrounds.start(manifest, lifetime_s=lifetime_s)
        self.started.append(playground.id)
        return playground

    async def exec(
        self, playground: Playground, command: str, machine: str | None = None, timeout: float = 60
    ) -> tuple[int, str, str]:
        async with await self.labyard.playgrounds.connect(playground.id, machine) as connection:
            result = await connection.run(command, timeout=timeout)
        return result.exit_code, result.stdout, result.stderr

    async def cleanup(self) -> None:
        for playground_id in self.started:
            if playground_id in [p.id for p in await self.labyard.playgrounds.list()]:
                await self.labyard.playgrounds.destroy(playground_id)


@pytest.fixture
async def start(labyard: Labyard) -> AsyncIterator[Starter]:
    async with starting(labyard) as starter:
        yield starter


@pytest.fixture(scope="module")
async def starter(labyard: Labyard) -> AsyncIterator[Starter]:
    """Like `start`, for playgrounds that a whole test module shares."""
    async with starting(labyard) as starter:
        yield starter


@contextlib.asynccontextmanager
async def starting(labyard: Labyard) -> AsyncIterator[Starter]:
    """A Starter on `labyard` that destroys what it started on the way out (a failure too)."""
    starter = Starter(labyard)
    try:
        yield starter
    finally:
        await asyncio.shield(starter.cleanup())


def run_cli(
    settings: Settings, *args: str, input: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real `labyard` command against the test instance."""
    env = {
        **os.environ,
        "LABYARD_DATA_DIR": str(settings.data_dir),
        "LABYARD_IMAGES_DIR": str(settings.images_dir),
        "COLUMNS": "200",
    }
    env.pop("LABYARD_DATABASE_URL", None)
    return subprocess.run(
        [str(REPO / ".venv/bin/labyard"), *args],
        capture_output=True,
        text=True,
        input=input,
        env=env,
        timeout=timeout,
        check=False,
    )
