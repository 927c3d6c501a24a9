"""Looking over a learner's shoulder, over HTTP and WebSockets (policy: services/looks.py).

    WS     /api/classes/{id}/members/{account}/watch?machine=M&tab=main
                                         the read-only view (the class's instructor, admins)
    WS     /api/classes/{id}/looks/{look}/input
                                         the watcher's keyboard, only while granted
    GET    /api/classes/{id}/looks       the log (instructor: all; a member: looks at them)
    POST   /api/classes/{id}/looks/{look}/grant     the learner lets the watcher type
    DELETE /api/classes/{id}/looks/{look}/grant     ... and takes the keyboard back

The view's protocol is the terminal's (api/terminals.py) minus input: binary frames carry
the learner's screen to the watcher; the server first sends `{"type": "look", ...the log
entry, "cols", "rows", "machines"}` (the learner's window size, which the view keeps, and
the playground's machines, which `?machine=` picks from), then `{"type":
"size", "cols", "rows"}` when the learner's window changes and `{"type": "input",
"granted": bool}` when the learner grants or revokes input. From the client it reads only
`{"type": "ack", "bytes": N}`: every other frame (keystrokes, resizes) is read and dropped,
never written anywhere. The input socket takes binary keystrokes and sends nothing; it is
closed with 4403 when the grant ends (revoked, or the view closed). Refusals as for the
terminal: an error message, then 4000 + the HTTP status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path, WebSocket, WebSocketDisconnect

from labyard.api.deps import LabyardDep, UserDep, get_labyard, websocket_user
from labyard.api.terminals import _close, _refuse, _Window
from labyard.errors import AccessFailure, InvalidInput, LabyardError
from labyard.services.look_terminals import Keyboard, View, open_keyboard, open_view
from labyard.services.looks import Look, Looks, Target
from labyard.services.terminals import DEFAULT_TAB

router = APIRouter(prefix="/api/classes", tags=["looks"])
log = logging.getLogger("labyard.api.looks")
MAX_ID = 2**31 - 1
LookId = Annotated[int, Path(ge=1, le=MAX_ID)]
SIZE_POLL_S = 2.0
"""How often the view looks at the learner's window size."""


def _whole(value: str, name: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_ID:
        raise InvalidInput(f"{name} must be a whole number from 1")
    return int(value)


# -- the log and the grant ---------------------------------------------------------------


@router.get("/{class_id}/looks")
def looks_log(class_id: str, user: UserDep, labyard: LabyardDep) -> list[dict[str, Any]]:
    """Who watched whom: class, learner, playground, machine, start, end, input granted."""
    return [look.to_json() for look in labyard.looks.log(user, class_id)]


# Async on purpose: a grant wakes the sockets' asyncio events, which must be set from the
# event loop (a sync route would run in a worker thread).
@router.post("/{class_id}/looks/{look_id}/grant")
async def grant(
    class_id: str, look_id: LookId, user: UserDep, labyard: LabyardDep
) -> dict[str, Any]:
    """The learner watched lets the watcher type in this look (nobody else may)."""
    return labyard.looks.grant(user, class_id, look_id).to_json()


@router.delete("/{class_id}/looks/{look_id}/grant")
async def revoke(
    class_id: str, look_id: LookId, user: UserDep, labyard: LabyardDep
) -> dict[str, Any]:
    """The learner takes the keyboard back: the watcher's input channel closes."""
    return labyard.looks.revoke(user, class_id, look_id).to_json()


# -- the read-only view ------------------------------------------------------------------


@router.websocket("/{class_id}/members/{account_id}/watch")
async def watch(websocket: WebSocket, class_id: str, account_id: str) -> None:
    """The learner's terminal tab, read-only (see the module docstring)."""
    await websocket.accept()
    labyard = get_labyard(websocket)
    try:
        user = websocket_user(websocket)
        machine = websocket.query_params.get("machine") or None
        tab = websocket.query_params.get("tab") or DEFAULT_TAB
        target = await labyard.looks.locate(
            user, class_id, _whole(account_id, "account_id"), machine, tab
        )
        view = await open_view(labyard.playgrounds, target)
    except LabyardError as exc:
        await _refuse(websocket, exc)
        return
    async with view:
        look = labyard.looks.begin(user, target)  # logged, and the learner's banner shows
        try:
            cols, rows = view.size
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):  # gone already
                await websocket.send_json(
                    {
                        "type": "look",
                        **look.to_json(),
                        "cols": cols,
                        "rows": rows,
                        "machines": list(target.machines),
                    }
                )
                await _watch(websocket, view, labyard.looks, look, target)
        finally:
            labyard.looks.finish(look.id)
    await _close(websocket, 1000, "the learner's terminal closed")


