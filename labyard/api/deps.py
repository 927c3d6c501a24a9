"""Request dependencies: the labyard instance, the signed-in user, CSRF protection.

Browsers authenticate with the `labyard_session` cookie; the CLI with
`Authorization: Bearer <token>`. Cookie-authenticated requests that change something must
carry the `X-CSRF-Token` header (or a `csrf` form field) equal to the `labyard_csrf`
cookie (double submit): another site can make a browser send the cookie, not read it.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request, WebSocket
from starlette.requests import HTTPConnection

from labyard.errors import CsrfFailed, Unauthenticated
from labyard.services import Labyard, User
from labyard.services.geo import country_of

SESSION_COOKIE = "labyard_session"
CSRF_COOKIE = "labyard_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def get_labyard(connection: HTTPConnection) -> Labyard:
    labyard: Labyard = connection.app.state.labyard
    return labyard


def _secret(connection: HTTPConnection) -> tuple[str | None, bool]:
    """(secret, from_cookie)."""
    header = connection.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip(), False
    return connection.cookies.get(SESSION_COOKIE), True


def optional_user(connection: HTTPConnection) -> User | None:
    secret, _ = _secret(connection)
    if not secret:
        return None
    try:
        return get_labyard(connection).accounts.user_for(secret)
    except Unauthenticated:
        return None


async def current_user(request: Request) -> User:
    secret, from_cookie = _secret(request)
    if not secret:
        raise Unauthenticated("sign in first (or pass an API token)")
    user = get_labyard(request).accounts.user_for(secret)
    if from_cookie and request.method not in SAFE_METHODS:
        await check_csrf(request)
    return user


async def check_csrf(request: Request) -> None:
    expected = request.cookies.get(CSRF_COOKIE)
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        given = str((await request.form()).get("csrf", ""))
    if not expected or not given or not secrets.compare_digest(expected, given):
        raise CsrfFailed("missing or wrong CSRF token; reload the page and try again")


def websocket_user(websocket: WebSocket) -> User:
    """WebSockets: same cookie or token; a cross-site page cannot open one with our cookie
    because the Origin must be this server's."""
    secret, from_cookie = _secret(websocket)
    if not secret:
        token = websocket.query_params.get("token")
        secret, from_cookie = token, False
    if not secret:
        raise Unauthenticated("sign in first (or pass an API token)")
    origin = websocket.headers.get("origin")
    host = websocket.headers.get("host", "")
    if from_cookie and origin is not None and origin.split("://", 1)[-1] != host:
        raise CsrfFailed("cross-site WebSocket refused")
    return get_labyard(websocket).accounts.user_for(secret)


LabyardDep = Annotated[Labyard, Depends(get_labyard)]
UserDep = Annotated[User, Depends(current_user)]


def client_country(request: HTTPConnection) -> str | None:
    """The visitor's country (ISO 3166-1 alpha-2), or None when it cannot be told (a
    private or loopback address, say): for prices and for the region a playground runs in."""
    return country_of(request.client.host if request.client else None)
