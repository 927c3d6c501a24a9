"""Invoices from Stripe's events: after an event's handler (stripe_events.py) has acted, in
the same transaction, the invoice or credit note it calls for is issued (invoices.py).

- `checkout.session.completed` that paid an order: the order's first invoice, with the
  amounts, the tax and the buyer (name, address, tax ID) Stripe's checkout reported;
- `invoice.paid` for a later period of a paid subscription (`billing_reason` other than
  `subscription_create`, whose payment the checkout stands for): a renewal invoice, once
  per Stripe invoice id;
- `charge.refunded`: a credit note for the invoice of that charge, for all of it or, for a
  partial refund, for what was refunded since the last note.

Both the older and the newer shapes of Stripe's objects are read: tax per rate from a
checkout's `total_details.breakdown.taxes`, an invoice's `total_taxes` (API 2025-03-31 on)
or `total_tax_amounts` (before), with the rate where Stripe expanded it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labyard.services.billing.invoice_content import Party, Reported, TaxPart
from labyard.services.billing.invoices import Invoices
from labyard.services.billing.provider import WebhookEvent
from labyard.services.billing.stripe_events import (
    _charge_order,
    _dig,
    _invoice_subscription,
    _order,
    _str,
    _time,
)
from labyard.store import InvoiceRow, OrderRow, SubscriptionRow
from labyard.types import OrderStatus

Follower = Callable[[Invoices, Session, WebhookEvent], InvoiceRow | None]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _percentage(rate: dict[str, Any]) -> Decimal | None:
    value = rate.get("percentage")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        found = Decimal(str(value))
    except InvalidOperation:
        return None
    return found if found.is_finite() and 0 <= found < 100 else None


def tax_part(entry: dict[str, Any]) -> TaxPart:
    """One of Stripe's per-rate tax amounts (any of its three shapes)."""
    rate = next(
        (
            found
            for found in (
                entry.get("rate"),
                entry.get("tax_rate"),
                _dig(entry, "tax_rate_details", "tax_rate"),
            )
            if isinstance(found, dict)
        ),
        {},
    )
    inclusive = entry.get("inclusive", rate.get("inclusive"))
    behaviour = entry.get("tax_behavior")
    if not isinstance(inclusive, bool) and behaviour in ("inclusive", "exclusive"):
        inclusive = behaviour == "inclusive"
    name = rate.get("display_name")
    return TaxPart(
        _int(entry.get("amount")) or 0,
        _percentage(rate),
        _int(entry.get("taxable_amount")),
        inclusive if isinstance(inclusive, bool) else None,
        name[:40] if isinstance(name, str) else "",
    )


def _party(name: Any, address: Any, email: Any, tax_ids: Any) -> Party:
    where = _dict(address)

    def text(value: Any) -> str:
        return " ".join(value.split())[:100] if isinstance(value, str) else ""

    town = f"{text(where.get('postal_code'))} {text(where.get('city'))}".strip()
    lines = [text(where.get("line1")), text(where.get("line2")), town, text(where.get("state"))]
    vat_ids = [text(t.get("value")) for t in _list(tax_ids)]
    country = text(where.get("country")).upper()
    return Party(
        text(name),
        "\n".join(line for line in lines if line),
        country if len(country) == 2 else "",
        next((v for v in vat_ids if v), ""),
        text(email),
    )


def _period(obj: dict[str, Any]) -> tuple[datetime, datetime] | None:
    lines = _list(_dig(obj, "lines", "data"))
    starts = [s for s in (_time(_dig(line, "period", "start")) for line in lines) if s]
    ends = [e for e in (_time(_dig(line, "period", "end")) for line in lines) if e]
    return (min(starts), max(ends)) if starts and ends else None


def from_checkout(obj: dict[str, Any]) -> Reported:
    """What a completed Checkout Session says about its payment."""
    details, buyer = _dict(obj.get("total_details")), _dict(obj.get("customer_details"))
    return Reported(
        currency=_str(obj.get("currency")),
        subtotal=_int(obj.get("amount_subtotal")),
        discount=_int(details.get("amount_discount")),
        tax=_int(details.get("amount_tax")),
        total=_int(obj.get("amount_total")),
        taxes=tuple(tax_part(t) for t in _list(_dig(details, "breakdown", "taxes"))),
        buyer=_party(
            buyer.get("name"), buyer.get("address"), buyer.get("email"), buyer.get("tax_ids")
        ),
        provider_invoice_id=_str(obj.get("invoice")),
        payment_intent_id=_str(obj.get("payment_intent")),
    )


