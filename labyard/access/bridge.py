"""A byte stream made into a connected socket, for libraries that want a socket (asyncssh,
websockets) over a stream that is none: the server's SSH tunnel WebSocket, an SSH channel."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

_CHUNK = 64 * 1024


class Stream(Protocol):
    async def read(self) -> bytes:
        """The next bytes; b"" once the other end has closed."""

    async def write(self, data: bytes) -> None:
        """Send bytes; OSError once the other end has closed."""

    async def close(self) -> None: ...


def bridge_socket(stream: Stream) -> tuple[socket.socket, asyncio.Task[None]]:
    """A connected socket whose bytes flow through `stream`, and the task relaying them
    (it ends, closing both, when either side closes)."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    loop = asyncio.get_running_loop()

    async def down() -> None:
        with contextlib.suppress(OSError):
            while data := await stream.read():
                await loop.sock_sendall(ours, data)

    async def relay() -> None:
        try:
            await first_to_end(copy_to_stream(lambda: loop.sock_recv(ours, _CHUNK), stream), down())
        finally:
            ours.close()
            await stream.close()

    return theirs, asyncio.create_task(relay())


async def first_to_end(*work: Coroutine[Any, Any, None]) -> None:
    """Run the relays until one ends (or fails), then stop the others."""
    tasks = [asyncio.create_task(w) for w in work]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def copy_to_stream(read: Callable[[], Awaitable[bytes]], stream: Stream) -> None:
    with contextlib.suppress(OSError):
        while data := await read():
            await stream.write(data)
