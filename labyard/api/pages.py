"""The web UI's pages: landing, catalog, my playgrounds, and one playground with its
terminals. Pages only read; changes go through the JSON API (with the CSRF header), except
Start, a plain form so it works before any script has loaded."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from labyard.api.account_pages import page_user, to_login
from labyard.api.deps import check_csrf, get_labyard
from labyard.api.playgrounds import StartRequest, start_playground
from labyard.api.web import render
from labyard.errors import LabyardError, NotFound
from labyard.services import Playground, User

router = APIRouter(include_in_schema=False)


def remaining_s(playground: Playground) -> int:
    return max(0, int((playground.expires_at - datetime.now(UTC)).total_seconds()))


def _catalog(request: Request) -> list[dict[str, Any]]:
    return [entry.to_json() for entry in get_labyard(request).catalog.entries()]


@router.get("/", response_model=None)
def landing(request: Request) -> Response:
    user = page_user(request)
    return render(request, "landing.html", {"catalog": _catalog(request) if user else []})


@router.get("/catalog", response_model=None)
def catalog(request: Request) -> Response:
    user = page_user(request)
    if user is None:
        return to_login(request)
    saved = [s.to_json() for s in get_labyard(request).saved.list(user.owner)]  # theirs only
    return render(request, "catalog.html", {"catalog": _catalog(request), "saved": saved})


@router.post("/playgrounds", response_model=None)
async def start(request: Request) -> Response:
    """The catalog's Start button: start, then show the new playground."""
    user = page_user(request)
    if user is None:
        return to_login(request)
    try:
        await check_csrf(request)
        name = str((await request.form()).get("name", ""))
        playground = await start_playground(
            StartRequest(name=name), request, get_labyard(request), user
        )
    except LabyardError as exc:  # CsrfFailed included
        context = {"catalog": _catalog(request), "error": exc.message}
        return render(request, "catalog.html", context, exc.http_status)
    return RedirectResponse(f"/playgrounds/{playground['id']}", status_code=303)


@router.get("/playgrounds", response_model=None)
async def my_playgrounds(request: Request) -> Response:
    user = page_user(request)
    if user is None:
        return to_login(request)
    found = await get_labyard(request).playgrounds.list(owner=user.owner)
    rows = [{"p": p, "remaining_s": remaining_s(p)} for p in reversed(found)]
    return render(request, "playgrounds.html", {"playgrounds": rows})


@router.get("/playgrounds/{playground_id}", response_model=None)
async def playground_page(request: Request, playground_id: str) -> Response:
    user = page_user(request)
    if user is None:
        return to_login(request)
    try:
        playground = await _own(request, user, playground_id)
    except NotFound:
        return render(request, "not_found.html", {"what": "playground"}, 404)
    context = {
        "p": playground,
        "remaining_s": remaining_s(playground),
        "server_now": datetime.now(UTC).isoformat(),
    }
    return render(request, "playground.html", context)


async def _own(request: Request, user: User, playground_id: str) -> Playground:
    # Someone else's playground is "not found", exactly like one that never existed.
    return await get_labyard(request).playgrounds.get(playground_id, owner=user.owner)