def from_invoice(obj: dict[str, Any]) -> Reported:
    """What a paid Stripe invoice says about its payment."""
    taxes = tuple(
        tax_part(t) for t in _list(obj.get("total_taxes")) or _list(obj.get("total_tax_amounts"))
    )
    tax = _int(obj.get("tax"))
    discounts = [_int(d.get("amount")) or 0 for d in _list(obj.get("total_discount_amounts"))]
    return Reported(
        currency=_str(obj.get("currency")),
        subtotal=_int(obj.get("subtotal")),
        discount=sum(discounts) if discounts else None,
        tax=tax if tax is not None or not taxes else sum(t.amount for t in taxes),
        total=_int(obj.get("total")),
        taxes=taxes,
        buyer=_party(
            obj.get("customer_name"),
            obj.get("customer_address"),
            obj.get("customer_email"),
            obj.get("customer_tax_ids"),
        ),
        period=_period(obj),
        provider_invoice_id=_str(obj.get("id")),
        charge_id=_str(obj.get("charge")),
        payment_intent_id=_str(obj.get("payment_intent")),
    )


# -- followers: what each event issues, after its handler --------------------------------


def checkout_paid(invoices: Invoices, session: Session, event: WebhookEvent) -> InvoiceRow | None:
    obj = event.object
    order = _order(session, obj.get("client_reference_id") or _dig(obj, "metadata", "order_id"))
    if order is None or order.status != OrderStatus.PAID:
        return None
    return invoices.order_paid(session, order, from_checkout(obj))


def renewal_paid(invoices: Invoices, session: Session, event: WebhookEvent) -> InvoiceRow | None:
    obj = event.object
    sub_id = _invoice_subscription(obj)
    if sub_id is None or obj.get("billing_reason") == "subscription_create":
        return None
    query = select(SubscriptionRow).where(SubscriptionRow.provider_id == sub_id)
    sub = session.scalar(query)
    order = session.get(OrderRow, sub.order_id) if sub is not None and sub.order_id else None
    if order is None or order.status != OrderStatus.PAID:
        return None
    return invoices.renewal_paid(session, order, from_invoice(obj))


def refunded(invoices: Invoices, session: Session, event: WebhookEvent) -> InvoiceRow | None:
    """A whole refund (the order is refunded): a credit note for the rest of the charge's
    invoice. A partial one (`refunded` false, `amount_refunded` the running sum): a note for
    what was refunded since the last one; the grant stays."""
    obj = event.object
    order = _charge_order(session, obj)
    if order is None:
        return None
    charge = Reported(
        provider_invoice_id=_str(obj.get("invoice")),
        charge_id=_str(obj.get("id")),
        payment_intent_id=_str(obj.get("payment_intent")),
    )
    if obj.get("refunded") is True:
        if order.status != OrderStatus.REFUNDED:
            return None
        return invoices.refunded(session, order, charge)
    so_far = obj.get("amount_refunded")
    if order.status != OrderStatus.PAID or not isinstance(so_far, int) or so_far <= 0:
        return None
    return invoices.refunded(session, order, charge, refunded_amount=so_far)


FOLLOWERS: dict[str, Follower] = {
    "checkout.session.completed": checkout_paid,
    "checkout.session.async_payment_succeeded": checkout_paid,
    "invoice.paid": renewal_paid,
    "charge.refunded": refunded,
}


def follow(invoices: Invoices, session: Session, event: WebhookEvent) -> str:
    """Issue what `event` calls for, in the transaction its handler acted in; what was
    issued, for the event's outcome ('' when nothing)."""
    follower = FOLLOWERS.get(event.type)
    issued = follower(invoices, session, event) if follower is not None else None
    if issued is None:
        return ""
    return f"{issued.kind.replace('_', ' ')} {issued.number}"
