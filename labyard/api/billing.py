"""Billing over HTTP: checkout, the learner's own orders, the subscription portal, the
Stripe webhook, and the admins' view of every order. Policy lives in services/billing."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from labyard.api.deps import LabyardDep, UserDep, client_country
from labyard.errors import BadWebhook

router = APIRouter(prefix="/api", tags=["billing"])
MAX_WEBHOOK_BYTES = 1 << 20
"""Stripe's events are a few KiB; anything this big is not one."""


class CheckoutBody(BaseModel):
    plan: str = Field(max_length=32)
    interval: Literal["monthly", "yearly", "lifetime"]
    seats: int | None = Field(None, ge=1, le=10_000)
    """Buy seats for a team (monthly or yearly) instead of a plan for yourself."""
    team_id: str | None = Field(None, max_length=16)
    """With `seats`: add them to this team (its admins buy more); without, a paid seats
    order makes a new team with the buyer as its admin."""
    promo_code: str | None = Field(None, max_length=40)
    """A promo code (docs/pricing.md): refused with a 422 saying why when it does not apply."""


class CheckoutOut(BaseModel):
    order_id: str
    url: str
    """Where to send the browser: the provider's checkout page (the manual provider: the
    account page, where the order shows as awaiting payment)."""


@router.post("/billing/checkout", status_code=201)
def checkout(
    body: CheckoutBody, request: Request, user: UserDep, labyard: LabyardDep
) -> CheckoutOut:
    """Create an order for the signed-in account and start paying for it, priced for the
    caller's country (from their IP address) and `promo_code`."""
    order, url = labyard.billing.orders.checkout(
        user,
        body.plan,
        body.interval,
        str(request.base_url),
        seats=body.seats,
        team_id=body.team_id,
        country=client_country(request),
        promo_code=body.promo_code or None,
    )
    return CheckoutOut(order_id=order.id, url=url)


@router.get("/billing")
def summary(user: UserDep, labyard: LabyardDep) -> dict[str, Any]:
    """The signed-in account's plan, when it ends, its orders and whether it has a portal."""
    return labyard.billing.summary(user).to_json()


@router.get("/billing/orders")
def orders(user: UserDep, labyard: LabyardDep) -> list[dict[str, Any]]:
    """The signed-in account's own orders, newest first."""
    return [order.to_json() for order in labyard.billing.orders.list(user)]


@router.get("/billing/orders/{order_id}")
def order(order_id: str, user: UserDep, labyard: LabyardDep) -> dict[str, Any]:
    """One of the signed-in account's orders (404 for anyone else's)."""
    return labyard.billing.orders.get(user, order_id).to_json()


@router.post("/billing/portal")
def portal(request: Request, user: UserDep, labyard: LabyardDep) -> dict[str, str]:
    """A link to the provider's portal, where the subscription is managed."""
    return_url = f"{str(request.base_url).rstrip('/')}/account#billing"
    return {"url": labyard.billing.orders.portal(user, return_url)}


@router.post("/billing/webhooks/stripe")
async def stripe_webhook(request: Request, labyard: LabyardDep) -> dict[str, Any]:
    """Stripe's events, signed (`Stripe-Signature`). 2xx once the event is stored and
    processed; 400 for a bad signature, a stale timestamp or a body that is not an event."""
    body = await request.body()
    if len(body) > MAX_WEBHOOK_BYTES:
        raise BadWebhook("the webhook body is too large")
    received = await run_in_threadpool(
        labyard.billing.webhooks.receive, "stripe", body, request.headers
    )
    return {"received": received.event_id, "duplicate": received.duplicate}


@router.get("/admin/orders")
def admin_orders(
    user: UserDep, labyard: LabyardDep, status: str | None = None
) -> list[dict[str, Any]]:
    """Every order (admins only), newest first; `?status=pending` and the like."""
    return [o.to_json(admin=True) for o in labyard.billing.orders.list_all(user, status)]


@router.post("/admin/orders/{order_id}/mark-paid")
def mark_paid(order_id: str, user: UserDep, labyard: LabyardDep) -> dict[str, Any]:
    """An admin marks a manual order paid: its plan is granted now."""
    return labyard.billing.orders.mark_paid(user, order_id).to_json(admin=True)


@router.post("/admin/orders/{order_id}/refund")
def refund(order_id: str, user: UserDep, labyard: LabyardDep) -> dict[str, Any]:
    """An admin records that a paid manual order was refunded: its plan ends now and its
    invoice gets a credit note."""
    return labyard.billing.orders.refund_manual(user, order_id).to_json(admin=True)
