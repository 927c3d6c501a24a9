"""Init tasks: scripts run in the machines once a playground is up, in `needs` order."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Awaitable, Callable

from labyard.access import Connection
from labyard.errors import InvalidInput
from labyard.manifest import InitTask, Manifest

ConnectionFor = Callable[[str], Awaitable[Connection]]


class InitTaskFailed(InvalidInput):
    reason = "init_task_failed"


async def run_init_tasks(manifest: Manifest, connection_for: ConnectionFor) -> None:
    """Run every init task once, each as soon as the tasks it needs have succeeded;
    independent tasks run side by side. The first failure cancels the rest."""
    done: dict[str, asyncio.Event] = {t.name: asyncio.Event() for t in manifest.init}
    default_machine = manifest.machines[0].name

    async def run(task: InitTask) -> None:
        for need in task.needs:
            await done[need].wait()
        connection = await connection_for(task.machine or default_machine)
        command = task.run
        if task.user != "root":
            command = f"su - {shlex.quote(task.user)} -s /bin/bash -c {shlex.quote(task.run)}"
        result = await connection.run(command, timeout=task.timeout_seconds)
        if result.exit_code != 0:
            output = (result.stderr or result.stdout).strip()[-500:]
            raise InitTaskFailed(
                f"init task {task.name!r} failed with exit code {result.exit_code}: {output}"
            )
        done[task.name].set()

    try:
        async with asyncio.TaskGroup() as group:
            for task in manifest.init:
                group.create_task(run(task))
    except ExceptionGroup as failures:
        raise failures.exceptions[0] from None  # the first failure says what went wrong
