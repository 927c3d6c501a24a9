"""Sign-up, sign-in and sign-out as HTML forms (the JSON twins live in `auth.py`).

Forms carry the CSRF token in a hidden `csrf` field, checked against the `labyard_csrf`
cookie set when the form was served: a sign-in form posted from another site would sign the
victim into the attacker's account (login CSRF), so even these need the check.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from labyard.api.auth import set_session
from labyard.api.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    check_csrf,
    get_labyard,
    optional_user,
)
from labyard.api.web import render
from labyard.errors import CsrfFailed, LabyardError
from labyard.services import User
from labyard.services.countries import NAMES as COUNTRIES

router = APIRouter(include_in_schema=False)


def page_user(request: Request) -> User | None:
    """The signed-in user (also remembered for the templates), or None."""
    user = optional_user(request)
    request.state.user = user
    return user


def to_login(request: Request) -> RedirectResponse:
    """Send a signed-out visitor to the sign-in form, and back here afterwards."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(here, safe='')}", status_code=303)


def safe_next(value: str | None) -> str:
    """Only paths on this site: `//evil.example` or `https://...` would be an open redirect."""
    if value and value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return "/playgrounds"


async def _form(request: Request) -> dict[str, str]:
    await check_csrf(request)
    return {k: v for k, v in (await request.form()).items() if isinstance(v, str)}


def _form_page(
    request: Request,
    template: str,
    next_url: str,
    error: str = "",
    email: str = "",
    status: int = 200,
) -> HTMLResponse:
    context = {"next": safe_next(next_url), "error": error, "email": email}
    return render(request, template, context, status)


@router.get("/login", response_model=None)
def login_page(request: Request, next: str = "") -> Response:
    if page_user(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _form_page(request, "login.html", next)


@router.get("/signup", response_model=None)
def signup_page(request: Request, next: str = "") -> Response:
    if page_user(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _form_page(request, "signup.html", next)


@router.post("/login", response_model=None)
async def login_form(request: Request) -> Response:
    return await _sign_in(request, "login.html", create=False)


@router.post("/signup", response_model=None)
async def signup_form(request: Request) -> Response:
    return await _sign_in(request, "signup.html", create=True)


async def _sign_in(request: Request, template: str, *, create: bool) -> Response:
    next_url = request.query_params.get("next", "")
    try:
        form = await _form(request)
    except CsrfFailed as exc:
        return _form_page(request, template, next_url, exc.message, status=exc.http_status)
    next_url = form.get("next", next_url)
    email, password = form.get("email", ""), form.get("password", "")
    accounts = get_labyard(request).accounts
    client = request.client.host if request.client else ""
    try:
        # Password hashing takes tens of milliseconds: off the event loop, so open
        # terminals do not stutter while someone signs in.
        if create:
            user = await run_in_threadpool(accounts.create_user, email, password)
        else:
            user = await run_in_threadpool(accounts.authenticate, email, password, client)
    except LabyardError as exc:
        return _form_page(request, template, next_url, exc.message, email, exc.http_status)
    response = RedirectResponse(safe_next(next_url), status_code=303)
    set_session(response, request, accounts.issue(user, "session"))
    return response


@router.get("/logout", response_model=None)
def logout_page(request: Request) -> Response:
    if page_user(request) is None:
        return RedirectResponse("/", status_code=303)
    return render(request, "logout.html")


@router.post("/logout", response_model=None)
async def logout_form(request: Request) -> Response:
    try:
        await _form(request)
    except CsrfFailed as exc:
        page_user(request)
        return render(request, "logout.html", {"error": exc.message}, exc.http_status)
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        get_labyard(request).accounts.revoke(secret)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    response.delete_cookie(CSRF_COOKIE)
    return response


@router.get("/account", response_model=None)
def account_page(request: Request) -> Response:
    """The signed-in account: its plan, when it ends, its orders, the subscription portal,
    its teams."""
    user = page_user(request)
    if user is None:
        return to_login(request)
    return _account(request, user)


def _account(
    request: Request,
    user: User,
    error: str = "",
    status: int = 200,
    profile_form: dict[str, str] | None = None,
) -> Response:
    labyard = get_labyard(request)
    context = {
        "billing": labyard.billing.summary(user),
        "teams": labyard.teams.list(user),
        "error": error,
        "profile_form": profile_form,
        "countries": sorted(COUNTRIES.items(), key=lambda item: item[1]),
    }
    return render(request, "account.html", context, status)


@router.post("/account/billing-profile", response_model=None)
async def billing_profile_form(request: Request) -> Response:
    """ "Save billing details": whom invoices issued from now on are made out to."""
    user = page_user(request)
    if user is None:
        return to_login(request)
    form: dict[str, str] = {}
    try:
        form = await _form(request)
        fields = [form.get(key, "") for key in ("name", "address", "country", "vat_id")]
        await run_in_threadpool(get_labyard(request).billing.profiles.put, user, *fields)
    except LabyardError as exc:
        return _account(request, user, exc.message, exc.http_status, profile_form=form)
    return RedirectResponse("/account#billing-profile", status_code=303)


@router.post("/account/portal", response_model=None)
async def portal_form(request: Request) -> Response:
    """ "Manage subscription": off to the provider's portal."""
    user = page_user(request)
    if user is None:
        return to_login(request)
    return_url = f"{str(request.base_url).rstrip('/')}/account#billing"
    try:
        await _form(request)
        orders = get_labyard(request).billing.orders
        url = await run_in_threadpool(orders.portal, user, return_url)
    except LabyardError as exc:
        return _account(request, user, exc.message, exc.http_status)
    return RedirectResponse(url, status_code=303)
