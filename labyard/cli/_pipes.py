"""Byte streams to a machine's sshd, and relays that carry SSH over them.

A stream is a TCP connection (the local instance) or the server's WebSocket tunnel (a remote
one). `bridge_socket` (access/bridge.py) turns a stream into a socket for asyncssh; `relay_stdio`
joins a stream to this process's stdin/stdout for OpenSSH's ProxyCommand.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from labyard.access.bridge import Stream, copy_to_stream, first_to_end
from labyard.cli._client import ServerUnreachable, error_for

_CHUNK = 64 * 1024
_OPEN_TIMEOUT_S = 10.0


class TcpStream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    async def read(self) -> bytes:
        return await self._reader.read(_CHUNK)

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


class TunnelStream:
    """The server's SSH tunnel WebSocket: binary frames both ways."""

    def __init__(self, connection: ClientConnection, first: bytes) -> None:
        self._connection = connection
        self._pending = first

    async def read(self) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        try:
            message = await self._connection.recv()
        except websockets.ConnectionClosed:
            return b""
        return message if isinstance(message, bytes) else message.encode()

    async def write(self, data: bytes) -> None:
        try:
            await self._connection.send(data)
        except websockets.ConnectionClosed as exc:
            raise ConnectionResetError("the tunnel closed") from exc

    async def close(self) -> None:
        await self._connection.close()


async def open_tunnel(server: str, token: str, playground_id: str, machine: str) -> TunnelStream:
    """Open the tunnel to `machine`; a refusal raises the error the server named."""
    path = f"/api/playgrounds/{playground_id}/machines/{machine}/ssh"
    url = "ws" + server.removeprefix("http") + path
    try:
        connection = await websockets.connect(
            url,
            additional_headers={"authorization": f"Bearer {token}"},
            compression=None,
            max_size=None,
            open_timeout=_OPEN_TIMEOUT_S,
        )
    except websockets.InvalidStatus as exc:
        status = exc.response.status_code
        raise error_for(status, f"the server refused the SSH tunnel ({status})") from exc
    except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
        raise ServerUnreachable(f"cannot open an SSH tunnel through {server}: {exc}") from exc
    try:
        async with asyncio.timeout(_OPEN_TIMEOUT_S):
            first = await _first(connection)
    except TimeoutError as exc:
        await connection.close()
        raise ServerUnreachable(
            f"the SSH tunnel through {server} carried nothing for {_OPEN_TIMEOUT_S:g} s"
        ) from exc
    return TunnelStream(connection, first)


async def _first(connection: ClientConnection) -> bytes:
    """The first bytes (sshd speaks first), or the refusal: an error frame, then a close
    with code 4000 + the HTTP status."""
    try:
        message = await connection.recv()
    except websockets.ConnectionClosed:
        message = '{"message": "the server closed the SSH tunnel"}'
    if isinstance(message, bytes):
        return message
    await connection.wait_closed()
    code = connection.close_code or 0
    try:
        error: dict[str, Any] = json.loads(message)
        text, reason = str(error["message"]), error.get("reason")
    except (ValueError, KeyError, TypeError):
        text, reason = f"the server closed the SSH tunnel ({code})", None
    raise error_for(code - 4000 if code >= 4000 else 0, text, reason)


async def relay_stdio(stream: Stream) -> None:
    """Carry stdin to `stream` and `stream` to stdout until either side closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, sys.stdout.buffer
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)

    async def down() -> None:
        with contextlib.suppress(OSError):
            while data := await stream.read():
                writer.write(data)
                await writer.drain()

    try:
        await first_to_end(copy_to_stream(lambda: reader.read(_CHUNK), stream), down())
    finally:
        transport.close()
        await stream.close()
