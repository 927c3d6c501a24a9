"""Promo codes for admins: the JSON API (`/api/admin/promos`: create, list, one code with its
redemptions, disable) and a small web page (`/admin/promos`: the list and a create form).
Who may do it, and every rule, live in services/billing/promos.py."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field

from labyard.api.admin_pages import signed_in_admin
from labyard.api.deps import LabyardDep, UserDep, check_csrf, get_labyard
from labyard.api.web import render
from labyard.errors import LabyardError
from labyard.services import User
from labyard.services.billing.promos import NewPromo, parse_expiry

router = APIRouter(prefix="/api/admin", tags=["billing"])
pages = APIRouter(include_in_schema=False)


class PromoBody(BaseModel):
    code: str = Field(max_length=40)
    """3 to 40 letters, digits, `-` or `_`; matched case-insensitively."""
    percent: int | None = Field(None, ge=1, le=99)
    amount: str | None = Field(None, max_length=16)
    """An amount off each unit in major units (`5.00`), with `currency`; or `percent`."""
    currency: str | None = Field(None, max_length=3)
    max_redemptions: int | None = Field(None, ge=1, le=10_000_000)
    expires: str | None = Field(None, max_length=40)
    """`2026-12-31` (good through that day, UTC) or an ISO date-time."""
    first_purchase_only: bool = False
    plans: list[str] = Field(default_factory=list, max_length=50)
    """The plans it is good for; empty: every plan."""
    note: str = Field("", max_length=200)

    def new(self) -> NewPromo:
        return NewPromo(
            code=self.code,
            percent=self.percent,
            amount=self.amount,
            currency=self.currency,
            max_redemptions=self.max_redemptions,
            expires_at=parse_expiry(self.expires) if self.expires else None,
            first_purchase_only=self.first_purchase_only,
            plans=tuple(p[:32] for p in self.plans),
            note=self.note,
        )


@router.post("/promos", status_code=201)
def create_promo(body: PromoBody, user: UserDep, labyard: LabyardDep) -> dict[str, Any]:
    """Make a promo code (admins only)."""
    return labyard.billing.promos.create(user, body.new()).to_json()


@router.get("/promos")
def list_promos(user: UserDep, labyard: LabyardDep) -> list[dict[str, Any]]:
    """Every promo code, newest first (admins only)."""
    return [promo.to_json() for promo in labyard.billing.promos.list(user)]


@router.get("/promos/{code}")
def get_promo(code: str, user: UserDep, labyard: LabyardDep) -> dict[str, Any]:
    """One promo code and every redemption of it (admins only)."""
    promo, uses = labyard.billing.promos.get(user, code)
    return {**promo.to_json(), "redemptions": [use.to_json() for use in uses]}


@router.post("/promos/{code}/disable")
def disable_promo(code: str, user: UserDep, labyard: LabyardDep) -> dict[str, Any]:
    """No new checkout takes the code (admins only); orders that hold it keep it."""
    return labyard.billing.promos.disable(user, code).to_json()


# -- the admin page ----------------------------------------------------------------------


def _page(request: Request, user: User, error: str = "", status: int = 200) -> Response:
    labyard = get_labyard(request)
    context = {
        "promos": labyard.billing.promos.list(user),
        "plans": [plan for plan in labyard.plans.plans.values() if plan.paid],
        "error": error,
    }
    return render(request, "admin_promos.html", context, status)


@pages.get("/admin/promos", response_model=None)
def promos_page(request: Request) -> Response:
    user = signed_in_admin(request)
    return user if isinstance(user, Response) else _page(request, user)


@pages.post("/admin/promos", response_model=None)
async def create_form(request: Request) -> Response:
    user = signed_in_admin(request)
    if isinstance(user, Response):
        return user
    try:
        await check_csrf(request)
        form = await request.form()
        text = {k: v for k, v in form.items() if isinstance(v, str)}
        body = PromoBody(
            code=text.get("code", ""),
            percent=int(text["percent"]) if text.get("percent") else None,
            amount=text.get("amount") or None,
            currency=text.get("currency") or None,
            max_redemptions=int(text["max_redemptions"]) if text.get("max_redemptions") else None,
            expires=text.get("expires") or None,
            first_purchase_only=text.get("first_purchase_only") == "on",
            plans=[p for p in form.getlist("plans") if isinstance(p, str)],
            note=text.get("note", ""),
        )
        get_labyard(request).billing.promos.create(user, body.new())
    except LabyardError as exc:
        return _page(request, user, exc.message, exc.http_status)
    except ValueError as exc:  # pydantic's ValidationError, a number that is not one
        return _page(request, user, _first_problem(exc), 422)
    return RedirectResponse("/admin/promos", status_code=303)


@pages.post("/admin/promos/{code}/disable", response_model=None)
async def disable_form(request: Request, code: str) -> Response:
    user = signed_in_admin(request)
    if isinstance(user, Response):
        return user
    try:
        await check_csrf(request)
        get_labyard(request).billing.promos.disable(user, code)
    except LabyardError as exc:
        return _page(request, user, exc.message, exc.http_status)
    return RedirectResponse("/admin/promos", status_code=303)


def _first_problem(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return "a number field holds something that is not a whole number"
