"""Class pages: my classes (`/classes`), the create form (`/classes/new`), the join pages
(`/classes/join`, `/classes/join/{code}`: signed in, or a guest's display name), a member's
class page (`/classes/{id}`: content with start buttons, queue position, broadcasts; for
the instructor, the region the class is pinned to, changed at `/classes/{id}/region`) and
the instructor board (`/classes/{id}/board`). Forms post here with the CSRF field; the
pages' script (static/classes.js) starts content and follows the live streams through the
JSON API. Policy lives in services/classes.py and its neighbours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ValidationError

from labyard.api import _learning as learning
from labyard.api.account_pages import page_user, to_login
from labyard.api.auth import set_session
from labyard.api.deps import check_csrf, get_labyard
from labyard.api.web import render
from labyard.errors import InvalidInput, LabyardError, NotFound
from labyard.services import Labyard, User
from labyard.services.class_spec import ClassChanges, ClassSpec
from labyard.services.classes import CONTENT_KEY, RUN_CLASSES, ClassView

router = APIRouter(include_in_schema=False)
FORM_TIME = "%Y-%m-%dT%H:%M"
"""`<input type=datetime-local>`'s value; the form's times are UTC."""
Form = TypeVar("Form", bound=BaseModel)
OWN_REGION = "Each learner's own region"
"""The region choice "" (no pin): each learner's country decides."""


async def _form(request: Request) -> dict[str, str]:
    await check_csrf(request)
    return {k: v for k, v in (await request.form()).items() if isinstance(v, str)}


def _missing(request: Request) -> Response:
    return render(request, "not_found.html", {"what": "class"}, 404)


def _region_choices(labyard: Labyard, current: str = "") -> list[tuple[str, str]]:
    """(name, title) of the regions a class may be pinned to, the empty choice first; none
    when the regions file has one region only (and the class is not pinned to another)."""
    regions = labyard.regions.regions
    if len(regions) < 2 and (not current or current in regions):
        return []
    choices = [("", OWN_REGION)] + [(name, r.title) for name, r in regions.items()]
    if current and current not in regions:  # gone from the file since: still shown
        choices.append((current, current))
    return choices


def _region_title(labyard: Labyard, region: str) -> str:
    if not region:
        return OWN_REGION
    found = labyard.regions.regions.get(region)
    if found is None:  # removed from the regions file since (class_starts.region_in_force)
        return f"{region} (no longer in the regions file: each learner's own region)"
    return found.title


def _content(request: Request, keys: list[str]) -> list[dict[str, Any]]:
    """The class's content as the class page lists it: what each start button starts."""
    labyard = get_labyard(request)
    shown: list[dict[str, Any]] = []
    for key in keys:
        try:
            if not CONTENT_KEY.match(key):
                found = labyard.catalog.get(key)
                title = found.manifest.title or found.name
                shown.append({"key": key, "title": title, "kind": "playground"})
                continue
            item = labyard.attempts.item(key)
        except LabyardError:
            continue  # gone from the server since the class was made
        modules = getattr(item.front, "modules", None)
        if item.kind == "course" and modules is not None:
            for module in modules:
                for slug in module.lessons:
                    lesson = f"{key}/{slug}"
                    try:
                        title = labyard.attempts.item(lesson).front.title
                    except LabyardError:
                        continue
                    shown.append(
                        {"key": lesson, "title": f"{item.front.title}: {title}", "kind": "lesson"}
                    )
        else:
            shown.append({"key": key, "title": item.front.title, "kind": item.kind})
    for entry in shown:
        entry["url"] = learning.url_of(entry["key"]) if entry["kind"] != "playground" else ""
    return shown


# -- list and create ------------------------------------------------------------------------


@router.get("/classes", response_model=None)
def classes_page(request: Request) -> Response:
    user = page_user(request)
    if user is None:
        return to_login(request)
    context = {
        "classes": get_labyard(request).classes.list(user),
        "may_create": user.role in RUN_CLASSES,
    }
    return render(request, "classes.html", context)


def _new_page(
    request: Request, values: dict[str, str] | None = None, error: str = "", status: int = 200
) -> Response:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    defaults = {
        "title": "",
        "content": "",
        "seats": "30",
        "starts_at": now.strftime(FORM_TIME),
        "ends_at": (now + timedelta(hours=2)).strftime(FORM_TIME),
        "guests": "",
        "region": "",
    }
    labyard = get_labyard(request)
    catalog = [e.name for e in labyard.catalog.entries()]
    context = {
        "values": {**defaults, **(values or {})},
        "error": error,
        "catalog": catalog,
        "regions": _region_choices(labyard),
    }
    return render(request, "class_new.html", context, status)


@router.get("/classes/new", response_model=None)
def new_class_page(request: Request) -> Response:
    user = page_user(request)
    if user is None:
        return to_login(request)
    if user.role not in RUN_CLASSES:
        return render(request, "forbidden.html", {"what": "the class form (instructors)"}, 403)
    return _new_page(request)


