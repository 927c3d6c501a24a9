"""Sign-up, sign-in, sign-out and API tokens."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from labyard.api.deps import CSRF_COOKIE, SESSION_COOKIE, LabyardDep, UserDep
from labyard.services.accounts import SESSION_LIFETIME

router = APIRouter(prefix="/api", tags=["accounts"])


class Credentials(BaseModel):
    email: str = Field(max_length=254)
    password: str = Field(max_length=1024)


class TokenRequest(Credentials):
    name: str = Field("cli", max_length=100)


class TokenOut(BaseModel):
    token: str
    user: dict[str, object]


def set_session(response: Response, request: Request, secret: str) -> None:
    secure = request.url.scheme == "https"
    max_age = int(SESSION_LIFETIME.total_seconds())
    response.set_cookie(
        SESSION_COOKIE, secret, max_age=max_age, httponly=True, secure=secure, samesite="lax"
    )
    response.set_cookie(
        CSRF_COOKIE, secrets.token_urlsafe(24), max_age=max_age, secure=secure, samesite="strict"
    )


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


@router.post("/signup", status_code=201)
def signup(
    body: Credentials, request: Request, response: Response, labyard: LabyardDep
) -> dict[str, object]:
    """Create a learner account and sign in."""
    user = labyard.accounts.create_user(body.email, body.password)
    set_session(response, request, labyard.accounts.issue(user, "session"))
    return user.to_json()


@router.post("/login")
def login(
    body: Credentials, request: Request, response: Response, labyard: LabyardDep
) -> dict[str, object]:
    """Sign in with email and password (sets the session cookie)."""
    user = labyard.accounts.authenticate(body.email, body.password, _client(request))
    set_session(response, request, labyard.accounts.issue(user, "session"))
    return user.to_json()


@router.post("/logout", status_code=204)
def logout(request: Request, response: Response, labyard: LabyardDep, user: UserDep) -> None:
    """End this session (or revoke the API token used)."""
    secret = request.cookies.get(SESSION_COOKIE)
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        secret = header[7:].strip()
    if secret:
        labyard.accounts.revoke(secret)
    response.delete_cookie(SESSION_COOKIE)
    response.delete_cookie(CSRF_COOKIE)


@router.post("/tokens", status_code=201)
def create_token(body: TokenRequest, request: Request, labyard: LabyardDep) -> TokenOut:
    """Exchange email and password for an API token (what `labyard login` does)."""
    user = labyard.accounts.authenticate(body.email, body.password, _client(request))
    return TokenOut(token=labyard.accounts.issue(user, "api", body.name), user=user.to_json())


@router.get("/me")
def me(user: UserDep, labyard: LabyardDep) -> dict[str, object]:
    """The signed-in account, its plan's limits and the machine-minutes it used today (UTC)."""
    return {
        **user.to_json(),
        "limits": user.plan_limits.limits_json(),
        "used_today_machine_minutes": round(labyard.usage.used_today(user.id), 1),
    }
