"""The servers playgrounds run on, for admins: the JSON (`GET /api/admin/cluster`) and the
page (`/admin/cluster`: members with Drain and Restore, regions). On a driver that runs every
playground itself the page says so and lists the regions file's regions. What is shown and
who may drain live in services/cluster/members.py, as for `labyard cluster`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from labyard.api.admin_pages import signed_in_admin
from labyard.api.deps import LabyardDep, UserDep, check_csrf, get_labyard
from labyard.api.web import render
from labyard.errors import InvalidInput, LabyardError
from labyard.services import User
from labyard.services.cluster.members import ClusterOverview, Drained
from labyard.services.owners import account_of

router = APIRouter(prefix="/api/admin", tags=["cluster"])
pages = APIRouter(include_in_schema=False)


@router.get("/cluster")
async def cluster(user: UserDep, labyard: LabyardDep) -> ClusterOverview:
    """Every member of the cluster (its regions, state, playgrounds, free and total memory
    in bytes) and every region of the regions file (admins only). On a driver that runs
    every playground itself, `clustered` is false and `members` empty."""
    return await labyard.cluster.overview(user)


# -- the admin page ----------------------------------------------------------------------


async def _page(
    request: Request,
    user: User,
    error: str = "",
    status: int = 200,
    drained: tuple[str, list[Drained]] | None = None,
) -> Response:
    labyard = get_labyard(request)
    overview: ClusterOverview | None = None
    try:
        overview = await labyard.cluster.overview(user)
    except LabyardError as exc:  # the cluster does not answer: say so, never a 500
        if not error:
            error, status = exc.message, exc.http_status
    context: dict[str, Any] = {
        "overview": overview,
        "titles": {r.name: r.title for r in overview.regions} if overview else {},
        "error": error,
        "drained": _drained(request, drained) if drained else None,
    }
    return render(request, "admin_cluster.html", context, status)


def _drained(request: Request, drained: tuple[str, list[Drained]]) -> dict[str, Any]:
    """What a drain stopped, each playground's owner by email (as admins read accounts)."""
    member, stopped = drained
    accounts = {d.owner: account_of(d.owner) for d in stopped}
    emails = get_labyard(request).accounts.emails({a for a in accounts.values() if a})
    owners = {owner: emails.get(a, owner) if a else owner for owner, a in accounts.items()}
    return {"member": member, "playgrounds": stopped, "owners": owners}


@pages.get("/admin/cluster", response_model=None)
async def cluster_page(request: Request) -> Response:
    user = signed_in_admin(request)
    return user if isinstance(user, Response) else await _page(request, user)


@pages.post("/admin/cluster/{member}/evacuate", response_model=None)
async def evacuate_form(request: Request, member: str) -> Response:
    """Drain: stop the member's playgrounds and take it out of placement; the page then
    lists what was stopped (once: it is not kept anywhere)."""
    user = signed_in_admin(request)
    if isinstance(user, Response):
        return user
    try:
        await check_csrf(request)
        if (await request.form()).get("confirm") != "yes":
            raise InvalidInput(f"tick the box to confirm that {member}'s playgrounds stop")
        stopped = await get_labyard(request).cluster.evacuate(member, user)
    except LabyardError as exc:
        return await _page(request, user, exc.message, exc.http_status)
    return await _page(request, user, drained=(member, stopped))


@pages.post("/admin/cluster/{member}/restore", response_model=None)
async def restore_form(request: Request, member: str) -> Response:
    user = signed_in_admin(request)
    if isinstance(user, Response):
        return user
    try:
        await check_csrf(request)
        await get_labyard(request).cluster.restore(member, user)
    except LabyardError as exc:
        return await _page(request, user, exc.message, exc.http_status)
    return RedirectResponse("/admin/cluster", status_code=303)
