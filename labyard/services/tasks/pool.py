"""One SSH connection per machine of an attempt's playground, kept open across ticks.

A check tick is one exec on an open connection (a new channel, no new handshake). A
connection that fails is dropped and made again on the next use, so a machine that
restarts is picked up again without anyone noticing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from labyard.access import Connection, ExecResult, connect
from labyard.errors import AccessFailure, CommandTimeout, RuntimeFailure
from labyard.services.playgrounds import Playgrounds
from labyard.services.tasks.script import install_command

CONNECT_TIMEOUT_S = 10.0


@dataclass
class PoolStats:
    execs: int = 0
    """SSH execs run through this pool (checks, init tasks, answers): batching is measured
    by comparing this with the number of ticks."""
    connects: int = 0
    """Connections opened; each installs the check runner (see script.py) first."""


class MachinePool:
    def __init__(self, playgrounds: Playgrounds, playground_id: str) -> None:
        self.playgrounds = playgrounds
        self.playground_id = playground_id
        self.stats = PoolStats()
        self._connections: dict[str, Connection] = {}
        self._opening: dict[str, asyncio.Lock] = {}

    async def connection(self, machine: str) -> Connection:
        """The open connection to `machine`, connecting first when there is none."""
        lock = self._opening.setdefault(machine, asyncio.Lock())
        async with lock:  # two callers at once must not open two connections
            if machine not in self._connections:
                target = self.playgrounds.target(self.playground_id, machine)
                connection = await connect(target, CONNECT_TIMEOUT_S)
                try:
                    await _install_runner(connection)
                except BaseException:
                    connection.close()
                    raise
                self._connections[machine] = connection
                self.stats.connects += 1
            return self._connections[machine]

    async def run(
        self, machine: str, command: str, timeout: float, input: str | None = None
    ) -> ExecResult:
        connection = await self.connection(machine)
        self.stats.execs += 1
        try:
            return await connection.run(command, timeout=timeout, input=input)
        except CommandTimeout:
            raise  # the command was slow; the connection itself is fine
        except AccessFailure:
            self.drop(machine)
            raise

    def drop(self, machine: str) -> None:
        connection = self._connections.pop(machine, None)
        if connection is not None:
            connection.close()

    def close(self) -> None:
        """Close every connection (a paused or finished attempt holds none)."""
        for machine in list(self._connections):
            self.drop(machine)


async def _install_runner(connection: Connection) -> None:
    command, content = install_command()
    result = await connection.run(command, timeout=CONNECT_TIMEOUT_S, input=content)
    if result.exit_code != 0:
        raise RuntimeFailure(
            f"could not install the check runner in {connection.target.where}: "
            f"{result.stderr.strip()[-300:]}"
        )