@router.post("/classes/new", response_model=None)
async def new_class(request: Request) -> Response:
    user = page_user(request)
    if user is None:
        return to_login(request)
    values: dict[str, str] = {}
    try:
        values = await _form(request)
        spec = _spec_of(values)
        made = get_labyard(request).classes.create(user, spec)
    except LabyardError as exc:
        return _new_page(request, values, exc.message, exc.http_status)
    return RedirectResponse(f"/classes/{made.id}/board", status_code=303)


def _spec_of(values: dict[str, str]) -> ClassSpec:
    return _valid(
        ClassSpec,
        {
            "title": values.get("title", ""),
            "content": [line.strip() for line in values.get("content", "").split() if line],
            "seats": values.get("seats", ""),
            "starts_at": values.get("starts_at", ""),
            "ends_at": values.get("ends_at", ""),
            "guests": values.get("guests") == "on",
            "region": values.get("region", ""),
        },
    )


def _valid(model: type[Form], fields: dict[str, Any]) -> Form:
    """The form's fields as `model`; InvalidInput naming each field's problem."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInput(problems) from exc


# -- joining (before /classes/{class_id}, which would take `join` for an id) --------------


@router.get("/classes/join", response_model=None)
def join_by_code(request: Request, code: str = "") -> Response:
    """The join form: a code typed in lands on the join page."""
    page_user(request)
    if code.strip():
        return RedirectResponse(f"/classes/join/{quote(code.strip(), safe='')}", status_code=303)
    return render(request, "class_join.html", {"code": "", "invitation": None, "error": ""})


@router.get("/classes/join/{code}", response_model=None)
def join_page(request: Request, code: str) -> Response:
    return _join_page(request, page_user(request), code)


def _join_page(
    request: Request, user: User | None, code: str, error: str = "", status: int = 200
) -> Response:
    try:
        invitation = get_labyard(request).classes.invitation(user, code)
    except NotFound as exc:
        context: dict[str, Any] = {"code": code, "invitation": None, "error": exc.message}
        return render(request, "class_join.html", context, 404)
    if user is None and not invitation.guests:
        return to_login(request)
    context = {"code": code, "invitation": invitation, "error": error}
    return render(request, "class_join.html", context, status)


@router.post("/classes/join/{code}", response_model=None)
async def join_form(request: Request, code: str) -> Response:
    """Signed in: join. Signed out, with a display name: join as the class's guest."""
    user = page_user(request)
    labyard = get_labyard(request)
    try:
        values = await _form(request)
        if user is not None:
            view = labyard.classes.join(user, code)
            return RedirectResponse(f"/classes/{view.id}", status_code=303)
        guest, view = labyard.classes.join_as_guest(code, values.get("name", ""))
    except LabyardError as exc:
        return _join_page(request, user, code, exc.message, exc.http_status)
    response = RedirectResponse(f"/classes/{view.id}", status_code=303)
    set_session(response, request, labyard.accounts.issue(guest, "session", "class guest"))
    return response


# -- a class, the board ---------------------------------------------------------------------


def _view(request: Request, user: User, class_id: str) -> ClassView | None:
    try:
        return get_labyard(request).classes.get(user, class_id)
    except NotFound:
        return None


@router.get("/classes/{class_id}", response_model=None)
def class_page(request: Request, class_id: str) -> Response:
    user = page_user(request)
    if user is None:
        return to_login(request)
    view = _view(request, user, class_id)
    if view is None:
        return _missing(request)
    return _class_page(request, view)


def _class_page(request: Request, view: ClassView, error: str = "", status: int = 200) -> Response:
    labyard = get_labyard(request)
    context = {
        "c": view,
        "content": _content(request, view.content),
        "instructs": view.members is not None,
        "join_url": str(request.base_url).rstrip("/") + view.join_path,
        "region_title": _region_title(labyard, view.region),
        "regions": _region_choices(labyard, view.region),
        "error": error,
        "data": {"id": view.id, "state": view.state, "member": view.me is not None},
    }
    return render(request, "class.html", context, status)


@router.post("/classes/{class_id}/region", response_model=None)
async def change_region(request: Request, class_id: str) -> Response:
    """The instructor pins the class to a region (or to none) from the class page."""
    user = page_user(request)
    if user is None:
        return to_login(request)
    labyard = get_labyard(request)
    try:
        values = await _form(request)
        labyard.classes.change(
            user, class_id, _valid(ClassChanges, {"region": values.get("region", "")})
        )
    except NotFound:
        return _missing(request)
    except LabyardError as exc:
        view = _view(request, user, class_id)
        if view is None:
            return _missing(request)
        return _class_page(request, view, exc.message, exc.http_status)
    return RedirectResponse(f"/classes/{class_id}", status_code=303)


@router.get("/classes/{class_id}/board", response_model=None)
def board_page(request: Request, class_id: str) -> Response:
    user = page_user(request)
    if user is None:
        return to_login(request)
    view = _view(request, user, class_id)
    if view is None:
        return _missing(request)
    if view.members is None:
        return render(request, "forbidden.html", {"what": "the board (its instructor)"}, 403)
    context = {
        "c": view,
        "join_url": str(request.base_url).rstrip("/") + view.join_path,
        "data": {"id": view.id},
    }
    return render(request, "class_board.html", context)
