"""What a driver cannot do is a clear refusal, asked of the driver by capability, never by
its name: save-as and fork on a driver without `Snapshots` are a 409 that says so, and
nothing is made. A driver here is the fake one with its snapshots left out; the control is
the fake driver itself, which has them."""

from __future__ import annotations

import socket

import httpx
import pytest

from labyard.api.app import create_app
from labyard.errors import Conflict
from labyard.runtime import Driver, DriverState, MachineStatus, PlaygroundSpec, Started
from labyard.runtime.capabilities import Snapshots
from labyard.runtime.fake import FakeDriver
from labyard.services import Labyard
from labyard.services.saved import SavedPlaygrounds
from tests.services.fake_driver import LINUX, World


class WithoutSnapshots(Driver):
    """The fake driver's contract and nothing more."""

    name = "plain"

    def __init__(self, inner: FakeDriver) -> None:
        self.inner, self.version = inner, inner.version

    async def start(self, spec: PlaygroundSpec) -> Started:
        return await self.inner.start(spec)

    def adopt(self, playground_id: str, state: DriverState) -> DriverState:
        return self.inner.adopt(playground_id, state)

    async def status(self, playground_id: str) -> dict[str, MachineStatus]:
        return await self.inner.status(playground_id)

    async def dial(
        self, playground_id: str, machine: str, port: int = 22, timeout: float = 10.0
    ) -> socket.socket:
        return await self.inner.dial(playground_id, machine, port, timeout)

    async def stop(self, playground_id: str, now: bool = False) -> None:
        await self.inner.stop(playground_id, now)

    async def destroy(self, playground_id: str) -> None:
        await self.inner.destroy(playground_id)

    async def list(self) -> list[str]:
        return await self.inner.list()

    def images(self) -> dict[str, str]:
        return self.inner.images()


async def test_save_and_fork_without_snapshots_are_refused(world: World) -> None:
    plain = WithoutSnapshots(world.driver)
    assert not isinstance(plain, Snapshots) and isinstance(world.driver, Snapshots)
    server = Labyard(world.settings, driver=plain)
    try:
        user = world.account()
        playground = await server.playgrounds.start(LINUX, owner=user.owner)
        async with await server.playgrounds.connect(playground.id) as connection:
            assert (await connection.run("echo mine > /root/note")).exit_code == 0
        await server.playgrounds.stop(playground.id)
        with pytest.raises(Conflict, match="the plain runtime cannot save or fork") as refused:
            await server.saved.save(playground.id, "mine", owner=user.owner)
        assert refused.value.reason == "not_supported" and refused.value.exit_code == 4
        token = world.accounts.issue(user, "api", "test")
        transport = httpx.ASGITransport(create_app(server, reconcile_interval_s=None))
        auth = {"authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=auth) as api:
            saved = await api.post(f"/api/playgrounds/{playground.id}/save", json={"name": "x"})
            forked = await api.post(f"/api/playgrounds/{playground.id}/fork")
        for answer in (saved, forked):
            assert answer.status_code == 409, answer.text
            assert answer.json()["error"]["reason"] == "not_supported"
        assert server.saved.list(user.owner) == []
        # The control: the fake driver itself saves it, and the copy starts with its files.
        fake = SavedPlaygrounds(world.playgrounds, world.plans)
        kept = await fake.save(playground.id, "mine", owner=user.owner)
        copy = await fake.start(user.owner, kept.name)
        async with await world.playgrounds.connect(copy.id) as connection:
            assert (await connection.run("cat /root/note")).stdout == "mine\n"
    finally:
        server.close()
