"""The escape suite's machines: one `linux` and one `docker` playground for the whole
package, on each driver that runs machines for strangers (local, and lxd on LXD and on
Incus), each case run from root in every one. Limits are small so exhaustion cases end fast."""

from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from labyard.manifest import manifest_from_text
from labyard.services import Labyard, Playground

MEMORY_MIB = 512
PROCESSES = 512
DISK_MIB = 2048


def manifest(image: str, name: str | None = None) -> str:
    return f"""
kind: playground
name: {name or "escape-" + image}
machines:
  - name: m
    image: {image}
    memory: {MEMORY_MIB}MiB
    processes: {PROCESSES}
    disk: {DISK_MIB}MiB
"""


@dataclass
class Machine:
    """Root in one machine of a playground, driven over SSH like a learner's shell."""

    labyard: Labyard
    playground: Playground
    image: str

    @property
    def address(self) -> str:
        return self.playground.machines[0].address

    async def sh(self, command: str, timeout: float = 120) -> tuple[int, str]:
        """(exit code, stdout + stderr) of a bash command run as root in the machine."""
        async with await self.labyard.playgrounds.connect(self.playground.id) as connection:
            result = await connection.run(f"bash -c {shlex.quote(command)}", timeout=timeout)
        return result.exit_code, result.stdout + result.stderr

    async def ok(self, command: str, timeout: float = 120) -> str:
        """Output of a command that must succeed: the harmless control of each case."""
        code, out = await self.sh(command, timeout)
        assert code == 0, f"control failed in {self.image}: {command!r} -> {code}: {out}"
        return out

    async def refused(self, command: str, timeout: float = 120) -> str:
        """Output of an attack that must fail."""
        code, out = await self.sh(command, timeout)
        assert code != 0, f"attack worked in {self.image}: {command!r} -> {out}"
        return out

    async def python(self, script: str, timeout: float = 60) -> tuple[int, str]:
        return await self.sh(f"python3 - <<'PY'\n{script}\nPY", timeout)


async def _until_ready(machine: Machine) -> None:
    deadline = time.monotonic() + 90
    want = "active" if machine.image == "docker" else "running"
    probe = (
        "systemctl is-active docker"
        if machine.image == "docker"
        else ("systemctl is-system-running")
    )
    while True:
        _, out = await machine.sh(probe, timeout=20)
        if out.strip() == want:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{machine.image} machine not ready: {out!r}")
        await asyncio.sleep(0.5)


@pytest.fixture(scope="package", params=["local", "lxd", "incus"])
def engine(request: pytest.FixtureRequest) -> Labyard:
    """The labyard instance whose machines the cases attack: every case runs against the
    local driver's runc machines and the lxd driver's containers, on LXD and on Incus."""
    fixture = {"local": "labyard", "lxd": "lxd_labyard", "incus": "incus_labyard"}
    found: Labyard = request.getfixturevalue(fixture[request.param])
    return found


@pytest.fixture(scope="package")
async def machines(engine: Labyard) -> AsyncIterator[dict[str, Machine]]:
    labyard = engine
    started = []
    try:
        for image in ("linux", "docker"):
            playground = await labyard.playgrounds.start(
                manifest_from_text(manifest(image), f"{image}.yaml")
            )
            started.append(Machine(labyard, playground, image))
        await asyncio.gather(*(_until_ready(m) for m in started))
        yield {m.image: m for m in started}
    finally:
        for machine in started:
            await labyard.playgrounds.destroy(machine.playground.id)


@pytest.fixture(params=["linux", "docker"])
def machine(request: pytest.FixtureRequest, machines: dict[str, Machine]) -> Machine:
    found: Machine = machines[request.param]
    return found
