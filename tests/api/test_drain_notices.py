"""Owners of the playgrounds a drain stopped are told why, and nobody else is: on the fake
driver made to look like two servers (tests/api/two_servers.py), two learners' playgrounds
on m2 are drained; each owner's JSON, playground page, "my playgrounds" and the CLI carry
the notice, the other learner gets 404, a playground on m1 has none (the control), and
starting one again clears it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from labyard.manifest import load_manifest
from labyard.services import Labyard
from labyard.services.cluster.members import drained_notice
from tests.api.test_admin_cluster import person, signed_in_as
from tests.api.two_servers import TwoServers, instance
from tests.conftest import REPO

LINUX = load_manifest("linux")
STOPPED = re.compile(
    r"Stopped on \d{4}-\d\d-\d\d \d\d:\d\d UTC: the server holding this playground is being "
    r"serviced\. Start a new playground now, or start this one again once that server is back\."
)
NOT_RUNNING = "it cannot start again until that server is back"
BACK = re.compile(
    r"The server holding this playground is back since \d{4}-\d\d-\d\d \d\d:\d\d UTC: "
    r"start it again to go on where you left off\."
)


@pytest.fixture
async def clustered() -> AsyncIterator[Labyard]:
    async for made in instance(clustered=True):
        yield made


def test_the_notice_says_when_it_stopped_and_what_to_do() -> None:
    at = datetime(2026, 12, 8, 14, 3, 59, tzinfo=UTC)
    assert drained_notice(True, at) == (
        "Stopped on 2026-12-08 14:03 UTC: the server holding this playground is being "
        "serviced. Start a new playground now, or start this one again once that server is back."
    )
    assert drained_notice(False, at) == (
        "Since 2026-12-08 14:03 UTC, the server holding this playground is being serviced: "
        "it cannot start again until that server is back. Start a new playground meanwhile."
    )


def cli(labyard: Labyard, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `labyard` command on this instance's data dir and database (the fake driver
    reads its machines from the same folder)."""
    settings = labyard.settings
    env = {
        **os.environ,
        "LABYARD_DATA_DIR": str(settings.data_dir),
        "LABYARD_IMAGES_DIR": str(settings.images_dir),
        "LABYARD_DATABASE_URL": settings.database_url,
        "LABYARD_DRIVER": "fake",
        "LABYARD_CONFIG": tempfile.mkdtemp(prefix="labyard-test-cli-config-"),
        "COLUMNS": "300",
    }
    for remote in ("LABYARD_SERVER", "LABYARD_TOKEN"):
        env.pop(remote, None)
    return subprocess.run(
        [str(REPO / ".venv/bin/labyard"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


async def test_a_drain_tells_each_owner_why_until_it_starts_again(clustered: Labyard) -> None:
    driver = clustered.driver
    assert isinstance(driver, TwoServers)
    ada, bob = person(clustered, "learner"), person(clustered, "learner")
    adas = await clustered.playgrounds.start(LINUX, owner=ada.owner)
    bobs = await clustered.playgrounds.start(LINUX, owner=bob.owner)
    bobs_stopped = await clustered.playgrounds.start(LINUX, owner=bob.owner)
    await clustered.playgrounds.stop(bobs_stopped.id)
    elsewhere = await clustered.playgrounds.start(LINUX, owner=ada.owner)
    driver.on_m1.add(elsewhere.id)

    drained = await clustered.cluster.evacuate("m2")
    assert {(d.playground_id, d.was) for d in drained} == {
        (adas.id, "running"),
        (bobs.id, "running"),
        (bobs_stopped.id, "stopped"),
    }

    async with signed_in_as(clustered, ada) as a, signed_in_as(clustered, bob) as b:
        mine = (await a.get(f"/api/playgrounds/{adas.id}")).json()
        assert mine["state"] == "stopped" and STOPPED.fullmatch(mine["notice"]), mine
        theirs = (await b.get(f"/api/playgrounds/{bobs.id}")).json()
        assert theirs["state"] == "stopped" and STOPPED.fullmatch(theirs["notice"]), theirs
        already = (await b.get(f"/api/playgrounds/{bobs_stopped.id}")).json()
        assert already["notice"].startswith("Since ") and NOT_RUNNING in already["notice"]
        # The control: the playground on m1 ran on, with nothing to say.
        control = (await a.get(f"/api/playgrounds/{elsewhere.id}")).json()
        assert control["state"] == "running" and "notice" not in control

        # Nobody else sees it: the other learner's view of it is "not found".
        assert (await b.get(f"/api/playgrounds/{adas.id}")).status_code == 404
        foreign = await b.get(f"/playgrounds/{adas.id}")
        assert foreign.status_code == 404 and "being serviced" not in foreign.text
        assert adas.id not in (await b.get("/api/playgrounds")).text

        await pages_show_it(a, adas.id, mine["notice"], elsewhere.id)
        await cli_shows_it(clustered, adas.id, mine["notice"], elsewhere.id)

        # Draining again leaves a notice that was there (it is stopped now: "Since" would
        # lose when it stopped).
        await clustered.cluster.evacuate("m2")
        assert (await clustered.playgrounds.get(adas.id)).notice == mine["notice"]

        # Back: starting it again clears it (m1's first: the free plan runs one at a time).
        await clustered.cluster.restore("m2")
        await clustered.playgrounds.destroy(elsewhere.id)
        csrf = {"X-CSRF-Token": a.cookies.get("labyard_csrf", "")}
        restarted = await a.post(f"/api/playgrounds/{adas.id}/restart", headers=csrf)
        assert restarted.status_code == 200, restarted.text
        assert restarted.json()["state"] == "running" and "notice" not in restarted.json()
        assert "notice" not in (await a.get(f"/api/playgrounds/{adas.id}")).json()
        page = await a.get(f"/playgrounds/{adas.id}")
        assert re.search(r'<p [^>]*id="playground-notice" role="status" hidden></p>', page.text)
        assert "list-notice" not in (await a.get("/playgrounds")).text
    # Bob's is still stopped: since the restore, his notice says he can start it again.
    back = (await clustered.playgrounds.get(bobs.id)).notice
    assert BACK.fullmatch(back), back
    # The control: a stopped playground on m2 whose notice is no drain's keeps it.
    other = await clustered.playgrounds.start(LINUX)
    await clustered.playgrounds.stop(other.id)
    clustered.playgrounds.tell(other.id, "Ran in region Europe: India had no room.")
    await clustered.cluster.evacuate("m2")
    await clustered.cluster.restore("m2")
    kept = (await clustered.playgrounds.get(other.id)).notice
    assert kept == "Ran in region Europe: India had no room."
    assert BACK.fullmatch((await clustered.playgrounds.get(bobs.id)).notice)


async def pages_show_it(client: httpx.AsyncClient, drained: str, notice: str, other: str) -> None:
    """The playground's page shows it above the terminals; "my playgrounds", under it."""
    page = await client.get(f"/playgrounds/{drained}")
    assert page.status_code == 200, page.text
    banner = re.search(r'<p class="notice start-notice" id="playground-notice"[^>]*>', page.text)
    assert banner and 'role="status"' in banner.group(0) and "hidden" not in banner.group(0)
    assert f">{notice}</p>" in page.text and 'id="start-notice"' not in page.text
    control = await client.get(f"/playgrounds/{other}")
    assert "being serviced" not in control.text

    listed = (await client.get("/playgrounds")).text
    items = {i.split('"', 1)[0]: i for i in listed.split('<li class="list-item" data-id="')[1:]}
    assert f'<p class="list-notice" role="note">{notice}</p>' in items[drained]
    assert "list-notice" not in items[other]


async def cli_shows_it(labyard: Labyard, drained: str, notice: str, other: str) -> None:
    """`labyard playground status` prints it under the table; --json carries it."""
    shown = await asyncio.to_thread(cli, labyard, "playground", "status", drained)
    assert shown.returncode == 0, shown.stderr
    assert f"{drained}: {notice}" in shown.stdout, shown.stdout
    as_json = await asyncio.to_thread(cli, labyard, "playground", "status", drained, "--json")
    data: dict[str, Any] = json.loads(as_json.stdout)
    assert data["notice"] == notice
    control = await asyncio.to_thread(cli, labyard, "playground", "status", other)
    assert control.returncode == 0 and "being serviced" not in control.stdout
