"""Ports inside machines, reached over SSH: the web port proxy's and share links' way in.

Every request to a machine's port is a `direct-tcpip` channel on one SSH connection kept per
machine, so nothing above the runtime opens a socket to a machine address, whatever the
driver (a pod IP, a VM that forwards only its sshd). A kept connection that has died is
replaced once; one idle for `IDLE_S` is closed at the next request to any machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from labyard.access import Connection, PortStream
from labyard.errors import AccessFailure, NotFound
from labyard.services.playgrounds import Playgrounds

IDLE_S = 120.0
"""How long a machine's SSH connection is kept with no request through it."""


@dataclass
class _Kept:
    connection: Connection
    used: float


class MachinePorts:
    def __init__(self, playgrounds: Playgrounds) -> None:
        self.playgrounds = playgrounds
        self._kept: dict[tuple[str, str], _Kept] = {}
        self._connecting: dict[tuple[str, str], asyncio.Lock] = {}

    async def open(
        self, playground_id: str, machine: str, port: int, owner: str | None = None
    ) -> PortStream:
        """A byte stream to `port` of the machine (`owner`'s only, when given: anyone
        else's is `NotFound`). `AccessFailure` when nothing listens there."""
        if not 1 <= port <= 65535:
            raise NotFound(f"{port} is not a TCP port (1-65535)", reason="bad_port")
        self.playgrounds.target(playground_id, machine, owner)  # NotFound if not theirs
        self._close_idle()
        key = (playground_id, machine)
        connection = await self._connection(key)
        try:
            return await connection.open_port(port)
        except AccessFailure:
            if not connection.closed:
                raise  # the machine refused: nothing listens on that port
            self._kept.pop(key, None)  # died since it was last used: once more, anew
        return await (await self._connection(key)).open_port(port)

    async def _connection(self, key: tuple[str, str]) -> Connection:
        async with self._connecting.setdefault(key, asyncio.Lock()):
            kept = self._kept.get(key)
            if kept is None or kept.connection.closed:
                connection = await self.playgrounds.connect(*key)
                kept = self._kept[key] = _Kept(connection, time.monotonic())
            kept.used = time.monotonic()
            return kept.connection

    def _close_idle(self) -> None:
        now = time.monotonic()
        for key, kept in list(self._kept.items()):
            if now - kept.used > IDLE_S or kept.connection.closed:
                kept.connection.close()
                del self._kept[key]
                self._connecting.pop(key, None)

    def close(self) -> None:
        """Close every kept connection (the server is shutting down)."""
        for kept in self._kept.values():
            # One whose event loop has ended (a server run in a thread) is gone already.
            with contextlib.suppress(RuntimeError):
                kept.connection.close()
        self._kept.clear()
