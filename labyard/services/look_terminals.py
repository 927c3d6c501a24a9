"""The terminals of a look over a learner's shoulder (policy: looks.py).

- The view: a second tmux client of the learner's own tab (services/terminals.py), attached
  read-only and ignoring size (`attach -r -f ignore-size`): tmux drops every key it gets,
  and the learner's window keeps its size. Its PTY is sized to the learner's window, so the
  watcher sees the whole screen. `View` has no way to write: the only input it could give
  is the PTY's, and it does not expose it.
- The input channel, only while the learner grants it: one more client of the same tab,
  writable, also ignoring size; its screen is read and dropped (the view shows it).
"""

from __future__ import annotations

import contextlib
import shlex
from types import TracebackType

from labyard.access import Connection, PtySession
from labyard.errors import AccessFailure, Conflict
from labyard.services.looks import Target
from labyard.services.playgrounds import Playgrounds
from labyard.services.terminals import CONF_PATH, check_size

SIZE_TIMEOUT_S = 10.0


def _tmux(*args: str) -> str:
    return " ".join([f"tmux -u -L labyard -f {CONF_PATH}", *args])


def watch_command(tab: str) -> str:
    target = shlex.quote(f"={tab}")
    return "exec " + _tmux("attach-session", "-r", "-f", "read-only,ignore-size", "-t", target)


def input_command(tab: str) -> str:
    return "exec " + _tmux("attach-session", "-f", "ignore-size", "-t", shlex.quote(f"={tab}"))


def size_command(tab: str) -> str:
    size = shlex.quote("#{window_width} #{window_height}")
    return _tmux("display-message", "-p", "-t", shlex.quote(f"={tab}:"), size)


async def window_size(connection: Connection, tab: str) -> tuple[int, int] | None:
    """The learner's window size (cols, rows), None when the tab is not open."""
    result = await connection.run(size_command(tab), timeout=SIZE_TIMEOUT_S)
    try:
        cols, rows = (int(x) for x in result.stdout.split())
    except ValueError:
        return None
    return check_size(cols, rows)


class View:
    """The read-only view: output only."""

    def __init__(self, connection: Connection, pty: PtySession, size: tuple[int, int]) -> None:
        self._connection = connection
        self._pty = pty
        self.size = size

    async def read(self) -> bytes:
        return await self._pty.read()

    async def follow_size(self, tab: str) -> tuple[int, int] | None:
        """The learner's window size if it changed since (the view then takes it)."""
        found = await window_size(self._connection, tab)
        if found is None or found == self.size:
            return None
        self.size = found
        self._pty.resize(*found)
        return found

    async def close(self) -> None:
        self._pty.close()
        self._connection.close()
        with contextlib.suppress(AccessFailure):
            await self._connection.wait_closed()

    async def __aenter__(self) -> View:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class Keyboard:
    """The granted input channel: keystrokes in, its own screen dropped."""

    def __init__(self, connection: Connection, pty: PtySession) -> None:
        self._connection = connection
        self.pty = pty

    async def close(self) -> None:
        self.pty.close()
        self._connection.close()
        with contextlib.suppress(AccessFailure):
            await self._connection.wait_closed()

    async def __aenter__(self) -> Keyboard:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def _connect(playgrounds: Playgrounds, target: Target) -> tuple[Connection, tuple[int, int]]:
    connection = await playgrounds.connect(target.playground_id, target.machine, target.owner)
    try:
        size = await window_size(connection, target.tab)
    except BaseException:
        connection.close()
        raise
    if size is None:
        connection.close()
        raise Conflict(f"the learner has no terminal {target.tab!r} open on {target.machine}")
    return connection, size


async def open_view(playgrounds: Playgrounds, target: Target) -> View:
    """Attach the read-only view to the learner's tab (Conflict when it is not open)."""
    connection, size = await _connect(playgrounds, target)
    try:
        pty = await connection.open_pty(watch_command(target.tab), cols=size[0], rows=size[1])
    except BaseException:
        connection.close()
        raise
    return View(connection, pty, size)


async def open_keyboard(playgrounds: Playgrounds, target: Target) -> Keyboard:
    """Attach the granted input client to the learner's tab."""
    connection, size = await _connect(playgrounds, target)
    try:
        pty = await connection.open_pty(input_command(target.tab), cols=size[0], rows=size[1])
    except BaseException:
        connection.close()
        raise
    return Keyboard(connection, pty)
