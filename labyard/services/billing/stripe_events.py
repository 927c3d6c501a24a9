"""What each Stripe event does, in the transaction that marks it processed (webhooks.py).

Events come at least once and in any order, so every handler is idempotent and order-free:
- an order is paid once; refunded and cancelled orders stay so;
- a subscription takes a status only from an event not older than the newest applied
  (`last_event_at`), and `canceled` is terminal: a late `customer.subscription.updated`
  never brings it back;
- period ends only move forward, except that a cancellation ends the grant.
The grant follows the subscription (`_sync`): active → until its period end; cancelled →
until it ended; a seats order's seats, and their holders' grants, the same way. A failed
renewal payment keeps access until the period paid for ends.
The payment's country (a charge's card country; until one is seen, the checkout's billing
address country) is checked against the country the order was priced for
(orders.card_country); an expired checkout gives its promo code's use back.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labyard.services.billing import promos
from labyard.services.billing.orders import card_country, fulfil, provisional_end, revoke_order
from labyard.services.billing.provider import WebhookEvent
from labyard.services.entitlements import Entitlements
from labyard.services.teams import seats_follow, seats_resized
from labyard.store import EntitlementRow, OrderRow, SubscriptionRow
from labyard.types import OrderKind, OrderStatus

TERMINAL = {"canceled", "incomplete_expired"}
PAID = {"paid", "no_payment_required"}

Handler = Callable[[Session, Entitlements, WebhookEvent], str]


def _now() -> datetime:
    return datetime.now(UTC)


def _str(value: Any) -> str | None:
    """An id that may come expanded (an object with an `id`) or as a plain string."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _time(value: Any) -> datetime | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**34:
        return datetime.fromtimestamp(value, UTC)
    return None


