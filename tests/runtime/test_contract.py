"""The driver contract (labyard/runtime/base.py), held against every driver: the same promises,
the same tests, the fake driver, the local one (real runc machines) and the lxd one against a
real LXD daemon and a real Incus daemon of the session's own, side by side.

A driver here is driven directly, as the services drive it, with nothing above it: its
machines are reached only through `dial` and SSH with the pinned host key.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from labyard.access import (
    Connection,
    Target,
    connect,
    generate_keypair,
    public_key_of,
    wait_until_ready,
)
from labyard.errors import NotFound
from labyard.manifest import Manifest, manifest_from_text
from labyard.runtime import (
    Driver,
    MachineState,
    PlaygroundSpec,
    Started,
    new_playground_id,
)
from labyard.runtime.capabilities import MemoryFigures, Snapshots
from labyard.runtime.fake import FakeDriver
from labyard.runtime.local.driver import LocalDriver
from labyard.runtime.local.names import nft_table
from labyard.runtime.lxd.driver import LxdDriver
from labyard.settings import Settings
from tests.conftest import IMAGES_DIR, lxd_settings

DEADLINE_S = 30.0
MANIFEST = """\
kind: playground
name: contract
machines:
  - {name: one, memory: 256MiB, disk: 1GiB}
  - {name: two, memory: 256MiB, disk: 1GiB}
"""


@dataclass
class Engine:
    """One kind of driver, and how to make another instance of it (a restarted control
    plane) and to kill a machine's init behind its back."""

    name: str
    make: Callable[[], Driver]
    kill_init: Callable[[Driver, str, str], Awaitable[None]]


async def _kill_local_init(driver: Driver, playground_id: str, machine: str) -> None:
    assert isinstance(driver, LocalDriver)
    state = await driver.runc.state(f"{playground_id}-{machine}")
    assert state is not None
    os.kill(int(str(state["pid"])), signal.SIGKILL)


async def _kill_fake_init(driver: Driver, playground_id: str, machine: str) -> None:
    assert isinstance(driver, FakeDriver)
    pid = int((driver.root / playground_id / machine / "control" / "pid").read_text())
    os.kill(pid, signal.SIGKILL)


async def _kill_lxd_init(driver: Driver, playground_id: str, machine: str) -> None:
    assert isinstance(driver, LxdDriver)
    name = f"ly-{playground_id}-{machine}"
    state = await driver.lxd.get(f"/1.0/instances/{name}/state")
    os.kill(int(state["pid"]), signal.SIGKILL)


@pytest.fixture(scope="module", params=["fake", "local", "lxd", "incus"])
def engine(request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    data_dir = Path(tempfile.mkdtemp(prefix="labyard-contract-"))
    if request.param == "fake":
        yield Engine("fake", lambda: FakeDriver(data_dir / "fake"), _kill_fake_init)
    elif request.param in ("lxd", "incus"):  # one driver for both (runtime/lxd)
        daemon = request.getfixturevalue(f"{request.param}_daemon")
        settings = lxd_settings(daemon, data_dir, "contract")
        yield Engine(request.param, lambda: LxdDriver(settings), _kill_lxd_init)
    else:
        settings = Settings(
            data_dir=data_dir, images_dir=IMAGES_DIR, database_url="sqlite:///unused"
        )
        yield Engine("local", lambda: LocalDriver(settings), _kill_local_init)
        table = nft_table(settings.instance)
        subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True)
    shutil.rmtree(data_dir, ignore_errors=True)


@dataclass
class Run:
    """A playground spec for a test, and what it takes to get into its machines."""

    spec: PlaygroundSpec
    client_key: str

    def target(self, driver: Driver, machine: str) -> Target:
        playground_id = self.spec.id

        async def dial(timeout: float) -> socket.socket:
            return await driver.dial(playground_id, machine, 22, timeout)

        return Target(
            f"{machine}.{playground_id}",
            dial,
            public_key_of(self.spec.host_keys[machine]),
            self.client_key,
        )


