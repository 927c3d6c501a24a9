"""Run one command in a machine and collect its result; a timeout kills what it started."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncssh

from labyard.access.pty import exit_code_from
from labyard.errors import AccessFailure, CommandTimeout, InvalidInput

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# The kill after a timeout is best effort; it must not turn one timeout into two.
_KILL_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ExecResult:
    """The outcome of `Connection.run`; output decoded as UTF-8 (bad bytes replaced)."""

    exit_code: int
    stdout: str
    stderr: str


async def run_command(
    conn: asyncssh.SSHClientConnection,
    where: str,
    command: str,
    *,
    timeout: float | None,
    input: bytes | None,
    env: Mapping[str, str] | None,
) -> ExecResult:
    """See `Connection.run`; asyncssh/OS errors are left to the caller to translate."""
    # The shell first reports its pid. sshd made it a session leader, so the pid is also
    # the process group of everything the command starts: that is what a timeout kills.
    # (sshd's own "signal" request is refused for root sessions, which skip privsep.)
    script = f"echo $$\n{_with_env(command, env)}"
    # Without input, stdin is /dev/null so a command reading stdin sees EOF, not a hang.
    stdin: Any = asyncssh.PIPE if input else asyncssh.DEVNULL
    process: asyncssh.SSHClientProcess[Any] | None = None
    group: int | None = None
    try:
        async with asyncio.timeout(timeout):
            process = await conn.create_process(
                script, input=input or None, stdin=stdin, encoding=None
            )
            group = _parse_pid(await process.stdout.readline())
            completed = await process.wait()
    except TimeoutError as exc:
        await _kill(conn, process, group)
        raise CommandTimeout(
            f"a command on {where} did not finish within {timeout:g} s", detail=command
        ) from exc
    return _result(completed, where, command)


def _result(completed: asyncssh.SSHCompletedProcess, where: str, command: str) -> ExecResult:
    exit_code = exit_code_from(completed.returncode)
    if exit_code is None:
        raise AccessFailure(
            f"a command on {where} ended without an exit status",
            detail=command,
            reason="no_exit_status",
        )
    return ExecResult(exit_code, _decode(completed.stdout), _decode(completed.stderr))


def _with_env(command: str, env: Mapping[str, str] | None) -> str:
    if not env:
        return command
    for name in env:
        if not _ENV_NAME.match(name):
            raise InvalidInput(f"not an environment variable name: {name!r}")
    exports = " ".join(f"{name}={shlex.quote(value)}" for name, value in env.items())
    return f"export {exports}\n{command}"


def _parse_pid(line: bytes) -> int | None:
    text = line.strip()
    return int(text) if text.isdigit() else None


async def _kill(
    conn: asyncssh.SSHClientConnection,
    process: asyncssh.SSHClientProcess[Any] | None,
    group: int | None,
) -> None:
    """Kill a timed-out command's process group over a second channel, then hang up."""
    if group is not None:
        with contextlib.suppress(asyncssh.Error, OSError):
            await conn.run(f"kill -KILL -- -{group}", check=False, timeout=_KILL_TIMEOUT_S)
    if process is not None:
        process.close()


def _decode(output: Any) -> str:
    if isinstance(output, bytes):
        return output.decode("utf-8", errors="replace")
    return str(output or "")
