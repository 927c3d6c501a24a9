"""The web UI's pages: landing, catalog, my playgrounds, and one playground with its
terminals. Pages only read; changes go through the JSON API (with the CSRF header), except
Start, a plain form so it works before any script has loaded.

A start's `notice` (its one sentence on where the playground runs, when that is not the
learner's region) rides from the Start form to the playground's page in a cookie of that
page's own path, signed with the learner's session secret (a page served on a sibling
subdomain, as exposed ports may be, can set cookies here but cannot sign one), and is shown
there once. Without one, the page shows the playground's stored notice (`Playground.notice`:
why it stopped, until it starts again) in the same place, as "my playgrounds" does under it."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from labyard.api.account_pages import page_user, to_login
from labyard.api.deps import SESSION_COOKIE, check_csrf, get_labyard
from labyard.api.playgrounds import StartRequest, start_playground
from labyard.api.web import render
from labyard.errors import LabyardError, NotFound
from labyard.services import Playground, User

router = APIRouter(include_in_schema=False)
NOTICE_COOKIE = "labyard_notice"
NOTICE_MAX_AGE_S = 300
"""Long enough to follow the redirect on a slow connection; read once, then removed."""


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
    return to_playground(request, playground["id"], playground.get("notice", ""))


def to_playground(request: Request, playground_id: str, notice: str = "") -> Response:
    """After a Start button: on to the new playground's page, its notice (if any) with it."""
    response = RedirectResponse(f"/playgrounds/{playground_id}", status_code=303)
    if notice:
        notice = notice[:500]
        response.set_cookie(
            NOTICE_COOKIE,
            f"{_signature(request, playground_id, notice)}.{quote(notice)}",
            max_age=NOTICE_MAX_AGE_S,
            path=f"/playgrounds/{playground_id}",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="lax",
        )
    return response


def _signature(request: Request, playground_id: str, notice: str) -> str:
    key = request.cookies.get(SESSION_COOKIE, "").encode()
    message = f"{playground_id}\n{notice}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _notice(request: Request, playground_id: str) -> str:
    """The start's notice for this playground's page, if its cookie is there and signed."""
    signature, _, quoted = request.cookies.get(NOTICE_COOKIE, "").partition(".")
    notice = unquote(quoted)
    expected = _signature(request, playground_id, notice)
    return notice if notice and hmac.compare_digest(signature, expected) else ""


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
    notice = _notice(request, playground_id)
    context = {
        "p": playground,
        "remaining_s": remaining_s(playground),
        "server_now": datetime.now(UTC).isoformat(),
        "notice": notice,
    }
    response = render(request, "playground.html", context)
    if NOTICE_COOKIE in request.cookies:  # said once
        response.delete_cookie(NOTICE_COOKIE, path=f"/playgrounds/{playground_id}")
    return response


async def _own(request: Request, user: User, playground_id: str) -> Playground:
    # Someone else's playground is "not found", exactly like one that never existed.
    return await get_labyard(request).playgrounds.get(playground_id, owner=user.owner)
