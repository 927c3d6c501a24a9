"""The analytics dashboard over HTTP (admins only): the report as JSON, each of its tables
as CSV, and the page that draws them. Policy and queries live in services/analytics.py."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from labyard.api.account_pages import page_user, to_login
from labyard.api.deps import LabyardDep, UserDep
from labyard.api.web import render
from labyard.types import Role

router = APIRouter(prefix="/api", tags=["analytics"])
pages = APIRouter(include_in_schema=False)

From = Annotated[str, Query(alias="from", max_length=32, description="YYYY-MM-DD (UTC)")]
To = Annotated[str, Query(alias="to", max_length=32, description="YYYY-MM-DD, included")]


@router.get("/admin/analytics")
async def analytics(first: From, last: To, user: UserDep, labyard: LabyardDep) -> dict[str, Any]:
    """Usage and revenue for the days `from` to `to` (both included, UTC), each headline
    figure with its value for the previous period of the same length (docs/analytics.md)."""
    report: dict[str, Any] = await run_in_threadpool(labyard.analytics.for_admin, user, first, last)
    return report


@router.get(
    "/admin/analytics/{table}.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
async def analytics_csv(
    table: str, first: From, last: To, user: UserDep, labyard: LabyardDep
) -> Response:
    """One table of the report as CSV: top_playgrounds, top_content, revenue_by_month or
    country_tiers."""
    name, body = await run_in_threadpool(labyard.analytics.csv_for_admin, user, table, first, last)
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    return Response(body, media_type="text/csv; charset=utf-8", headers=headers)


@pages.get("/admin/analytics", response_model=None)
def analytics_page(request: Request) -> Response:
    """The dashboard: it fetches /api/admin/analytics for the period picked."""
    user = page_user(request)
    if user is None:
        return to_login(request)
    if user.role != Role.ADMIN:
        return render(request, "admin_analytics.html", {"forbidden": True}, 403)
    return render(request, "admin_analytics.html")
