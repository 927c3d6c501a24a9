"""Bridge the local terminal to a PTY in a machine: raw mode, resize, exit status."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import termios
import tty
from collections.abc import Iterator

from labyard.access import Connection


@contextlib.contextmanager
def _raw(fd: int) -> Iterator[None]:
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def interactive_shell(connection: Connection) -> int:
    """Run a login shell on a PTY, wired to this process's terminal; returns its exit code.

    When stdin is not a terminal (`labyard ssh ID < script`), it is like `ssh host < script`:
    no PTY, and the login shell reads its commands from stdin.
    """
    if not os.isatty(sys.stdin.fileno()):
        return await _piped_shell(connection)
    loop = asyncio.get_running_loop()
    size = shutil.get_terminal_size()
    term = os.environ.get("TERM", "xterm-256color")
    session = await connection.open_pty(cols=size.columns, rows=size.lines, term=term)
    stdin = sys.stdin.fileno()

    def forward_input() -> None:
        data = os.read(stdin, 65536)
        if data:
            session.write(data)
        else:
            loop.remove_reader(stdin)

    def resize() -> None:
        new = shutil.get_terminal_size()
        session.resize(new.columns, new.lines)

    with _raw(stdin):
        loop.add_reader(stdin, forward_input)
        loop.add_signal_handler(signal.SIGWINCH, resize)
        try:
            while data := await session.read():
                os.write(sys.stdout.fileno(), data)
        finally:
            loop.remove_reader(stdin)
            loop.remove_signal_handler(signal.SIGWINCH)
    await session.wait_closed()
    return session.exit_code or 0


async def _piped_shell(connection: Connection) -> int:
    result = await connection.run('exec "${SHELL:-/bin/sh}" -l', input=sys.stdin.buffer.read())
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.exit_code
