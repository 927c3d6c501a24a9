"""The SSH tunnel: a WebSocket carrying raw bytes to a machine's sshd and back.

The remote CLI (and `labyard ssh-proxy` under OpenSSH) run SSH through it, so the session
stays encrypted end to end: the server pipes bytes and never holds the session keys.

Refusals follow the terminal endpoint: accept, send one text frame `{"type": "error",
"message": ..., "reason": ...}`, close with 4000 + the HTTP status the same failure has in
the JSON API (4401 signed out, 4403 cross-site, 4404 not yours / no such machine, 4409 not
running, 4502 sshd unreachable). Binary frames only ever carry SSH bytes.
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from labyard.api.deps import get_labyard, websocket_user
from labyard.errors import LabyardError

router = APIRouter(prefix="/api", tags=["tunnel"])

_CHUNK = 64 * 1024
_CONNECT_TIMEOUT_S = 10.0


async def refuse(websocket: WebSocket, exc: LabyardError) -> None:
    """Accept (if not yet), say why in a text frame, close with 4000 + HTTP status."""
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        if websocket.application_state == WebSocketState.CONNECTING:
            await websocket.accept()
        await websocket.send_json({"type": "error", "message": exc.message, "reason": exc.reason})
        await websocket.close(4000 + exc.http_status, exc.reason)


@router.websocket("/playgrounds/{playground_id}/machines/{machine}/ssh")
async def ssh_tunnel(websocket: WebSocket, playground_id: str, machine: str) -> None:
    """Binary frames in both directions, bytes of one TCP connection to the machine's sshd."""
    try:
        user = websocket_user(websocket)
        playgrounds = get_labyard(websocket).playgrounds
        reader, writer = await playgrounds.open_sshd(playground_id, machine, owner=user.owner)
    except LabyardError as exc:
        await refuse(websocket, exc)
        return
    await websocket.accept()
    try:
        await pipe(websocket, reader, writer)
    finally:
        writer.close()


async def pipe(
    websocket: WebSocket, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Copy both ways until either side ends, then end the other."""
    upstream = asyncio.create_task(_websocket_to_tcp(websocket, writer))
    downstream = asyncio.create_task(_tcp_to_websocket(reader, websocket))
    try:
        await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (upstream, downstream):
            task.cancel()
        await asyncio.gather(upstream, downstream, return_exceptions=True)
    if websocket.application_state == WebSocketState.CONNECTED:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close()


async def _websocket_to_tcp(websocket: WebSocket, writer: asyncio.StreamWriter) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes") or (message.get("text") or "").encode()
        writer.write(data)
        await writer.drain()


async def _tcp_to_websocket(reader: asyncio.StreamReader, websocket: WebSocket) -> None:
    while data := await reader.read(_CHUNK):
        await websocket.send_bytes(data)
