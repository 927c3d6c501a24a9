"""A machine that fails says why, wherever its playground is shown: the services' view, the
JSON API and `labyard playground status`. On the fake driver, whose machines are processes
answering real SSH: one of them is killed behind labyard's back, as a crash would."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess

import httpx

from labyard.api.app import create_app
from labyard.services import Labyard, reconcile
from tests.conftest import REPO
from tests.services.fake_driver import CLUSTER, World

DEAD = "node-02"


async def kill_machine(world: World, playground_id: str, machine: str) -> None:
    """SIGKILL to the machine's process, then wait (10 s at most) until the driver sees it."""
    control = world.driver.root / playground_id / machine / "control"
    os.kill(int((control / "pid").read_text()), signal.SIGKILL)
    async with asyncio.timeout(10):
        while (await world.driver.status(playground_id))[machine].state != "failed":
            await asyncio.sleep(0.02)


async def test_a_failed_machine_says_why_in_the_services_api_and_cli(world: World) -> None:
    user = world.account()
    playground = await world.playgrounds.start(CLUSTER, owner=user.owner)
    await kill_machine(world, playground.id, DEAD)

    report = await reconcile(world.playgrounds)
    assert report.marked_failed == [playground.id], report
    seen = await world.playgrounds.get(playground.id)
    assert seen.state == "failed"
    machines = {m.name: m for m in seen.machines}
    assert machines[DEAD].state == "failed"
    assert "its process ended by itself" in machines[DEAD].reason
    assert machines["node-01"].state == "running" and machines["node-01"].reason == ""

    # The JSON API, as its owner sees it.
    token = world.accounts.issue(user, "api", "test")
    server = Labyard(world.settings, driver=world.driver)  # the server's view of it
    try:
        app = create_app(server, reconcile_interval_s=None)
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answer = await client.get(
                f"/api/playgrounds/{playground.id}", headers={"authorization": f"Bearer {token}"}
            )
    finally:
        server.close()
    assert answer.status_code == 200
    served = {m["name"]: m for m in answer.json()["machines"]}
    assert served[DEAD]["state"] == "failed" and "ended by itself" in served[DEAD]["reason"]

    # `labyard playground status`, acting on this instance with the fake driver.
    env = {
        **os.environ,
        "LABYARD_DRIVER": "fake",
        "LABYARD_DATA_DIR": str(world.settings.data_dir),
        "LABYARD_DATABASE_URL": world.settings.database_url,
        "COLUMNS": "300",
    }
    status = subprocess.run(
        [str(REPO / ".venv/bin/labyard"), "playground", "status", playground.id],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    assert f"{DEAD} 127.0.0.1 (failed: machine {DEAD}: its process ended by itself)" in (
        " ".join(status.stdout.split())
    )

    # A restart brings it back; the sentence goes with the failure.
    restarted = await world.playgrounds.restart(playground.id)
    assert restarted.state == "running"
    assert all(m.state == "running" and not m.reason for m in restarted.machines)
    async with await world.playgrounds.connect(playground.id, DEAD) as connection:
        assert (await connection.run("hostname")).stdout == f"{DEAD}\n"
