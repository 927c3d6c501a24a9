"""Prices for the visitor's country: the public pricing page (`/pricing`) and its JSON twin
(`GET /api/pricing`). The country comes from the client's IP address, looked up offline
(services/geo.py). The address is the connection's (`request.client`): behind a reverse
proxy, uvicorn replaces it with X-Forwarded-For only for the proxies it trusts
(`--forwarded-allow-ips`, env FORWARDED_ALLOW_IPS; 127.0.0.1 by default), so a client
cannot pick its own price with a header. Policy lives in services/billing/quotes.py."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from labyard.api.account_pages import page_user, to_login
from labyard.api.deps import LabyardDep, check_csrf, client_country, get_labyard
from labyard.api.web import render
from labyard.errors import LabyardError
from labyard.services.billing.quotes import Quote

router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix="/api", tags=["billing"])

WHY = (
    "Prices differ by country because we charge what a subscription costs where you live: "
    "each country is in one of five price tiers, set from what a streaming service charges "
    "there, so a learner in Lagos pays as fair a share as one in Zurich."
)


def _price_list(request: Request, seats: int | None = None) -> tuple[str | None, list[Quote]]:
    country = client_country(request)
    return country, get_labyard(request).billing.orders.price_list(country, seats)


@api_router.get("/pricing")
def pricing(
    request: Request,
    labyard: LabyardDep,
    seats: int | None = Query(None, ge=1, le=10_000),
) -> dict[str, Any]:
    """Every plan for sale, priced for the caller's country (or, with `seats`, as team
    seats with the group discount), with the sentence on why prices differ."""
    country, quotes = _price_list(request, seats)
    tier = labyard.billing.pricing.tier_of(country)
    return {
        "country": country,
        "tier": tier if seats is None else None,
        "why": WHY,
        "prices": [q.to_json() for q in quotes],
    }


@router.get("/pricing", response_model=None)
def pricing_page(request: Request) -> Response:
    """The plans and their prices for the visitor's country, in its currency."""
    page_user(request)
    return _page(request)


@router.post("/pricing/checkout", response_model=None)
async def checkout_form(request: Request) -> Response:
    """A plan's Buy button (with an optional promo code): off to the provider's checkout."""
    user = page_user(request)
    if user is None:
        return to_login(request)
    try:
        await check_csrf(request)
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        orders = get_labyard(request).billing.orders
        _, url = await run_in_threadpool(
            orders.checkout,
            user,
            form.get("plan", ""),
            form.get("interval", ""),
            str(request.base_url),
            country=client_country(request),
            promo_code=form.get("promo_code", "").strip() or None,
        )
    except LabyardError as exc:
        return _page(request, exc.message, exc.http_status)
    return RedirectResponse(url, status_code=303)


def _page(request: Request, error: str = "", status: int = 200) -> Response:
    country, quotes = _price_list(request)
    by_plan: dict[str, list[Quote]] = {}
    for q in quotes:
        by_plan.setdefault(q.plan, []).append(q)
    plans = get_labyard(request).plans.plans
    context = {
        "country": country,
        "why": WHY,
        "plans": [(plans[name], by_plan.get(name, [])) for name in plans],
        "error": error,
    }
    return render(request, "pricing.html", context, status)
