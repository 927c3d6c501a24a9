"""Where CLI commands act: the local instance, or a labyard server (after `labyard login`,
or with `--server URL` / `LABYARD_SERVER`). The choice is made here and nowhere else.

Both backends hand out the same things: playgrounds (`labyard.cli._views.Playground`), SSH
`Connection`s from `labyard.access` (so exec, terminals, file copy and port forwarding are
one code path), the keys OpenSSH needs, and raw byte streams to a machine's sshd.

Only the chosen backend is imported, and each imports what a call needs when it is made:
listing a server's playgrounds loads no SSH, database or server code.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from labyard.cli import credentials
from labyard.cli._views import SshKeys
from labyard.types import Playground

if TYPE_CHECKING:
    from labyard.access import Connection
    from labyard.access.bridge import Stream

T = TypeVar("T")

_server_option: str | None = None


class Backend(Protocol):
    server: str | None
    """The server URL, or None for the local instance."""

    async def start(self, source: str, lifetime_s: int | None) -> Playground:
        """`source`: a catalog name, or a manifest file."""

    async def list(self) -> list[Playground]: ...

    async def get(self, playground_id: str) -> Playground: ...

    async def stop(self, playground_id: str) -> Playground: ...

    async def restart(self, playground_id: str) -> Playground: ...

    async def destroy(self, playground_id: str) -> None: ...

    async def save(self, playground_id: str, name: str) -> dict[str, Any]:
        """Save a stopped playground as NAME (images plus a manifest)."""

    async def fork(self, playground_id: str) -> Playground:
        """Start a copy of a running or stopped playground."""

    async def start_saved(self, name: str, lifetime_s: int | None) -> Playground: ...

    async def saved(self) -> builtins.list[dict[str, Any]]: ...

    async def connect(self, playground_id: str, machine: str | None) -> Connection:
        """An SSH connection to a machine (the first one by default); close it after."""

    async def ssh_keys(self, playground_id: str) -> SshKeys: ...

    async def devtools(self, playground_id: str) -> dict[str, Any]:
        """The authors' task view of the attempt in a playground (`content debug`)."""

    async def open_stream(self, playground_id: str, machine: str | None) -> Stream:
        """Raw bytes to and from the machine's sshd."""

    async def close(self) -> None: ...


def use_server(url: str | None) -> None:
    """The global `--server URL` option."""
    global _server_option
    _server_option = url


def server_option() -> str | None:
    return _server_option


def choose() -> Backend:
    login = credentials.current(_server_option)
    if login is None:
        from labyard.cli._local import LocalBackend

        return LocalBackend()
    from labyard.cli._remote import RemoteBackend

    return RemoteBackend(login)


def run_on(work: Callable[[Backend], Awaitable[T]]) -> T:
    """Run `work` on the chosen backend, closing it after."""
    import asyncio  # not at the top: `--help` runs no event loop

    async def main() -> T:
        backend = choose()
        try:
            return await work(backend)
        finally:
            await backend.close()

    return asyncio.run(main())
