"""Interactive terminal sessions over SSH, as bytes (the browser terminal decodes them)."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import asyncssh

from labyard.access._errors import translated

# Large enough to drain a burst of output (e.g. `cat` of a log) in a few reads, small enough
# that a websocket frame stays modest.
_READ_CHUNK = 64 * 1024


class PtySession:
    """A process on a pseudo-terminal in a machine: a login shell or one command.

    Bytes in, bytes out: output is not decoded here, so a multi-byte UTF-8 character split
    across two reads reaches the terminal emulator intact. stderr shares the terminal.
    """

    def __init__(self, process: asyncssh.SSHClientProcess[Any], where: str) -> None:
        self._process = process
        self._where = where

    async def read(self) -> bytes:
        """The next chunk of terminal output; `b""` once the session has ended."""
        with translated(self._where, "read from a terminal"):
            data: bytes = await self._process.stdout.read(_READ_CHUNK)
        return data

    def write(self, data: bytes) -> None:
        """Send keystrokes (or pasted text) to the terminal."""
        with translated(self._where, "write to a terminal"):
            self._process.stdin.write(data)

    async def drain(self) -> None:
        """Wait until written input fits the SSH channel's window, so a caller that awaits
        this after each `write` never queues more than one write's worth in memory."""
        with translated(self._where, "write to a terminal"):
            await self._process.stdin.drain()

    def resize(self, cols: int, rows: int) -> None:
        """Tell the terminal its new size; the shell sees SIGWINCH."""
        with translated(self._where, "resize a terminal"):
            self._process.change_terminal_size(cols, rows)

    @property
    def exit_code(self) -> int | None:
        """The exit status once the process ended (128+N if killed by signal N), else None."""
        return exit_code_from(self._process.returncode)

    def close(self) -> None:
        """End the session; sshd hangs up the terminal, which ends the shell and its jobs."""
        self._process.close()

    async def wait_closed(self) -> None:
        """Wait until the session's channel is fully closed."""
        with translated(self._where, "close a terminal"):
            await self._process.wait_closed()

    async def __aenter__(self) -> PtySession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()


def exit_code_from(returncode: int | None) -> int | None:
    """Shell convention from asyncssh's returncode (negative = killed by that signal)."""
    if returncode is None:
        return None
    return returncode if returncode >= 0 else 128 - returncode
