"""Classes over HTTP: create, join (signed in, or as a guest), start the class's content,
run the room, the board and the exports. Policy (who may see or change what, seats, dates)
lives in services/classes.py, class_room.py and class_results.py.

    POST   /api/classes                            {title, content, seats, starts_at,
                                                   ends_at, guests, region?} -> 201 {id,
                                                   join_code, join_url, region, ...}
                                                   (instructors, admins)
    GET    /api/classes                            the classes I run or am in
    POST   /api/classes/join                       {code} -> the class with my membership
    POST   /api/classes/join/guest                 {code, name} -> the same, signed in as
                                                   the class's new guest (no sign-in needed)
    GET    /api/classes/{id}                       members and state (members: themselves)
    PATCH  /api/classes/{id}                       {region} -> the class (its instructor)
    DELETE /api/classes/{id}                       end it, delete it and its guests
    DELETE /api/classes/{id}/members/{account}     remove a member (their machines go)
    POST   /api/classes/{id}/playground            {content} -> 201 the playground, or 202
                                                   {queued: true, position}
    GET    /api/classes/{id}/playground            poll: position, or the playground
    DELETE /api/classes/{id}/playground            end my class playground
    GET    /api/classes/{id}/events                SSE for members: broadcasts, state
    POST   /api/classes/{id}/broadcasts            {message, account_id?} (to one or all)
    GET    /api/classes/{id}/broadcasts            what I may read
    POST   /api/classes/{id}/extend                {minutes: 10|30|60, account_id?}
    POST   /api/classes/{id}/end                   destroy every machine, keep results
    GET    /api/classes/{id}/board                 the instructor board as JSON
    GET    /api/classes/{id}/board/events          SSE: the board whenever it changes
    GET    /api/classes/{id}/results               the export as JSON
    GET    /api/classes/{id}/results.csv           the export as CSV

A class someone is not in is a 404 everywhere; a member gets 403 for the instructor's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

from labyard.api import _learning as learning
from labyard.api.auth import set_session
from labyard.api.deps import LabyardDep, UserDep, client_country
from labyard.errors import NotFound
from labyard.services import Labyard
from labyard.services.class_spec import ClassChanges, ClassSpec
from labyard.services.class_starts import Queued, Started


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Classes' pools fill before and empty after their start (services/class_pools.py),
    wherever the server's background work runs (an app made without the reconciler, as
    tests make them, runs none)."""
    labyard: Labyard = app.state.labyard
    task = None
    if getattr(app.state, "reconciler", None) is not None:
        task = asyncio.create_task(labyard.class_pools.tend_forever())
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await labyard.class_pools.close()


router = APIRouter(prefix="/api/classes", tags=["classes"], lifespan=_lifespan)
MAX_ID = 2**31 - 1
AccountId = Annotated[int, Path(ge=1, le=MAX_ID)]
POLL_S = 0.5
"""How often a stream looks at the stored state: a passing check or a broadcast shows
within this plus the browser's reaction, well inside 2 s."""
STREAM_S = 60.0
"""A stream ends after this long; EventSource reconnects and starts with the full state."""
KEEPALIVE_S = 15.0
RETRY_MS = 500


class JoinBody(BaseModel):
    code: str = Field(min_length=1, max_length=32)
    """The class's join code, in any case (`abc-def` is `ABCDEF`)."""


class GuestBody(JoinBody):
    name: str = Field(min_length=1, max_length=60)
    """The display name the instructor sees."""


class StartBody(BaseModel):
    content: str = Field(min_length=1, max_length=200)
    """A content key of the class (a course's lesson, too) or its bare playground's name."""


class BroadcastBody(BaseModel):
    message: str = Field(min_length=1, max_length=1000)
    account_id: int | None = Field(None, ge=1, le=MAX_ID)
    """One member; left out: everybody."""


class ExtendBody(BaseModel):
    minutes: int = Field(description="10, 30 or 60.", ge=1, le=1440)
    account_id: int | None = Field(None, ge=1, le=MAX_ID)


def _base(request: Request) -> str:
    return str(request.base_url)


def started_json(started: Started) -> dict[str, Any]:
    """The playground, with the attempt in it (challenges, tutorials, lessons) and the page
    to work in."""
    attempt = started.attempt
    page = (
        learning.url_of(started.content_key) if attempt else f"/playgrounds/{started.playground.id}"
    )
    return {
        **started.playground.to_json(),
        "content": started.content_key,
        "attempt": attempt.to_json() if attempt else None,
        "page": page,
    }


