"""How the services cope with machines that are slow, never ready or fail at boot: the fake
driver's variants (`Behaviour`), through `Playgrounds.start` as the API and CLI call it."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from labyard.errors import RuntimeFailure
from labyard.runtime.fake import Behaviour
from labyard.types import MachineState
from tests.services.fake_driver import LINUX, World


async def test_a_slow_machine_is_pending_then_running(world: World) -> None:
    world.driver.behaviour = Behaviour(boot_delay_s=1.5)
    starting = asyncio.create_task(world.playgrounds.start(LINUX))
    seen: set[str] = set()
    while not starting.done():
        for playground_id in await world.driver.list():
            statuses = await world.driver.status(playground_id)
            seen |= {s.state for s in statuses.values()}
        await asyncio.sleep(0.05)
    playground = starting.result()
    assert MachineState.PENDING in seen and MachineState.STOPPED not in seen, seen
    assert playground.state == "running" and playground.machines[0].state == "running"


async def test_a_machine_that_never_answers_is_rolled_back_at_the_timeout(world: World) -> None:
    world.driver.behaviour = Behaviour(never_ready=True)
    world.playgrounds.settings = dataclasses.replace(world.settings, start_timeout_s=2.0)
    with pytest.raises(RuntimeFailure, match="did not start within 2 s; it was removed again"):
        await world.playgrounds.start(LINUX)
    assert await world.playgrounds.list() == [] and await world.driver.list() == []
    # The control: the same start with machines that answer.
    world.driver.behaviour = Behaviour()
    assert (await world.playgrounds.start(LINUX)).state == "running"


async def test_a_machine_that_fails_at_boot_says_why_and_nothing_is_left(world: World) -> None:
    world.driver.behaviour = Behaviour(fail="its disk would not mount")
    with pytest.raises(RuntimeFailure, match="its disk would not mount"):
        await world.playgrounds.start(LINUX)
    assert await world.playgrounds.list() == [] and await world.driver.list() == []
