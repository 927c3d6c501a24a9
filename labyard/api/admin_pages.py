"""The operator's pages (admins only): every order, with what needs a look flagged, and
"mark paid" for orders invoiced by hand. Policy lives in services/billing."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from labyard.api.account_pages import page_user, to_login
from labyard.api.deps import check_csrf, get_labyard
from labyard.api.web import render
from labyard.errors import LabyardError
from labyard.services import User
from labyard.types import OrderStatus, Role

router = APIRouter(include_in_schema=False)


def signed_in_admin(request: Request) -> User | Response:
    """The signed-in admin, or the response for anyone else (sign-in, or a 403 page)."""
    user = page_user(request)
    if user is None:
        return to_login(request)
    if user.role != Role.ADMIN:
        return render(request, "forbidden.html", {"what": "the operator's pages"}, 403)
    return user


@router.get("/admin/orders", response_model=None)
def orders_page(request: Request, status: str = "", flagged: bool = False) -> Response:
    user = signed_in_admin(request)
    if not isinstance(user, User):
        return user
    return _orders(request, user, status, flagged)


def _orders(
    request: Request, user: User, status: str, flagged: bool, error: str = "", code: int = 200
) -> Response:
    labyard = get_labyard(request)
    if status and status not in set(OrderStatus):
        error, code, status = f"unknown status {status!r}", 400, ""
    orders = labyard.billing.orders.list_all(user, status or None)
    if flagged:
        orders = [o for o in orders if o.flagged]
    context = {
        "orders": orders,
        "emails": labyard.accounts.emails({o.account_id for o in orders}),
        "statuses": list(OrderStatus),
        "status": status,
        "flagged": flagged,
        "flagged_count": sum(o.flagged for o in orders),
        "error": error,
    }
    return render(request, "admin_orders.html", context, code)


@router.post("/admin/orders/{order_id}/mark-paid", response_model=None)
async def mark_paid_form(request: Request, order_id: str) -> Response:
    return await _order_form(request, order_id, "mark_paid")


@router.post("/admin/orders/{order_id}/refund", response_model=None)
async def refund_form(request: Request, order_id: str) -> Response:
    return await _order_form(request, order_id, "refund_manual")


async def _order_form(request: Request, order_id: str, action: str) -> Response:
    """One of an order's buttons (`Orders.<action>`), then back to the order's row."""
    user = signed_in_admin(request)
    if not isinstance(user, User):
        return user
    try:
        await check_csrf(request)
        change = getattr(get_labyard(request).billing.orders, action)
        await run_in_threadpool(change, user, order_id)
    except LabyardError as exc:
        return _orders(request, user, "", False, exc.message, exc.http_status)
    return RedirectResponse(f"/admin/orders#{order_id}", status_code=303)