def queued_json(queued: Queued) -> dict[str, Any]:
    return {
        "queued": True,
        "position": queued.position,
        "content": queued.content_key,
        "message": queued.message,
    }


def _answer(result: Started | Queued, created: int = 201) -> JSONResponse:
    if isinstance(result, Queued):
        return JSONResponse(queued_json(result), status_code=202)
    return JSONResponse(started_json(result), status_code=created)


# -- creating and joining ----------------------------------------------------------------


@router.post("", status_code=201)
def create(body: ClassSpec, request: Request, user: UserDep, labyard: LabyardDep) -> dict[str, Any]:
    """A new class (instructors and admins; 403 for anyone else). `region`, when given, is
    a region of the server's regions file that every start of the class runs in (422
    naming the known regions otherwise)."""
    return labyard.classes.create(user, body).to_json(_base(request))


@router.get("")
def my_classes(request: Request, user: UserDep, labyard: LabyardDep) -> list[dict[str, Any]]:
    return [c.to_json(_base(request)) for c in labyard.classes.list(user)]


@router.post("/join")
def join(body: JoinBody, request: Request, user: UserDep, labyard: LabyardDep) -> dict[str, Any]:
    """Join the class whose code this is (409 when its seats are taken or it has ended)."""
    return labyard.classes.join(user, body.code).to_json(_base(request))


@router.post("/join/guest")
def join_as_guest(
    body: GuestBody, request: Request, response: Response, labyard: LabyardDep
) -> dict[str, Any]:
    """Join as a guest with a display name (when the class allows it): signs the browser
    in as the class's new guest account, which can do nothing but this class."""
    guest, view = labyard.classes.join_as_guest(body.code, body.name)
    set_session(response, request, labyard.accounts.issue(guest, "session", "class guest"))
    return view.to_json(_base(request))


# -- one class ---------------------------------------------------------------------------


@router.get("/{class_id}")
def get_class(
    class_id: str, request: Request, user: UserDep, labyard: LabyardDep
) -> dict[str, Any]:
    """Members and state for its instructor (and admins); a member sees their own."""
    return labyard.classes.get(user, class_id).to_json(_base(request))


@router.patch("/{class_id}")
def change_class(
    class_id: str, body: ClassChanges, request: Request, user: UserDep, labyard: LabyardDep
) -> dict[str, Any]:
    """Change the class (its instructor and admins): `region` pins later starts to a region
    of the regions file, or `""` lets each learner's country decide again."""
    return labyard.classes.change(user, class_id, body).to_json(_base(request))


@router.delete("/{class_id}", status_code=204)
async def delete_class(class_id: str, user: UserDep, labyard: LabyardDep) -> None:
    await labyard.class_room.delete(user, class_id)


@router.delete("/{class_id}/members/{account_id}")
async def remove_member(
    class_id: str, account_id: AccountId, request: Request, user: UserDep, labyard: LabyardDep
) -> dict[str, Any]:
    """Remove a member: their class machines are destroyed, they start nothing of it again."""
    await labyard.class_room.remove(user, class_id, account_id)
    return labyard.classes.get(user, class_id).to_json(_base(request))


# -- a member's playground ---------------------------------------------------------------


@router.post("/{class_id}/playground", status_code=201, response_model=None)
async def start(
    class_id: str, body: StartBody, request: Request, user: UserDep, labyard: LabyardDep
) -> JSONResponse:
    """Start the class's content as a member, on the class's seats: 201 with the
    playground once it runs, 202 `{queued: true, position}` while it waits to start. It
    runs in the class's region, or the member's own when the class is pinned to none."""
    country = client_country(request)
    return _answer(await labyard.class_room.start(user, class_id, body.content, country))


@router.get("/{class_id}/playground", response_model=None)
async def my_playground(class_id: str, user: UserDep, labyard: LabyardDep) -> JSONResponse:
    """200 with my class playground, 202 with my place in the queue, 404 with neither."""
    current = await labyard.class_room.current(user, class_id)
    if current is None:
        raise NotFound("you have no playground of this class running")
    return _answer(current, created=200)


@router.delete("/{class_id}/playground", status_code=204)
async def end_my_playground(class_id: str, user: UserDep, labyard: LabyardDep) -> None:
    await labyard.class_room.end_mine(user, class_id)


# -- the room ----------------------------------------------------------------------------