def new_run(manifest: Manifest | None = None) -> Run:
    manifest = manifest or manifest_from_text(MANIFEST, "contract.yaml")
    playground_id = new_playground_id()
    client = generate_keypair()
    hosts = {m.name: generate_keypair(m.name).private_openssh for m in manifest.machines}
    spec = PlaygroundSpec(playground_id, manifest, client.public_openssh, hosts, "contract")
    return Run(spec, client.private_openssh)


@pytest.fixture
async def driver(engine: Engine) -> AsyncIterator[Driver]:
    made = engine.make()
    yield made
    for playground_id in await made.list():
        await made.destroy(playground_id)


async def ready(driver: Driver, run: Run, machine: str) -> Connection:
    return await wait_until_ready(run.target(driver, machine), DEADLINE_S)


async def states(driver: Driver, playground_id: str) -> dict[str, MachineState]:
    return {name: s.state for name, s in (await driver.status(playground_id)).items()}


async def wait_for(what: str, check: Callable[[], Awaitable[bool]]) -> None:
    end = time.monotonic() + DEADLINE_S
    while not await check():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {DEADLINE_S:g} s waiting for {what}")
        await asyncio.sleep(0.05)


# -- start, reach, status ------------------------------------------------------------------


async def test_start_runs_every_machine_and_its_sshd_answers_through_dial(
    driver: Driver,
) -> None:
    run = new_run()
    started = await driver.start(run.spec)
    assert [m.name for m in started.machines] == ["one", "two"]
    assert started.state["driver"] == driver.name and started.state["version"] == driver.version
    for machine in ("one", "two"):
        async with await ready(driver, run, machine) as connection:
            assert (await connection.run("echo $((6 * 7))")).stdout == "42\n"
    assert await states(driver, run.spec.id) == {"one": "running", "two": "running"}
    assert run.spec.id in await driver.list()


async def test_pending_is_seen_while_machines_boot(driver: Driver) -> None:
    run = new_run()
    seen: set[MachineState] = set()
    starting = asyncio.create_task(driver.start(run.spec))
    reached = False
    while not reached:
        seen |= set((await states(driver, run.spec.id)).values())
        if starting.done():
            try:
                (await ready(driver, run, "one")).close()
                reached = True
            except Exception:
                pass
        await asyncio.sleep(0.01)
    await starting
    assert MachineState.PENDING in seen and MachineState.STOPPED not in seen, seen


async def test_a_machine_that_dies_is_failed_with_a_sentence(
    engine: Engine, driver: Driver
) -> None:
    run = new_run()
    await driver.start(run.spec)
    for machine in ("one", "two"):
        (await ready(driver, run, machine)).close()
    await engine.kill_init(driver, run.spec.id, "two")

    async def failed() -> bool:
        return (await states(driver, run.spec.id))["two"] == MachineState.FAILED

    await wait_for("machine two to be failed", failed)
    status = (await driver.status(run.spec.id))["two"]
    assert "two" in status.reason and "by itself" in status.reason, status.reason
    assert (await states(driver, run.spec.id))["one"] == MachineState.RUNNING  # the control
    await driver.start(run.spec)  # what failed starts again
    async with await ready(driver, run, "two") as connection:
        assert (await connection.run("true")).exit_code == 0


async def test_dial_of_an_unknown_playground_is_not_found(driver: Driver) -> None:
    with pytest.raises(NotFound):
        await driver.dial(new_playground_id(), "one")


# -- stop, start again, destroy ------------------------------------------------------------


async def test_stop_then_start_keeps_a_file_written_before(driver: Driver) -> None:
    run = new_run()
    await driver.start(run.spec)
    async with await ready(driver, run, "one") as connection:
        assert (await connection.run("echo kept > /root/note && sync")).exit_code == 0
    await driver.stop(run.spec.id)
    assert await states(driver, run.spec.id) == {"one": "stopped", "two": "stopped"}
    await driver.start(run.spec)
    async with await ready(driver, run, "one") as connection:
        assert (await connection.run("cat /root/note")).stdout == "kept\n"


