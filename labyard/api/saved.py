"""Save-as and fork over HTTP: the JSON API and the playground page's Save button. A user
sees, starts and removes only their own saved playgrounds (404 for anyone else's)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field

from labyard.api.account_pages import page_user, to_login
from labyard.api.deps import LabyardDep, UserDep, check_csrf, client_country, get_labyard
from labyard.api.pages import to_playground
from labyard.api.web import render
from labyard.errors import LabyardError, NotFound

router = APIRouter(prefix="/api", tags=["saved playgrounds"])
pages = APIRouter(include_in_schema=False)


class SaveRequest(BaseModel):
    name: str = Field(min_length=1, max_length=40, description="Its name in your catalog.")
    title: str = Field("", max_length=200)


class StartSavedRequest(BaseModel):
    lifetime_s: int | None = Field(None, gt=0, le=7 * 86400)


@router.get("/saved-playgrounds")
def list_saved(labyard: LabyardDep, user: UserDep) -> list[dict[str, Any]]:
    """Your saved playgrounds."""
    return [s.to_json() for s in labyard.saved.list(user.owner)]


@router.post("/playgrounds/{playground_id}/save", status_code=201)
async def save_playground(
    playground_id: str, body: SaveRequest, labyard: LabyardDep, user: UserDep
) -> dict[str, Any]:
    """Save a stopped playground of yours as images plus a manifest (409 while it runs;
    429 over the plan's `saved_playgrounds`)."""
    saved = await labyard.saved.save(
        playground_id, body.name, owner=user.owner, account_id=user.id, title=body.title
    )
    return saved.to_json()


@router.post("/playgrounds/{playground_id}/fork", status_code=201)
async def fork_playground(
    playground_id: str, request: Request, labyard: LabyardDep, user: UserDep
) -> dict[str, Any]:
    """Start a copy of a running or stopped playground of yours (in your region, as any
    start)."""
    launch = user.launch(country=client_country(request))
    copy = await labyard.saved.fork(playground_id, owner=user.owner, launch=launch)
    return copy.to_json()


@router.post("/saved-playgrounds/{name}/start", status_code=201)
async def start_saved(
    name: str, body: StartSavedRequest, request: Request, labyard: LabyardDep, user: UserDep
) -> dict[str, Any]:
    launch = user.launch(country=client_country(request))
    playground = await labyard.saved.start(
        user.owner, name, launch=launch, lifetime_s=body.lifetime_s
    )
    return playground.to_json()


@router.delete("/saved-playgrounds/{name}", status_code=204)
def remove_saved(name: str, labyard: LabyardDep, user: UserDep) -> None:
    labyard.saved.remove(user.owner, name)


# -- pages ---------------------------------------------------------------------------------


@pages.post("/playgrounds/{playground_id}/save", response_model=None)
async def save_button(request: Request, playground_id: str) -> Response:
    """The playground page's Save button (a plain form): saved, the catalog shows it."""
    user = page_user(request)
    if user is None:
        return to_login(request)
    labyard = get_labyard(request)
    try:  # someone else's playground is "not found", before anything else is looked at
        await labyard.playgrounds.get(playground_id, owner=user.owner)
    except NotFound:
        return render(request, "not_found.html", {"what": "playground"}, 404)
    try:
        await check_csrf(request)
        form = await request.form()
        name = str(form.get("name", "")).strip()
        await labyard.saved.save(playground_id, name, owner=user.owner, account_id=user.id)
    except LabyardError as exc:
        context = {"catalog": [], "saved": [], "error": exc.message}
        return render(request, "catalog.html", context, exc.http_status)
    return RedirectResponse("/catalog#saved", status_code=303)


@pages.post("/saved-playgrounds/{name}/start", response_model=None)
async def start_button(request: Request, name: str) -> Response:
    user = page_user(request)
    if user is None:
        return to_login(request)
    labyard = get_labyard(request)
    try:
        labyard.saved.get(user.owner, name)
    except NotFound:
        return render(request, "not_found.html", {"what": "saved playground"}, 404)
    try:
        await check_csrf(request)
        launch = user.launch(country=client_country(request))
        playground = await labyard.saved.start(user.owner, name, launch=launch)
    except LabyardError as exc:
        context = {"catalog": [], "saved": [], "error": exc.message}
        return render(request, "catalog.html", context, exc.http_status)
    return to_playground(request, playground.id, playground.notice)
