"""Stripe webhooks: signed exactly as Stripe signs them (stand_in.stripe_signature computes
`t=...,v1=...` with hmac itself), delivered to `POST /api/billing/webhooks/stripe`. Checkout
goes through the real `stripe` client against the local stand-in for Stripe's API, since
Stripe's servers cannot be reached from here."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from labyard.store import BillingEventRow, OrderRow, SubscriptionRow
from tests.billing.conftest import Shop
from tests.billing.stand_in import WEBHOOK_SECRET, event, stripe_signature

DAY = 86400


async def buy(client: httpx.AsyncClient, interval: str = "monthly") -> str:
    r = await client.post("/api/billing/checkout", json={"plan": "premium", "interval": interval})
    assert r.status_code == 201, r.text
    order_id: str = r.json()["order_id"]
    return order_id


def completed(order_id: str, subscription: str | None = "sub_1", **extra: Any) -> dict[str, Any]:
    subject = {
        "id": f"cs_test_{order_id}",
        "object": "checkout.session",
        "client_reference_id": order_id,
        "customer": "cus_1",
        "mode": "subscription" if subscription else "payment",
        "payment_status": "paid",
        "status": "complete",
        "subscription": subscription,
        "metadata": {"order_id": order_id},
        **extra,
    }
    return subject


def subscription(sub_id: str, status: str, period_end: int, order_id: str) -> dict[str, Any]:
    return {
        "id": sub_id,
        "object": "subscription",
        "status": status,
        "customer": "cus_1",
        "current_period_end": period_end,
        "items": {"data": [{"current_period_end": period_end}]},
        "metadata": {"order_id": order_id},
    }


async def ok(shop: Shop, payload: dict[str, Any]) -> dict[str, Any]:
    r = await shop.deliver(payload)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def plan(client: httpx.AsyncClient) -> str:
    name: str = (await client.get("/api/me")).json()["plan"]
    return name


def order_row(shop: Shop, order_id: str) -> OrderRow:
    with shop.labyard.db.session() as session:
        row = session.get(OrderRow, order_id)
        assert row is not None
        return row


async def test_checkout_completed_grants_premium_once(shop: Shop) -> None:
    user, client = shop.account()
    async with client:
        order_id = await buy(client)
        assert await plan(client) == "free"
        payload = event("checkout.session.completed", completed(order_id))
        first = await ok(shop, payload)
        assert first == {"received": payload["id"], "duplicate": False}
        assert await plan(client) == "premium"
        again = await ok(shop, payload)  # Stripe delivers at least once
        assert again["duplicate"] is True
        orders = (await client.get("/api/billing/orders")).json()
    assert shop.inbox() == 1
    grants = shop.labyard.entitlements.list(user.id)
    assert [(g.kind, g.plan, g.source) for g in grants] == [
        ("subscription", "premium", f"order {order_id} (stripe)")
    ]
    assert grants[0].ends_at is not None  # one month on, until Stripe says its period end
    assert [(o["id"], o["status"]) for o in orders] == [(order_id, "paid")]
    row = order_row(shop, order_id)
    assert (row.customer_id, row.subscription_id) == ("cus_1", "sub_1")


async def test_lifetime_has_no_end_and_a_refund_revokes_it(shop: Shop) -> None:
    user, client = shop.account()
    async with client:
        order_id = await buy(client, "lifetime")
        subject = completed(order_id, subscription=None, payment_intent="pi_1")
        await ok(shop, event("checkout.session.completed", subject))
        assert await plan(client) == "premium"
        (grant,) = shop.labyard.entitlements.list(user.id)
        assert (grant.kind, grant.ends_at) == ("lifetime", None)

        partial = {"id": "ch_1", "object": "charge", "payment_intent": "pi_1", "refunded": False}
        await ok(shop, event("charge.refunded", partial))
        assert await plan(client) == "premium"
        charge = {**partial, "refunded": True, "amount_refunded": 30000}
        await ok(shop, event("charge.refunded", charge))
        assert await plan(client) == "free"
        # A late redelivery of the payment does not bring it back.
        await ok(shop, event("checkout.session.completed", subject))
        assert await plan(client) == "free"
        status = (await client.get(f"/api/billing/orders/{order_id}")).json()["status"]
    assert status == "refunded"
    (grant,) = shop.labyard.entitlements.list(user.id)
    assert grant.revoked_at is not None


async def test_a_late_update_does_not_resurrect_a_cancelled_subscription(shop: Shop) -> None:
    user, client = shop.account()
    now = int(time.time())
    start = now - 1000
    async with client:
        order_id = await buy(client)
        await ok(shop, event("checkout.session.completed", completed(order_id), created=start))
        assert await plan(client) == "premium"
        deleted = subscription("sub_1", "canceled", start + 30 * DAY, order_id)
        deleted["ended_at"] = start + 200
        updated = subscription("sub_1", "active", now + 40 * DAY, order_id)
        # Delivered out of order: the deletion (made later) first, the older update second.
        await ok(shop, event("customer.subscription.deleted", deleted, created=start + 200))
        await ok(shop, event("customer.subscription.updated", updated, created=start + 100))
        assert await plan(client) == "free"
    with shop.labyard.db.session() as session:
        sub = session.scalar(select(SubscriptionRow).where(SubscriptionRow.provider_id == "sub_1"))
        assert sub is not None and sub.status == "canceled"
        query = select(BillingEventRow.type, BillingEventRow.outcome)
        outcomes = {kind: outcome for kind, outcome in session.execute(query)}
    assert outcomes["customer.subscription.updated"] == "ignored: cancelled already"
    (grant,) = shop.labyard.entitlements.list(user.id)
    assert grant.ends_at == datetime.fromtimestamp(start + 200, UTC)


async def test_invoice_paid_renews_and_a_failed_payment_keeps_access(shop: Shop) -> None:
    user, client = shop.account()
    now = int(time.time())
    first_end, second_end = now + 30 * DAY, now + 61 * DAY
    async with client:
        order_id = await buy(client)
        created = subscription("sub_9", "active", first_end, order_id)
        # The subscription's own event before the checkout's: any order works.
        await ok(shop, event("customer.subscription.created", created, created=now - 5))
        subject = completed(order_id, subscription="sub_9")
        await ok(shop, event("checkout.session.completed", subject, created=now - 4))
        billing = (await client.get("/api/billing")).json()
        assert billing["ends_at"] == datetime.fromtimestamp(first_end, UTC).isoformat()

        invoice = {
            "id": "in_2",
            "object": "invoice",
            "charge": "ch_2",
            "parent": {
                "subscription_details": {
                    "subscription": "sub_9",
                    "metadata": {"order_id": order_id},
                }
            },
            "lines": {"data": [{"period": {"start": first_end, "end": second_end}}]},
        }
        await ok(shop, event("invoice.paid", invoice, created=now - 3))
        billing = (await client.get("/api/billing")).json()
        assert billing["ends_at"] == datetime.fromtimestamp(second_end, UTC).isoformat()

        failed = {**invoice, "id": "in_3"}
        await ok(shop, event("invoice.payment_failed", failed, created=now - 2))
        assert await plan(client) == "premium"
        billing = (await client.get("/api/billing")).json()
        assert billing["ends_at"] == datetime.fromtimestamp(second_end, UTC).isoformat()
    with shop.labyard.db.session() as session:
        sub = session.scalar(select(SubscriptionRow).where(SubscriptionRow.provider_id == "sub_9"))
        assert sub is not None
        assert (sub.status, sub.payment_failed_at is not None) == ("past_due", True)
    assert order_row(shop, order_id).charge_id == "ch_2"
    assert len(shop.labyard.entitlements.list(user.id)) == 1


async def test_several_v1_signatures_one_of_them_right_is_accepted(shop: Shop) -> None:
    _, client = shop.account()
    async with client:
        order_id = await buy(client)
    payload = event("checkout.session.completed", completed(order_id))
    body = json.dumps(payload).encode()
    rolled = stripe_signature(body, secret="whsec_the_old_one", extra_v1=())
    old_v1 = rolled.split("v1=")[1]
    header = stripe_signature(body, extra_v1=(old_v1, "00" * 32))
    assert header.count("v1=") == 3
    r = await shop.deliver(body, header)
    assert r.status_code == 200, r.text
    assert shop.inbox() == 1


def _bad_requests(body: bytes) -> dict[str, tuple[bytes, str]]:
    now = int(time.time())
    return {
        "wrong secret": (body, stripe_signature(body, secret="whsec_not_it")),
        "body changed": (body + b" ", stripe_signature(body)),
        # 10 s past the 300 s tolerance: `now` is a whole second, and the requests take a
        # while on a loaded machine (at 301 a slow run saw a future one 300 s off: accepted).
        "stale timestamp": (body, stripe_signature(body, timestamp=now - 310)),
        "future timestamp": (body, stripe_signature(body, timestamp=now + 310)),
        "no v1": (body, f"t={now},v0=abc"),
        "no timestamp": (body, stripe_signature(body).split(",", 1)[1]),
        "empty header": (body, " "),
        "malformed JSON": (b"{not json", stripe_signature(b"{not json")),
        "not an event": (b"[1, 2]", stripe_signature(b"[1, 2]")),
        "no data.object": (b'{"id": "evt_1", "type": "x", "created": 1}', ""),
    }


async def test_bad_signatures_stale_timestamps_and_bad_json_get_400_and_change_nothing(
    shop: Shop, caplog: pytest.LogCaptureFixture
) -> None:
    user, client = shop.account()
    async with client:
        order_id = await buy(client)
    body = json.dumps(event("checkout.session.completed", completed(order_id))).encode()
    outcomes = {}
    caplog.set_level(logging.DEBUG)
    for name, (data, header) in _bad_requests(body).items():
        header = header or stripe_signature(data)
        r = await shop.deliver(data, header)
        outcomes[name] = (r.status_code, r.json()["error"]["reason"])
    assert outcomes == dict.fromkeys(outcomes, (400, "bad_webhook"))
    assert shop.inbox() == 0
    assert order_row(shop, order_id).status == "pending"
    assert shop.labyard.entitlements.list(user.id) == []
    # Neither the body nor the secret reaches the log.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert WEBHOOK_SECRET not in logged and order_id not in logged and "cs_test_" not in logged


async def test_webhook_bodies_and_secrets_are_not_logged(
    shop: Shop, caplog: pytest.LogCaptureFixture
) -> None:
    _, client = shop.account()
    async with client:
        order_id = await buy(client)
    caplog.set_level(logging.DEBUG)
    await ok(shop, event("checkout.session.completed", completed(order_id, customer_email="x@y.z")))
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "webhook stripe evt_test_" in logged  # the event id and its outcome are
    for secret in (WEBHOOK_SECRET, "x@y.z", "cus_1", '"payment_status"'):
        assert secret not in logged
