"""Team pages: the admin board (`/teams/{id}`: seats used and free, members with remove
buttons, the invite link and code, "buy more seats"), a member's view of the same page,
and the join page the invite link opens (`/teams/join/{code}`). Forms post here with the
CSRF field and come back to the board; policy lives in services/teams.py."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from labyard.api.account_pages import page_user, to_login
from labyard.api.deps import check_csrf, get_labyard
from labyard.api.web import render
from labyard.errors import LabyardError, NotFound
from labyard.services import Team, User
from labyard.services.plans import Plan

router = APIRouter(include_in_schema=False)


def _seat_plans(request: Request) -> list[Plan]:
    """Plans sold monthly or yearly: what seats can be bought of."""
    book = get_labyard(request).plans
    return [p for p in book.plans.values() if p.prices.monthly or p.prices.yearly]


async def _form(request: Request) -> dict[str, str]:
    await check_csrf(request)
    return {k: v for k, v in (await request.form()).items() if isinstance(v, str)}


def _board(
    request: Request, user: User, team_id: str, error: str = "", status: int = 200
) -> Response:
    try:
        team = get_labyard(request).teams.get(user, team_id)
    except NotFound:
        return render(request, "not_found.html", {"what": "team"}, 404)
    context = {
        "team": team,
        "invite_url": f"{str(request.base_url).rstrip('/')}{team.invite_path}",
        "plans": _seat_plans(request),
        "error": error,
    }
    return render(request, "team.html", context, status)


# -- joining (before /teams/{team_id}, which would take `join` for an id) -------------------


@router.get("/teams/join", response_model=None)
def join_by_code(request: Request, code: str = "") -> Response:
    """/teams' "join with a code" form (a GET) lands on the code's join page."""
    where = f"/teams/join/{quote(code.strip(), safe='')}" if code.strip() else "/teams"
    return RedirectResponse(where, status_code=303)


@router.get("/teams/join/{code}", response_model=None)
def join_page(request: Request, code: str) -> Response:
    user = page_user(request)
    if user is None:
        return to_login(request)
    return _join_page(request, user, code)


def _join_page(
    request: Request, user: User, code: str, error: str = "", status: int = 200
) -> Response:
    try:
        invitation = get_labyard(request).teams.invitation(user, code)
    except NotFound as exc:
        return render(request, "team_join.html", {"code": code, "error": exc.message}, 404)
    context = {"code": code, "invitation": invitation, "error": error}
    return render(request, "team_join.html", context, status)


@router.post("/teams/join/{code}", response_model=None)
async def join_form(request: Request, code: str) -> Response:
    user = page_user(request)
    if user is None:
        return to_login(request)
    try:
        await _form(request)
        team = await run_in_threadpool(get_labyard(request).teams.join, user, code)
    except LabyardError as exc:  # a full team (409) included
        return _join_page(request, user, code, exc.message, exc.http_status)
    return RedirectResponse(f"/teams/{team.id}", status_code=303)


# -- my teams, buying seats ----------------------------------------------------------------


@router.get("/teams", response_model=None)
def teams_page(request: Request) -> Response:
    user = page_user(request)
    if user is None:
        return to_login(request)
    return _teams(request, user)


def _teams(request: Request, user: User, error: str = "", status: int = 200) -> Response:
    context = {
        "teams": get_labyard(request).teams.list(user),
        "plans": _seat_plans(request),
        "error": error,
    }
    return render(request, "teams.html", context, status)


@router.post("/teams/buy", response_model=None)
async def buy_form(request: Request) -> Response:
    """/teams' "buy seats for a new team" and the board's "buy more seats" (with
    `team_id`): an order through checkout, then off to the provider's page."""
    user = page_user(request)
    if user is None:
        return to_login(request)
    team_id = ""
    try:
        form = await _form(request)
        team_id = form.get("team_id", "")
        seats = int(form.get("seats", "") or 0)
        _, url = await run_in_threadpool(
            lambda: get_labyard(request).billing.orders.checkout(
                user,
                form.get("plan", ""),
                form.get("interval", ""),
                str(request.base_url),
                seats=seats,
                team_id=team_id or None,
            )
        )
    except (LabyardError, ValueError) as exc:
        message, status = (
            (exc.message, exc.http_status)
            if isinstance(exc, LabyardError)
            else ("the number of seats must be a whole number", 422)
        )
        if team_id:
            return _board(request, user, team_id, message, status)
        return _teams(request, user, message, status)
    return RedirectResponse(url, status_code=303)


# -- the board ----------------------------------------------------------------------------

Change = Callable[[User, dict[str, str]], Team]


@router.get("/teams/{team_id}", response_model=None)
def team_page(request: Request, team_id: str) -> Response:
    user = page_user(request)
    if user is None:
        return to_login(request)
    return _board(request, user, team_id)


@router.post("/teams/{team_id}/members/{account_id}/remove", response_model=None)
async def remove_form(request: Request, team_id: str, account_id: int) -> Response:
    teams = get_labyard(request).teams
    return await _change(request, team_id, lambda u, _: teams.remove_member(u, team_id, account_id))


@router.post("/teams/{team_id}/members/{account_id}/admin", response_model=None)
async def admin_form(request: Request, team_id: str, account_id: int) -> Response:
    teams = get_labyard(request).teams
    return await _change(
        request, team_id, lambda u, _: teams.set_admin(u, team_id, account_id, True)
    )


@router.post("/teams/{team_id}/code", response_model=None)
async def code_form(request: Request, team_id: str) -> Response:
    teams = get_labyard(request).teams
    return await _change(request, team_id, lambda u, _: teams.new_code(u, team_id))


@router.post("/teams/{team_id}/name", response_model=None)
async def name_form(request: Request, team_id: str) -> Response:
    teams = get_labyard(request).teams
    return await _change(
        request, team_id, lambda u, form: teams.rename(u, team_id, form.get("name", ""))
    )


async def _change(request: Request, team_id: str, change: Change) -> Response:
    user = page_user(request)
    if user is None:
        return to_login(request)
    try:
        form = await _form(request)
        team = await run_in_threadpool(change, user, form)
    except LabyardError as exc:
        return _board(request, user, team_id, exc.message, exc.http_status)
    still_in = team.admin or team.my_seat is not None
    return RedirectResponse(f"/teams/{team_id}" if still_in else "/teams", status_code=303)