@router.post("/{class_id}/broadcasts", status_code=201)
def broadcast(
    class_id: str, body: BroadcastBody, user: UserDep, labyard: LabyardDep
) -> dict[str, Any]:
    """A message on every member's class page (or one member's), within 2 s."""
    return labyard.class_room.broadcast(user, class_id, body.message, body.account_id).to_json()


@router.get("/{class_id}/broadcasts")
def broadcasts(class_id: str, user: UserDep, labyard: LabyardDep) -> list[dict[str, Any]]:
    return [b.to_json() for b in labyard.class_room.broadcasts(user, class_id)]


@router.post("/{class_id}/extend")
async def extend(
    class_id: str, body: ExtendBody, user: UserDep, labyard: LabyardDep
) -> dict[str, Any]:
    """Give one member's (or every member's) playground 10, 30 or 60 minutes more, never
    past the class's end."""
    extended = await labyard.class_room.extend(user, class_id, body.minutes, body.account_id)
    return {"extended": extended}


@router.post("/{class_id}/end")
async def end(
    class_id: str, request: Request, user: UserDep, labyard: LabyardDep
) -> dict[str, Any]:
    """End the class now: every machine of it is destroyed; the results stay."""
    await labyard.class_room.end(user, class_id)
    return labyard.classes.get(user, class_id).to_json(_base(request))


# -- board and exports -------------------------------------------------------------------


@router.get("/{class_id}/board")
def board(class_id: str, user: UserDep, labyard: LabyardDep) -> dict[str, Any]:
    return labyard.class_results.board(user, class_id)


@router.get("/{class_id}/results")
def results(class_id: str, user: UserDep, labyard: LabyardDep) -> dict[str, Any]:
    """Per learner: each task's first-completed time, attempts, hints seen, active time."""
    return labyard.class_results.results(user, class_id)


@router.get("/{class_id}/results.csv", response_class=PlainTextResponse)
def results_csv(class_id: str, user: UserDep, labyard: LabyardDep) -> PlainTextResponse:
    text = labyard.class_results.results_csv(user, class_id)
    headers = {"Content-Disposition": f'attachment; filename="{class_id}-results.csv"'}
    return PlainTextResponse(text, media_type="text/csv; charset=utf-8", headers=headers)


# -- live streams ------------------------------------------------------------------------


@router.get("/{class_id}/board/events")
def board_events(class_id: str, user: UserDep, labyard: LabyardDep) -> StreamingResponse:
    """SSE: `board` events with the whole board whenever the stored results change."""
    labyard.class_results.board(user, class_id)  # 404/403 before the stream starts

    def snapshot() -> list[tuple[str, Any]]:
        found = labyard.class_results.board(user, class_id)
        found.pop("at")
        for learner in found["learners"]:
            learner.pop("idle_s")  # changes every second; the page counts it itself
        return [("board", found)]

    return _sse(snapshot)


@router.get("/{class_id}/events")
def member_events(class_id: str, user: UserDep, labyard: LabyardDep) -> StreamingResponse:
    """SSE for a member's class page: `class` (its state) and `broadcast` events. An open
    stream is what shows the member online on the board."""
    room = labyard.class_room
    labyard.classes.get(user, class_id)  # 404 before the stream starts

    def snapshot() -> list[tuple[str, Any]]:
        room.presence.seen(class_id, user.id)
        view = labyard.classes.get(user, class_id)
        messages = [b.to_json() for b in room.broadcasts(user, class_id)]
        return [("class", {"state": view.state})] + [("broadcast", m) for m in messages]

    return _sse(snapshot)


def _sse(snapshot: Callable[[], list[tuple[str, Any]]]) -> StreamingResponse:
    return StreamingResponse(
        _stream(snapshot),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(snapshot: Callable[[], list[tuple[str, Any]]]) -> AsyncIterator[str]:
    """Each event once: the stream sends what is new in each look at the stored state."""
    loop = asyncio.get_running_loop()
    ends, quiet_since = loop.time() + STREAM_S, loop.time()
    sent: set[str] = set()
    latest: dict[str, str] = {}
    yield f"retry: {RETRY_MS}\n\n"
    while loop.time() < ends:
        for kind, data in snapshot():
            text = json.dumps(data, sort_keys=True)
            if kind == "broadcast":
                if text in sent:
                    continue
                sent.add(text)
            elif latest.get(kind) == text:
                continue
            latest[kind] = text
            quiet_since = loop.time()
            yield f"event: {kind}\ndata: {text}\n\n"
        if loop.time() - quiet_since > KEEPALIVE_S:
            quiet_since = loop.time()
            yield ": keepalive\n\n"
        await asyncio.sleep(POLL_S)