async def _watch(
    websocket: WebSocket, view: View, looks: Looks, look: Look, target: Target
) -> None:
    window = _Window()
    tasks = [
        asyncio.create_task(_show(websocket, view, window)),
        asyncio.create_task(_drop_input(websocket, window)),
        asyncio.create_task(_tell_grants(websocket, looks, look.id, target.playground_id)),
        asyncio.create_task(_follow_size(websocket, view, target.tab)),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("a look ended with an error: %s", exc)


async def _show(websocket: WebSocket, view: View, window: _Window) -> None:
    with contextlib.suppress(WebSocketDisconnect, AccessFailure):
        while data := await view.read():
            await websocket.send_bytes(data)
            window.sent(len(data))
            await window.wait()


async def _drop_input(websocket: WebSocket, window: _Window) -> None:
    """Read what the watcher's browser sends and drop it: only acks (flow control) count.
    Nothing read here is written anywhere: the view has no input path."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                continue  # keystrokes: dropped
            with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                found = json.loads(text)
                if found.get("type") == "ack":
                    window.acked(int(found["bytes"]))


async def _tell_grants(
    websocket: WebSocket, looks: Looks, look_id: int, playground_id: str
) -> None:
    with looks.subscribe(playground_id) as changes:
        told = False
        while (current := looks.look(look_id)) is not None:
            if current.typing != told:
                told = current.typing
                await websocket.send_json({"type": "input", "granted": told})
            await changes.get()


async def _follow_size(websocket: WebSocket, view: View, tab: str) -> None:
    while True:
        await asyncio.sleep(SIZE_POLL_S)  # a periodic look, not a wait for a condition
        with contextlib.suppress(AccessFailure, TimeoutError):
            found = await view.follow_size(tab)
            if found is not None:
                await websocket.send_json({"type": "size", "cols": found[0], "rows": found[1]})


# -- the granted keyboard ----------------------------------------------------------------


@router.websocket("/{class_id}/looks/{look_id}/input")
async def keyboard(websocket: WebSocket, class_id: str, look_id: str) -> None:
    """The watcher types into the learner's terminal, while the learner allows it."""
    await websocket.accept()
    labyard = get_labyard(websocket)
    try:
        user = websocket_user(websocket)
        target, grant_ended = labyard.looks.input_grant(user, class_id, _whole(look_id, "look_id"))
        keys = await open_keyboard(labyard.playgrounds, target)
    except LabyardError as exc:
        await _refuse(websocket, exc)
        return
    async with keys:
        await _type(websocket, keys, grant_ended)
    if grant_ended.is_set():
        await _close(websocket, 4403, "the learner took the keyboard back")
    else:
        await _close(websocket, 1011, "the input channel ended")


async def _type(websocket: WebSocket, keys: Keyboard, grant_ended: asyncio.Event) -> None:
    tasks = [
        asyncio.create_task(_discard(keys)),
        asyncio.create_task(_keystrokes(websocket, keys)),
        asyncio.create_task(grant_ended.wait()),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _discard(keys: Keyboard) -> None:
    """The input client's own screen: read (so tmux never blocks on it) and dropped."""
    with contextlib.suppress(AccessFailure):
        while await keys.pty.read():
            pass


async def _keystrokes(websocket: WebSocket, keys: Keyboard) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:  # text (a resize, say) is ignored
                keys.pty.write(message["bytes"])
                await keys.pty.drain()
