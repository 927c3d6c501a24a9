"""The attempts API: start a challenge or tutorial, follow its tasks live, answer, end it.

    POST   /api/attempts                          {content: KEY} -> the attempt (201; 200
                                                  when you have an active one already)
    GET    /api/attempts                          yours
    GET    /api/attempts/{id}                     one, with its tasks
    GET    /api/attempts/{id}/events              SSE: `state` first, then `task` and
                                                  `attempt` events as they happen
    POST   /api/attempts/{id}/tasks/{task}/input  {value} -> 422 unless it matches
    DELETE /api/attempts/{id}                     end it and destroy its playground
    GET    /api/progress                          solved and attempted content, with times

Someone else's attempt is a 404 everywhere, the event stream included. Watching the event
stream is what keeps an attempt's checks running (see services/tasks/audience.py). A stream
lasts up to a minute; EventSource reconnects by itself and gets the full state again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from labyard.api.deps import LabyardDep, UserDep, client_country
from labyard.services import Labyard
from labyard.services.tasks.audience import RESYNC, Event

router = APIRouter(prefix="/api", tags=["attempts"])
KEEPALIVE_S = 15.0
"""A comment line this often keeps proxies from closing a quiet stream, and lets the server
notice a client that went away."""
STREAM_S = 60.0
"""A stream ends after this long and the browser's EventSource reconnects (after `RETRY_MS`;
the new stream starts with the full state). Uvicorn's graceful shutdown waits for open
responses, so an endless stream would hold a stopping server up for as long as a tab
stays open."""
RETRY_MS = 500


class StartRequest(BaseModel):
    content: str = Field(description="A challenge or tutorial, e.g. `challenges/hello`.")


class InputRequest(BaseModel):
    value: str = Field(max_length=10_000)


@router.post("/attempts", status_code=201)
async def start_attempt(
    body: StartRequest, request: Request, response: Response, labyard: LabyardDep, user: UserDep
) -> dict[str, Any]:
    """Start the content's playground, run its init tasks and begin checking its tasks
    (429 when over the plan)."""
    attempts = labyard.attempts
    item = attempts.item(body.content)
    existing = attempts.active_for(user.owner, item.key)
    if existing is not None:
        response.status_code = 200
        return existing.to_json()
    launch = user.launch(country=client_country(request))
    record = await attempts.start(item, user.owner, launch=launch)
    return record.to_json()


@router.get("/attempts")
async def list_attempts(labyard: LabyardDep, user: UserDep) -> list[dict[str, Any]]:
    return [r.to_json() for r in labyard.attempts.of_owner(user.owner)]


@router.get("/attempts/{attempt_id}")
async def get_attempt(attempt_id: str, labyard: LabyardDep, user: UserDep) -> dict[str, Any]:
    return labyard.attempts.get(attempt_id, user.owner).to_json()


@router.get("/attempts/{attempt_id}/events")
async def attempt_events(attempt_id: str, labyard: LabyardDep, user: UserDep) -> StreamingResponse:
    """Server-sent events of the attempt's task states (see the module docstring)."""
    first, queue = labyard.attempts.subscribe(attempt_id, user.owner)
    return StreamingResponse(
        _stream(labyard, attempt_id, user.owner, first, queue),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(
    labyard: Labyard, attempt_id: str, owner: str, first: Event, queue: asyncio.Queue[Event]
) -> AsyncIterator[str]:
    ends = asyncio.get_running_loop().time() + STREAM_S
    try:
        yield f"retry: {RETRY_MS}\n\n"
        event: Event | None = first
        while True:
            if event is RESYNC:
                event = labyard.attempts.state_event(attempt_id, owner)
            if event is not None:
                yield _sse(event)
                if _last(event):
                    return
            wait = min(KEEPALIVE_S, ends - asyncio.get_running_loop().time())
            if wait <= 0:
                return
            try:
                event = await asyncio.wait_for(queue.get(), wait)
            except TimeoutError:
                event = None
                yield ": keepalive\n\n"
    finally:
        labyard.attempts.unsubscribe(attempt_id, queue)


def _sse(event: Event) -> str:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"


def _last(event: Event) -> bool:
    """The attempt is over: nothing more will come."""
    if event["type"] == "attempt":
        return True
    return event["type"] == "state" and bool(event["attempt"]["state"] != "active")


@router.post("/attempts/{attempt_id}/tasks/{task}/input")
async def answer(
    attempt_id: str, task: str, body: InputRequest, labyard: LabyardDep, user: UserDep
) -> dict[str, Any]:
    """Check the answer against the task's validateRegex (422 if it does not match), write
    it to the task's destination in the machine, and check the task at once."""
    record = await labyard.attempts.answer(attempt_id, task, body.value, user.owner)
    return record.to_json()


@router.delete("/attempts/{attempt_id}")
async def end_attempt(attempt_id: str, labyard: LabyardDep, user: UserDep) -> dict[str, Any]:
    return (await labyard.attempts.end(attempt_id, user.owner)).to_json()


@router.get("/progress")
async def progress(labyard: LabyardDep, user: UserDep) -> list[dict[str, Any]]:
    return labyard.attempts.progress(user.owner)
