"""Small async helpers drivers share: reaching a machine on a TCP address (`Driver.dial`),
and awaiting a step that changes the host or the engine to its end."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def connect_tcp(address: str, port: int, timeout: float) -> socket.socket:
    """A connected non-blocking TCP socket to `address:port`, or OSError/TimeoutError."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (address, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def uninterrupted(step: Awaitable[T]) -> T:
    """Await a host- or engine-changing step to its end even when cancelled, then pass the
    cancel on.

    A cancelled to_thread(), subprocess or API call keeps running unseen; a rollback started
    meanwhile would race it (mounting after the unmount, a machine appearing after the delete).
    """
    task = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():  # gather() and its caller may cancel more than once
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([task])
        raise
