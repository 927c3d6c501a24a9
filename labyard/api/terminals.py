"""The browser terminal: a WebSocket bridged to a terminal tab in a machine.

    /api/playgrounds/{id}/machines/{machine}/terminal?tab=main&cols=80&rows=24

Auth: the session cookie (same-origin pages only) or an API token (`token` query parameter
or `Authorization: Bearer`). Protocol:

- binary frames carry terminal bytes, both ways (UTF-8 is decoded by the terminal emulator);
- text frames from the client are JSON control messages: `{"type": "resize", "cols": C,
  "rows": R}`, and `{"type": "ack", "bytes": N}` once the client has rendered N more bytes;
- the server sends `{"type": "exit", "code": N}` when the shell ends, then closes (1000);
- and `{"type": "looks", "looks": [...]}` whenever who is looking over the owner's shoulder
  changes (an instructor's read-only view, api/looks.py): the page shows a banner while
  the list is not empty.

Refusals happen after the handshake: the server accepts, sends `{"type": "error",
"message": ..., "reason": ...}` and closes with 4000 + the HTTP status the same failure has
in the JSON API (4401 signed out, 4403 cross-site, 4404 not yours / no such machine, 4409 not
running, 4422 bad parameters). Browsers never see a rejected handshake's status, so this is
the only way the page can tell "gone for good" from "try again". 1011 means the connection
to the machine broke; reconnecting reattaches to the same tab.

Backpressure: output is read from the PTY only after the previous frame was handed to the
socket (uvicorn waits for its buffer to drain), and input is written to SSH only when the
channel has room (`drain`), so a fast producer or a slow reader stalls the other end instead
of growing buffers. A client that sends acks also bounds what it has not rendered yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from labyard.api.deps import get_labyard, websocket_user
from labyard.api.health import TERMINALS
from labyard.errors import AccessFailure, InvalidInput, LabyardError
from labyard.services.looks import Looks
from labyard.services.terminals import DEFAULT_TAB, Terminal, check_size, open_terminal

router = APIRouter(prefix="/api", tags=["terminals"])
log = logging.getLogger("labyard.api.terminals")

# Unrendered bytes a client that acks may have in flight: enough to keep a fast link busy,
# small enough that `yes` cannot pile megabytes into the browser before Ctrl-C lands.
HIGH_WATER = 512 * 1024
LOW_WATER = 128 * 1024
EXIT_STATUS_WAIT_S = 5.0


class _Window:
    """Output sent but not yet acknowledged; a client that never acks is not limited."""

    def __init__(self) -> None:
        self.unacked = 0
        self.acking = False
        self._room = asyncio.Event()
        self._room.set()

    def sent(self, n: int) -> None:
        self.unacked += n
        if self.acking and self.unacked > HIGH_WATER:
            self._room.clear()

    def acked(self, n: int) -> None:
        self.acking = True
        self.unacked = max(0, self.unacked - n)
        if self.unacked <= LOW_WATER:
            self._room.set()

    async def wait(self) -> None:
        await self._room.wait()


def _int_param(websocket: WebSocket, name: str, default: int) -> int:
    value = websocket.query_params.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number") from None


async def _refuse(websocket: WebSocket, exc: LabyardError) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):  # the client left already
        await websocket.send_json({"type": "error", "message": exc.message, "reason": exc.reason})
        await websocket.close(4000 + exc.http_status, exc.reason)


@router.websocket("/playgrounds/{playground_id}/machines/{machine}/terminal")
async def terminal(websocket: WebSocket, playground_id: str, machine: str) -> None:
    """Attach to a terminal tab of one machine (see the module docstring for the protocol)."""
    await websocket.accept()
    try:
        user = websocket_user(websocket)
        cols, rows = check_size(
            _int_param(websocket, "cols", 80), _int_param(websocket, "rows", 24)
        )
        tab = websocket.query_params.get("tab") or DEFAULT_TAB
        playgrounds = get_labyard(websocket).playgrounds
        attached = await open_terminal(
            playgrounds, playground_id, machine, user.owner, tab=tab, cols=cols, rows=rows
        )
    except LabyardError as exc:
        await _refuse(websocket, exc)
        return
    TERMINALS.inc()
    try:
        async with attached:
            await _bridge(websocket, attached, get_labyard(websocket).looks, playground_id)
        # Still open when input failed (e.g. the machine went away mid-write): say so, so
        # the page reconnects rather than waiting.
        await _close(websocket, 1011, "the terminal ended unexpectedly")
    finally:
        TERMINALS.dec()


async def _bridge(
    websocket: WebSocket, attached: Terminal, looks: Looks, playground_id: str
) -> None:
    window = _Window()
    output = asyncio.create_task(_pump_output(websocket, attached, window))
    incoming = asyncio.create_task(_pump_input(websocket, attached, window))
    watched = asyncio.create_task(_tell_looks(websocket, looks, playground_id))
    try:
        done, _ = await asyncio.wait((output, incoming), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (output, incoming, watched):
            task.cancel()
        await asyncio.gather(output, incoming, watched, return_exceptions=True)
    for task in done:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("terminal ended with an error: %s", exc)


async def _tell_looks(websocket: WebSocket, looks: Looks, playground_id: str) -> None:
    """Tell the owner who is watching, whenever that changes (nothing while nobody is)."""
    with (
        contextlib.suppress(WebSocketDisconnect, RuntimeError),
        looks.subscribe(playground_id) as changes,
    ):
        told: list[dict[str, object]] = []
        while True:
            current = [look.to_json() for look in looks.at(playground_id)]
            if current != told:
                told = current
                await websocket.send_json({"type": "looks", "looks": current})
            await changes.get()


async def _pump_output(websocket: WebSocket, attached: Terminal, window: _Window) -> None:
    try:
        while data := await attached.pty.read():
            await websocket.send_bytes(data)
            window.sent(len(data))
            await window.wait()
    except WebSocketDisconnect:
        return  # the browser went away; the input side notices too
    except AccessFailure as exc:
        await _close(websocket, 1011, exc.message)
        return
    code = await _exit_code(attached)
    if code is None:  # the channel closed without an exit status: the machine went away
        await _close(websocket, 1011, "the connection to the machine was lost")
        return
    await websocket.send_json({"type": "exit", "code": code})
    await _close(websocket, 1000, "shell exited")


async def _exit_code(attached: Terminal) -> int | None:
    """The shell's exit status. sshd sends it after the end of the output, so wait for the
    channel to close (briefly: a vanished machine never closes it)."""
    with contextlib.suppress(TimeoutError, AccessFailure):
        async with asyncio.timeout(EXIT_STATUS_WAIT_S):
            await attached.pty.wait_closed()
    return attached.pty.exit_code


async def _pump_input(websocket: WebSocket, attached: Terminal, window: _Window) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                attached.pty.write(message["bytes"])
                await attached.pty.drain()
            elif message.get("text") is not None:
                _control(message["text"], attached, window)


def _control(text: str, attached: Terminal, window: _Window) -> None:
    """Apply one JSON control message; malformed or unknown ones are ignored, so newer
    clients can send messages older servers do not know."""
    try:
        message = json.loads(text)
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "resize":
            attached.pty.resize(*check_size(int(message["cols"]), int(message["rows"])))
        elif kind == "ack":
            window.acked(int(message["bytes"]))
    except (ValueError, KeyError, TypeError):
        log.debug("ignored a malformed control message: %.100s", text)


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    connected = WebSocketState.CONNECTED
    if websocket.application_state == connected and websocket.client_state == connected:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            # A close reason is at most 123 bytes of UTF-8.
            await websocket.close(code, reason.encode()[:120].decode(errors="ignore"))