def _dig(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _order(session: Session, order_id: Any) -> OrderRow | None:
    if not isinstance(order_id, str) or not order_id:
        return None
    return session.get(OrderRow, order_id[:24], with_for_update=True)


def _subscription(session: Session, provider_id: str, at: datetime) -> SubscriptionRow:
    query = select(SubscriptionRow).where(SubscriptionRow.provider_id == provider_id)
    row = session.scalar(query.with_for_update())
    if row is None:
        row = SubscriptionRow(
            provider="stripe",
            provider_id=provider_id,
            status="incomplete",
            last_event_at=datetime.fromtimestamp(0, UTC),
            updated_at=_now(),
        )
        session.add(row)
        session.flush()  # a concurrent twin fails here; the event is retried
    return row


def _link(sub: SubscriptionRow, order: OrderRow | None) -> None:
    if order is not None and sub.order_id is None:
        sub.order_id = order.id
    if order is not None and order.subscription_id is None:
        order.subscription_id = sub.provider_id


def _extend(sub: SubscriptionRow, period_end: datetime | None) -> None:
    if period_end is not None and (
        sub.current_period_end is None or period_end > sub.current_period_end
    ):
        sub.current_period_end = period_end


def _set_status(sub: SubscriptionRow, status: str, at: datetime) -> None:
    if sub.status in TERMINAL:
        return
    if status in TERMINAL or at >= sub.last_event_at:
        sub.status = status
    sub.last_event_at = max(sub.last_event_at, at)
    sub.updated_at = _now()


def _sync(session: Session, sub: SubscriptionRow) -> None:
    """Make the subscription's grant (a seats order: its seats) match what is known of the
    subscription."""
    order = session.get(OrderRow, sub.order_id) if sub.order_id else None
    if order is not None and order.kind == OrderKind.SEATS:
        ended = (sub.ended_at or _now()) if sub.status in TERMINAL else None
        seats_follow(session, order, sub.current_period_end, ended)
        return
    if order is None or order.entitlement_id is None:
        return
    grant = session.get(EntitlementRow, order.entitlement_id)
    if grant is None or grant.revoked_at is not None:
        return  # a refund revoked it: nothing brings it back
    if sub.status in TERMINAL:
        end = max(sub.ended_at or _now(), grant.starts_at)
        if grant.ends_at is None or end < grant.ends_at:
            grant.ends_at = end
    elif sub.current_period_end is not None and (
        grant.ends_at is not None and sub.current_period_end > grant.ends_at
    ):
        grant.ends_at = sub.current_period_end


# -- handlers ----------------------------------------------------------------------------


def checkout_completed(session: Session, entitlements: Entitlements, event: WebhookEvent) -> str:
    obj = event.object
    order = _order(session, obj.get("client_reference_id") or _dig(obj, "metadata", "order_id"))
    if order is None:
        return "ignored: no such order"
    if obj.get("payment_status") not in PAID:
        return f"ignored: payment_status {obj.get('payment_status')!r}"
    order.checkout_session_id = _str(obj.get("id")) or order.checkout_session_id
    order.customer_id = _str(obj.get("customer")) or order.customer_id
    order.invoice_id = _str(obj.get("invoice")) or order.invoice_id
    order.payment_intent_id = _str(obj.get("payment_intent")) or order.payment_intent_id
    card_country(order, _dig(obj, "customer_details", "address", "country"), from_card=False)
    sub = None
    if (sub_id := _str(obj.get("subscription"))) is not None:
        sub = _subscription(session, sub_id, event.created)
        _link(sub, order)
    end = sub.current_period_end if sub is not None else None
    outcome = fulfil(
        session, entitlements, order, event.created, end or provisional_end(order, event.created)
    )
    if sub is not None:
        _sync(session, sub)
    return outcome


def checkout_expired(session: Session, entitlements: Entitlements, event: WebhookEvent) -> str:
    order = _order(session, event.object.get("client_reference_id"))
    if order is None or order.status != OrderStatus.PENDING:
        return "ignored: no pending order"
    order.status, order.updated_at = OrderStatus.CANCELLED, _now()
    promos.release(session, order.id, order.updated_at)
    return "cancelled"


def _period_end(obj: dict[str, Any]) -> datetime | None:
    """`current_period_end` (before API version 2025-03-31: on the subscription; since: on
    each item)."""
    ends = [_time(obj.get("current_period_end"))]
    items = _dig(obj, "items", "data")
    for item in items if isinstance(items, list) else []:
        ends.append(_time(_dig(item, "current_period_end")))
    found = [end for end in ends if end is not None]
    return max(found) if found else None


def subscription_changed(session: Session, entitlements: Entitlements, event: WebhookEvent) -> str:
    obj = event.object
    sub_id = _str(obj.get("id"))
    if sub_id is None:
        return "ignored: no subscription id"
    sub = _subscription(session, sub_id, event.created)
    _link(sub, _order(session, _dig(obj, "metadata", "order_id")))
    if sub.status in TERMINAL:
        return "ignored: cancelled already"
    status = obj.get("status") if isinstance(obj.get("status"), str) else "active"
    if event.type == "customer.subscription.deleted":
        status = "canceled"
    if status in TERMINAL:
        sub.ended_at = _time(obj.get("ended_at")) or _time(obj.get("canceled_at")) or event.created
    newest = event.created >= sub.last_event_at  # a late event's quantity is an old one
    _extend(sub, _period_end(obj) if status not in TERMINAL else None)
    _set_status(sub, str(status)[:32], event.created)
    _sync(session, sub)
    resized = ""
    order = session.get(OrderRow, sub.order_id) if sub.order_id else None
    quantity = _quantity(obj)
    if newest and quantity is not None and order is not None and order.kind == OrderKind.SEATS:
        resized = seats_resized(session, order, quantity, event.created)
    return f"subscription {sub.status}{resized}"


def _quantity(obj: dict[str, Any]) -> int | None:
    """The seats a subscription pays for: its items' quantities (a seats order has one)."""
    items = _dig(obj, "items", "data")
    counts = [_dig(i, "quantity") for i in items] if isinstance(items, list) else []
    found = [n for n in counts if isinstance(n, int) and not isinstance(n, bool) and n > 0]
    return sum(found) if found else None


def _invoice_subscription(obj: dict[str, Any]) -> str | None:
    return _str(obj.get("subscription")) or _str(
        _dig(obj, "parent", "subscription_details", "subscription")
    )


def _invoice_order_id(obj: dict[str, Any]) -> Any:
    return _dig(obj, "subscription_details", "metadata", "order_id") or _dig(
        obj, "parent", "subscription_details", "metadata", "order_id"
    )


def _invoice_sub(session: Session, event: WebhookEvent) -> SubscriptionRow | None:
    sub_id = _invoice_subscription(event.object)
    if sub_id is None:
        return None
    sub = _subscription(session, sub_id, event.created)
    _link(sub, _order(session, _invoice_order_id(event.object)))
    return sub


def invoice_paid(session: Session, entitlements: Entitlements, event: WebhookEvent) -> str:
    obj = event.object
    sub = _invoice_sub(session, event)
    if sub is None:
        return "ignored: not a subscription's invoice"
    lines = _dig(obj, "lines", "data")
    ends = [_time(_dig(line, "period", "end")) for line in lines if isinstance(lines, list)]
    _extend(sub, max((end for end in ends if end is not None), default=None))
    if sub.status not in TERMINAL:
        sub.payment_failed_at = None
        _set_status(sub, "active", event.created)
    order = session.get(OrderRow, sub.order_id, with_for_update=True) if sub.order_id else None
    if order is not None:
        order.invoice_id = _str(obj.get("id")) or order.invoice_id
        order.charge_id = _str(obj.get("charge")) or order.charge_id
        order.payment_intent_id = _str(obj.get("payment_intent")) or order.payment_intent_id
    _sync(session, sub)
    return f"renewed to {sub.current_period_end.isoformat() if sub.current_period_end else '?'}"


def invoice_failed(session: Session, entitlements: Entitlements, event: WebhookEvent) -> str:
    sub = _invoice_sub(session, event)
    if sub is None:
        return "ignored: not a subscription's invoice"
    if sub.status not in TERMINAL:
        sub.payment_failed_at = event.created
        _set_status(sub, "past_due", event.created)
    return "payment failed; access kept until the period ends"


def _charge_order(session: Session, obj: dict[str, Any]) -> OrderRow | None:
    order = _order(session, _dig(obj, "metadata", "order_id"))
    for column, value in (
        (OrderRow.charge_id, _str(obj.get("id"))),
        (OrderRow.payment_intent_id, _str(obj.get("payment_intent"))),
        (OrderRow.invoice_id, _str(obj.get("invoice"))),
    ):
        if order is None and value is not None:
            order = session.scalar(select(OrderRow).where(column == value).with_for_update())
    return order


def charge_succeeded(session: Session, entitlements: Entitlements, event: WebhookEvent) -> str:
    """A payment went through: the card's country (`payment_method_details.card.country`,
    where the card was issued) is checked against the country the order was priced for."""
    obj = event.object
    order = _charge_order(session, obj)
    if order is None:
        return "ignored: no order for this charge"
    order.charge_id = order.charge_id or _str(obj.get("id"))
    country = _dig(obj, "payment_method_details", "card", "country")
    card_country(order, country, from_card=True)
    return f"card country {order.card_country or '?'}" + (": flagged" if order.flagged else "")


def charge_refunded(session: Session, entitlements: Entitlements, event: WebhookEvent) -> str:
    obj = event.object
    order = _charge_order(session, obj)
    if order is None:
        return "ignored: no order for this charge"
    if obj.get("refunded") is not True:
        return "partly refunded: the grant stays"
    order.charge_id = order.charge_id or _str(obj.get("id"))
    revoke_order(session, order, event.created)
    return "refunded; revoked"


HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": checkout_completed,
    "checkout.session.async_payment_succeeded": checkout_completed,
    "checkout.session.expired": checkout_expired,
    "customer.subscription.created": subscription_changed,
    "customer.subscription.updated": subscription_changed,
    "customer.subscription.deleted": subscription_changed,
    "invoice.paid": invoice_paid,
    "invoice.payment_failed": invoice_failed,
    "charge.succeeded": charge_succeeded,
    "charge.refunded": charge_refunded,
}
