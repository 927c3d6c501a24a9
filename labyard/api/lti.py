"""LTI 1.3: the endpoints an LMS (and its users' browsers) call, the teacher's and the
admin's pages and API. Policy lives in services/lti; this only speaks HTTP.

    GET  /lti/jwks                      labyard's public keys (JWKS)
    GET|POST /lti/login                 OIDC third-party login initiation -> platform
    POST /lti/launch                    the id_token form post -> signed in, on the page
    GET|POST /lti/deep-link             the teacher's content picker -> signed response
    GET  /lti/courses/{id}              a course's roster and grades (its teachers, admins)
    POST /lti/courses/{id}/links/{link}/send   send the link's grades now (form)
    GET|POST /admin/lti, POST /admin/lti/{id}/remove   platform registrations (admins)

    GET|POST /api/admin/lti/platforms, DELETE /api/admin/lti/platforms/{id}   (admins)
    GET  /api/lti/courses, /api/lti/courses/{id}/grades, /api/lti/courses/{id}/roster
    POST /api/lti/links/{link_id}/grades                     send the link's grades now

The login initiation remembers its state in a cookie (`labyard_lti_<state>`, holding the
nonce) that only the launch reads: a launch this browser did not start is refused. Every
refusal is an HTML page with the reason (4xx), and nothing is created.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from labyard.api.account_pages import page_user, to_login
from labyard.api.admin_pages import signed_in_admin
from labyard.api.auth import set_session
from labyard.api.deps import LabyardDep, UserDep, check_csrf, get_labyard
from labyard.api.web import render
from labyard.errors import LabyardError
from labyard.services import User
from labyard.services.lti import LaunchRefused, NewPlatform

pages = APIRouter(include_in_schema=False)
router = APIRouter(prefix="/api", tags=["lti"])
STATE_COOKIE = "labyard_lti_"
STATE_LIFETIME_S = 600
_STATE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def tool_urls(request: Request) -> dict[str, str]:
    """What an LMS admin enters for labyard (docs/lti.md)."""
    base = _base(request)
    return {
        "login": f"{base}/lti/login",
        "launch": f"{base}/lti/launch",
        "deep_link": f"{base}/lti/launch",
        "jwks": f"{base}/lti/jwks",
    }


def _refused(request: Request, exc: LabyardError) -> Response:
    return render(request, "lti_refused.html", {"message": exc.message}, exc.http_status)


# -- the platform's and the browser's ------------------------------------------------------


@pages.get("/lti/jwks")
def jwks(request: Request) -> JSONResponse:
    return JSONResponse(get_labyard(request).lti.tool_keys.jwks())


@pages.api_route("/lti/login", methods=["GET", "POST"], response_model=None)
async def login(request: Request) -> Response:
    params = {k: v for k, v in request.query_params.items()}
    if request.method == "POST":
        params.update({k: v for k, v in (await request.form()).items() if isinstance(v, str)})
    try:
        started = get_labyard(request).lti.launches.login(params, tool_urls(request)["launch"])
    except LabyardError as exc:
        return _refused(request, exc)
    response = RedirectResponse(started.redirect_url, status_code=302)
    secure = request.url.scheme == "https"
    # SameSite=None: the launch is a cross-site form post from the LMS (https only).
    response.set_cookie(
        STATE_COOKIE + started.state, started.nonce, max_age=STATE_LIFETIME_S, path="/lti",
        httponly=True, secure=secure, samesite="none" if secure else "lax",
    )  # fmt: skip
    return response


@pages.post("/lti/launch", response_model=None)
async def launch(request: Request) -> Response:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    if form.get("error"):  # the platform's OIDC error answer
        refusal = LaunchRefused(f"the LMS refused the sign-in: {form['error'][:200]}")
        return _refused(request, refusal)
    state = form.get("state", "")
    nonce = request.cookies.get(STATE_COOKIE + state) if _STATE.match(state) else None
    labyard = get_labyard(request)
    try:
        done = await run_in_threadpool(labyard.lti.launches.launch, form.get("id_token", ""), nonce)
    except LabyardError as exc:
        return _refused(request, exc)
    target = done.target
    if done.deep_link is not None:
        target += f"?request={done.deep_link}"
    response = RedirectResponse(target, status_code=303)
    set_session(response, request, labyard.accounts.issue(done.user, "session", "lti"))
    response.delete_cookie(STATE_COOKIE + state, path="/lti")
    return response


@pages.get("/lti/deep-link", response_model=None)
def deep_link_page(request: Request) -> Response:
    token = request.query_params.get("request", "")
    user = page_user(request)
    if user is None:
        return to_login(request)
    linking = get_labyard(request).lti.deep_linking
    try:
        picking = linking.picking(token, user)
        choices = linking.choices()
    except LabyardError as exc:
        return _refused(request, exc)
    context = {"picking": picking, "choices": choices}
    return render(request, "lti_deep_link.html", context)


@pages.post("/lti/deep-link", response_model=None)
async def deep_link_pick(request: Request) -> Response:
    user = page_user(request)
    if user is None:
        return to_login(request)
    linking = get_labyard(request).lti.deep_linking
    try:
        await check_csrf(request)
        form = await request.form()
        picking = linking.picking(str(form.get("request", "")), user)
        answer = linking.respond(
            picking, str(form.get("content", "")), tool_urls(request)["launch"]
        )
    except LabyardError as exc:
        return _refused(request, exc)
    return render(request, "lti_form_post.html", {"action": answer.return_url, "jwt": answer.jwt})


# -- teachers' pages -------------------------------------------------------------------------


@pages.get("/lti/courses/{course_id}", response_model=None)
async def course_page(request: Request, course_id: int, sent: str = "") -> Response:
    user = page_user(request)
    if user is None:
        return to_login(request)
    lti = get_labyard(request).lti
    try:
        course = lti.courses.get(user, course_id)
        grades = lti.grades.of_course(user, course_id)
    except LabyardError:
        return render(request, "not_found.html", {"what": "course"}, 404)
    members, roster_error = [], ""
    if course.roster:
        try:
            members = await run_in_threadpool(lti.roster.members, user, course_id)
        except LabyardError as exc:
            roster_error = exc.message
    context = {
        "course": course,
        "grades": grades,
        "members": members,
        "roster_error": roster_error,
        "sent": sent,
    }
    return render(request, "lti_course.html", context)


@pages.post("/lti/courses/{course_id}/links/{link_id}/send", response_model=None)
async def send_grades_form(request: Request, course_id: int, link_id: int) -> Response:
    user = page_user(request)
    if user is None:
        return to_login(request)
    try:
        await check_csrf(request)
        sent = await run_in_threadpool(get_labyard(request).lti.grades.send_link, user, link_id)
    except LabyardError as exc:
        return render(request, "not_found.html", {"what": "course"}, exc.http_status)
    ok = sum(g.status == "sent" for g in sent)
    return RedirectResponse(f"/lti/courses/{course_id}?sent={ok}", status_code=303)


# -- the admin's page ------------------------------------------------------------------------


def _admin_page(request: Request, user: User, error: str = "", code: int = 200) -> Response:
    context = {
        "platforms": get_labyard(request).lti.registrations.list(user),
        "urls": tool_urls(request),
        "error": error,
    }
    return render(request, "admin_lti.html", context, code)


@pages.get("/admin/lti", response_model=None)
def admin_page(request: Request) -> Response:
    user = signed_in_admin(request)
    return user if not isinstance(user, User) else _admin_page(request, user)


@pages.post("/admin/lti", response_model=None)
async def admin_add_form(request: Request) -> Response:
    user = signed_in_admin(request)
    if not isinstance(user, User):
        return user
    try:
        await check_csrf(request)
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        new = NewPlatform(
            issuer=form.get("issuer", ""),
            client_id=form.get("client_id", ""),
            deployment_ids=tuple(re.split(r"[\s,]+", form.get("deployment_ids", "").strip())),
            jwks_url=form.get("jwks_url", ""),
            auth_url=form.get("auth_url", ""),
            token_url=form.get("token_url", ""),
            name=form.get("name", ""),
        )
        get_labyard(request).lti.registrations.add(user, new)
    except LabyardError as exc:
        return _admin_page(request, user, exc.message, exc.http_status)
    return RedirectResponse("/admin/lti", status_code=303)


@pages.post("/admin/lti/{platform_id}/remove", response_model=None)
async def admin_remove_form(request: Request, platform_id: int) -> Response:
    user = signed_in_admin(request)
    if not isinstance(user, User):
        return user
    try:
        await check_csrf(request)
        get_labyard(request).lti.registrations.remove(user, platform_id)
    except LabyardError as exc:
        return _admin_page(request, user, exc.message, exc.http_status)
    return RedirectResponse("/admin/lti", status_code=303)


# -- JSON API --------------------------------------------------------------------------------


class PlatformIn(BaseModel):
    issuer: str = Field(max_length=255, description="The platform's issuer (`iss`).")
    client_id: str = Field(max_length=255, description="The client id it gave labyard.")
    deployment_ids: list[str] = Field(max_length=100)
    jwks_url: str = Field(max_length=1000)
    auth_url: str = Field(max_length=1000, description="OIDC authorization endpoint.")
    token_url: str = Field(max_length=1000, description="OAuth2 access token endpoint.")
    name: str = Field("", max_length=100)


@router.get("/admin/lti/platforms")
def list_platforms(labyard: LabyardDep, user: UserDep) -> list[dict[str, Any]]:
    """Every registered LTI platform (admins only)."""
    return [p.to_json() for p in labyard.lti.registrations.list(user)]


@router.post("/admin/lti/platforms", status_code=201)
def add_platform(body: PlatformIn, labyard: LabyardDep, user: UserDep) -> dict[str, Any]:
    """Register an LTI 1.3 platform (admins only)."""
    new = NewPlatform(
        body.issuer, body.client_id, tuple(body.deployment_ids), body.jwks_url, body.auth_url,
        body.token_url, body.name,
    )  # fmt: skip
    return labyard.lti.registrations.add(user, new).to_json()


@router.delete("/admin/lti/platforms/{platform_id}", status_code=204)
def remove_platform(platform_id: int, labyard: LabyardDep, user: UserDep) -> None:
    """Remove a platform with its identities, courses and grades (admins only)."""
    labyard.lti.registrations.remove(user, platform_id)


@router.get("/lti/courses")
def list_courses(labyard: LabyardDep, user: UserDep) -> list[dict[str, Any]]:
    """The LMS courses you launched labyard from as a teacher (admins: all)."""
    return [c.to_json() for c in labyard.lti.courses.list(user)]


@router.get("/lti/courses/{course_id}/grades")
def course_grades(course_id: int, labyard: LabyardDep, user: UserDep) -> list[dict[str, Any]]:
    """Each member's score on each link of the course, as last sent."""
    return [g.to_json() for g in labyard.lti.grades.of_course(user, course_id)]


@router.get("/lti/courses/{course_id}/roster")
def course_roster(course_id: int, labyard: LabyardDep, user: UserDep) -> list[dict[str, Any]]:
    """The course's members, fetched from the platform now (NRPS)."""
    return [m.to_json() for m in labyard.lti.roster.members(user, course_id)]


@router.post("/lti/links/{link_id}/grades")
def send_grades(link_id: int, labyard: LabyardDep, user: UserDep) -> list[dict[str, Any]]:
    """Send every learner's score on the link to the platform now."""
    return [g.to_json() for g in labyard.lti.grades.send_link(user, link_id)]