async def test_destroy_is_idempotent_and_finishes_a_start_that_died_half_way(
    driver: Driver,
) -> None:
    run = new_run()
    starting = asyncio.create_task(driver.start(run.spec))
    await wait_for("the start to make something", lambda: _listed(driver, run.spec.id))
    starting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await starting  # cancelled half-way (or, on a fast day, just done)
    await driver.destroy(run.spec.id)
    assert run.spec.id not in await driver.list()
    assert await driver.status(run.spec.id) == {}
    await driver.destroy(run.spec.id)  # already gone is success
    # The control: a whole start is destroyed the same way.
    whole = new_run()
    await driver.start(whole.spec)
    await driver.destroy(whole.spec.id)
    assert whole.spec.id not in await driver.list()


async def _listed(driver: Driver, playground_id: str) -> bool:
    return playground_id in await driver.list()


# -- a restarted control plane ---------------------------------------------------------------


async def test_a_new_driver_lists_and_adopts_a_running_playground(
    engine: Engine, driver: Driver
) -> None:
    run = new_run()
    started: Started = await driver.start(run.spec)
    for machine in ("one", "two"):
        (await ready(driver, run, machine)).close()
    fresh = engine.make()  # the control plane was killed: nothing carried over in memory
    assert run.spec.id in await fresh.list()
    with pytest.raises(NotFound):  # not adopted yet: it cannot know where the machines are
        await fresh.dial(run.spec.id, "one")
    assert fresh.adopt(run.spec.id, started.state) == started.state
    assert await states(fresh, run.spec.id) == {"one": "running", "two": "running"}
    for machine in ("one", "two"):
        async with await connect(run.target(fresh, machine)) as connection:
            assert (await connection.run("hostname")).stdout == f"{machine}\n"
    await fresh.stop(run.spec.id)
    assert await states(driver, run.spec.id) == {"one": "stopped", "two": "stopped"}


# -- optional capabilities -----------------------------------------------------------------


async def test_save_as(driver: Driver) -> None:
    assert isinstance(driver, Snapshots)  # every driver here can (a driver without: test_saved)
    run = new_run()
    await driver.start(run.spec)
    async with await ready(driver, run, "one") as connection:
        assert (await connection.run("echo saved > /root/note && sync")).exit_code == 0
    await driver.stop(run.spec.id)
    image = f"contract-{run.spec.id}"
    await driver.save_images(
        run.spec.id, {"one": image}, running=False, owner="contract", description="a test"
    )
    try:
        assert driver.images()[image] == "contract"
        again = new_run(
            manifest_from_text(
                f"kind: playground\nname: again\nmachines:\n  - {{name: one, image: {image}}}\n",
                "again.yaml",
            )
        )
        await driver.start(again.spec)
        async with await ready(driver, again, "one") as connection:
            assert (await connection.run("cat /root/note")).stdout == "saved\n"
        await driver.destroy(again.spec.id)
    finally:
        await asyncio.to_thread(driver.remove_images, [image])
    assert image not in driver.images()


async def test_memory_figures_where_the_driver_has_them(driver: Driver) -> None:
    if not isinstance(driver, MemoryFigures):
        assert driver.name == "fake"
        return
    run = new_run()
    await driver.start(run.spec)
    (await ready(driver, run, "one")).close()
    memory = await driver.machine_memory(run.spec.id)
    assert set(memory) == {"one", "two"} and all(0 < used < 256 * 2**20 for used in memory.values())


async def test_images_lists_what_it_can_run(driver: Driver) -> None:
    runnable = driver.images()
    assert runnable.get("linux") == ""  # built by scripts/setup.sh, everyone's
    run = new_run(
        manifest_from_text(
            "kind: playground\nname: nope\nmachines:\n  - {name: one, image: no-such-image}\n",
            "nope.yaml",
        )
    )
    with pytest.raises(NotFound):
        await driver.start(run.spec)
    await driver.destroy(run.spec.id)
    assert run.spec.id not in await driver.list()
