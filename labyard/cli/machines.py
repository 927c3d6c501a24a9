"""Getting into machines: `labyard ssh`, `exec`, `cp`, `port-forward`."""

from __future__ import annotations

import contextlib
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import typer

from labyard.cli._common import err
from labyard.cli.backend import Backend, run_on
from labyard.errors import InvalidInput

MACHINE = typer.Option(None, "--machine", "-m", help="Machine name (default: the first).")
_REMOTE = re.compile(r"^(?P<id>[a-z0-9]{8}):(?:(?P<machine>[a-z][a-z0-9-]*):)?(?P<path>.*)$")


def ssh(playground_id: str, machine: str | None = MACHINE) -> None:
    """Open an interactive shell in a machine."""
    from labyard.cli.terminal import interactive_shell

    async def work(backend: Backend) -> int:
        async with await backend.connect(playground_id, machine) as connection:
            return await interactive_shell(connection)

    raise typer.Exit(run_on(work))


def exec_(
    playground_id: str,
    command: list[str] = typer.Argument(..., help="Command, after `--`."),
    machine: str | None = MACHINE,
    timeout: float = typer.Option(None, help="Seconds before the command is killed."),
) -> None:
    """Run a command in a machine; its exit code becomes this command's."""
    line = command[0] if len(command) == 1 else shlex.join(command)

    async def work(backend: Backend) -> int:
        async with await backend.connect(playground_id, machine) as connection:
            result = await connection.run(line, timeout=timeout)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        return result.exit_code

    raise typer.Exit(run_on(work))


@dataclass(frozen=True)
class Location:
    path: str
    playground_id: str | None = None
    machine: str | None = None


def parse_location(text: str) -> Location:
    match = _REMOTE.match(text)
    if match is None:
        return Location(text)
    if not match["path"]:
        raise InvalidInput(f"{text}: missing the path inside the machine")
    return Location(match["path"], match["id"], match["machine"])


def cp(source: str, destination: str) -> None:
    """Copy files (recursively) between here and a machine: `ID:path` or `ID:machine:path`."""
    src, dst = parse_location(source), parse_location(destination)
    if (src.playground_id is None) == (dst.playground_id is None):
        raise InvalidInput(
            "exactly one of SOURCE and DESTINATION must be ID:path or ID:machine:path"
        )
    remote = src if src.playground_id else dst

    async def work(backend: Backend) -> None:
        assert remote.playground_id is not None  # checked above
        async with await backend.connect(remote.playground_id, remote.machine) as conn:
            if src.playground_id:
                await conn.download(src.path, Path(dst.path))
            else:
                local = Path(src.path)
                if not local.exists():
                    raise InvalidInput(f"{src.path}: no such file or directory")
                await conn.upload(local, dst.path)

    run_on(work)


def port_forward(
    playground_id: str,
    ports: str = typer.Argument(..., help="LOCAL:REMOTE, e.g. 8080:80"),
    machine: str | None = MACHINE,
    address: str = typer.Option("127.0.0.1", help="Local address to listen on."),
) -> None:
    """Forward a local port to a port in a machine until interrupted."""
    import asyncio

    match = re.fullmatch(r"(\d+):(\d+)", ports)
    if match is None:
        raise InvalidInput(f"{ports!r}: write LOCAL:REMOTE, e.g. 8080:80")
    local, remote = int(match[1]), int(match[2])

    async def work(backend: Backend) -> None:
        async with await backend.connect(playground_id, machine) as connection:
            forwarder = await connection.forward_local_port(address, local, "localhost", remote)
            err.print(f"forwarding {address}:{forwarder.port} -> {machine or 'machine'}:{remote}")
            print(forwarder.port, flush=True)
            await asyncio.Event().wait()  # until Ctrl-C

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a forward ends
        run_on(work)
