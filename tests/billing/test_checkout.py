"""Checkout through the real `stripe` client against the local stand-in for Stripe's API
(Stripe's servers cannot be reached from here; see stand_in.py), and the manual provider:
an admin marks the order paid."""

from __future__ import annotations

from labyard.store import OrderRow
from tests.billing.conftest import Shop
from tests.billing.stand_in import SECRET_KEY


async def test_a_monthly_checkout_creates_an_order_and_returns_stripes_url(shop: Shop) -> None:
    assert shop.stripe is not None
    user, client = shop.account()
    async with client:
        r = await client.post(
            "/api/billing/checkout", json={"plan": "premium", "interval": "monthly"}
        )
        assert r.status_code == 201, r.text
        order_id, url = r.json()["order_id"], r.json()["url"]
        orders = (await client.get("/api/billing/orders")).json()
        one = (await client.get(f"/api/billing/orders/{order_id}")).json()
    sent = shop.stripe.last("/v1/checkout/sessions")
    assert url.startswith(f"{shop.stripe.url}/pay/cs_test_")
    assert sent.headers["Authorization"] == f"Bearer {SECRET_KEY}"
    form = sent.form
    assert form["mode"] == "subscription"
    assert form["client_reference_id"] == order_id
    assert form["allow_promotion_codes"] == "true"
    assert form["tax_id_collection[enabled]"] == "true"
    assert form["customer_email"] == user.email
    assert form["line_items[0][price_data][unit_amount]"] == "1500"
    assert form["line_items[0][price_data][currency]"] == "usd"
    assert form["line_items[0][price_data][recurring][interval]"] == "month"
    assert form["line_items[0][quantity]"] == "1"
    assert form["subscription_data[metadata][order_id]"] == order_id
    assert form["success_url"].startswith("http://testserver/account")
    assert [(o["id"], o["status"], o["amount"], o["kind"]) for o in orders] == [
        (order_id, "pending", 1500, "subscription")
    ]
    assert one["id"] == order_id and one["provider"] == "stripe"
    stored = shop.labyard.billing.orders.get(user, order_id)
    assert stored.refs["checkout_session_id"] == url.rsplit("/", 1)[1]


async def test_lifetime_is_a_one_off_payment_and_seats_a_quantity(shop: Shop) -> None:
    assert shop.stripe is not None
    _, client = shop.account()
    async with client:
        life = await client.post(
            "/api/billing/checkout", json={"plan": "premium", "interval": "lifetime"}
        )
        assert life.status_code == 201, life.text
        form = shop.stripe.last("/v1/checkout/sessions").form
        assert form["mode"] == "payment"
        assert form["line_items[0][price_data][unit_amount]"] == "30000"
        assert "line_items[0][price_data][recurring][interval]" not in form
        assert form["payment_intent_data[metadata][order_id]"] == life.json()["order_id"]

        seats = await client.post(
            "/api/billing/checkout", json={"plan": "premium", "interval": "yearly", "seats": 5}
        )
        assert seats.status_code == 201, seats.text
        form = shop.stripe.last("/v1/checkout/sessions").form
        assert form["mode"] == "subscription"
        assert form["line_items[0][quantity]"] == "5"
        # 5 seats: the group discount ladder's first step, 10 % off (pricing.yaml).
        assert form["line_items[0][price_data][unit_amount]"] == "10800"
        assert form["line_items[0][price_data][recurring][interval]"] == "year"
        orders = {o["id"]: o for o in (await client.get("/api/billing/orders")).json()}
        assert orders[seats.json()["order_id"]]["amount"] == 54000
        assert orders[seats.json()["order_id"]]["kind"] == "seats"

        free = await client.post(
            "/api/billing/checkout", json={"plan": "free", "interval": "monthly"}
        )
        assert free.status_code == 422, free.text
        assert "not sold monthly" in free.json()["error"]["message"]


async def test_the_portal_link_comes_from_stripe(shop: Shop) -> None:
    assert shop.stripe is not None
    _, client = shop.account()
    async with client:
        none_yet = await client.post("/api/billing/portal")
        assert none_yet.status_code == 404, none_yet.text
        r = await client.post(
            "/api/billing/checkout", json={"plan": "premium", "interval": "monthly"}
        )
        order_id = r.json()["order_id"]
        with shop.labyard.db.session() as session:
            row = session.get(OrderRow, order_id)
            assert row is not None
            row.customer_id = "cus_test_1"
        portal = await client.post("/api/billing/portal")
        assert portal.status_code == 200, portal.text
    assert portal.json()["url"].startswith(f"{shop.stripe.url}/portal/bps_test_")
    assert shop.stripe.last("/v1/billing_portal/sessions").form["customer"] == "cus_test_1"


async def test_manual_orders_await_payment_until_an_admin_marks_them_paid(
    manual_shop: Shop,
) -> None:
    buyer, client = manual_shop.account()
    _, boss = manual_shop.account(role="admin")
    async with client, boss:
        r = await client.post(
            "/api/billing/checkout", json={"plan": "premium", "interval": "yearly"}
        )
        assert r.status_code == 201, r.text
        order_id = r.json()["order_id"]
        assert r.json()["url"].startswith("http://testserver/account")
        order = (await client.get(f"/api/billing/orders/{order_id}")).json()
        assert (order["status"], order["awaiting_payment"], order["provider"]) == (
            "pending",
            True,
            "manual",
        )
        assert (await client.get("/api/me")).json()["plan"] == "free"

        refused = await client.post(f"/api/admin/orders/{order_id}/mark-paid")
        assert refused.status_code == 403, refused.text
        assert (await client.get("/api/admin/orders")).status_code == 403

        listed = (await boss.get("/api/admin/orders?status=pending")).json()
        assert [o["id"] for o in listed] == [order_id]
        paid = await boss.post(f"/api/admin/orders/{order_id}/mark-paid")
        assert paid.status_code == 200, paid.text
        assert paid.json()["status"] == "paid"
        again = await boss.post(f"/api/admin/orders/{order_id}/mark-paid")
        assert again.status_code == 409, again.text

        assert (await client.get("/api/me")).json()["plan"] == "premium"
        billing = (await client.get("/api/billing")).json()
    assert billing["plan"] == "premium" and billing["ends_at"] is not None
    grants = manual_shop.labyard.entitlements.list(buyer.id)
    assert [(g.kind, g.plan) for g in grants] == [("subscription", "premium")]
    assert grants[0].ends_at is not None
    assert (grants[0].ends_at - grants[0].starts_at).days in (365, 366)


async def test_nobody_sees_another_accounts_orders(manual_shop: Shop) -> None:
    _, a = manual_shop.account()
    _, b = manual_shop.account()
    async with a, b:
        r = await a.post("/api/billing/checkout", json={"plan": "premium", "interval": "monthly"})
        order_id = r.json()["order_id"]
        assert (await a.get(f"/api/billing/orders/{order_id}")).status_code == 200
        theirs = await b.get(f"/api/billing/orders/{order_id}")
        assert theirs.status_code == 404, theirs.text
        missing = await b.get("/api/billing/orders/ord_0000000000000000")
        assert theirs.json()["error"]["message"].replace(order_id, "X") == missing.json()["error"][
            "message"
        ].replace("ord_0000000000000000", "X")
        assert (await b.get("/api/billing/orders")).json() == []
        assert (await b.get("/api/billing")).json()["orders"] == []
        assert (await b.post(f"/api/admin/orders/{order_id}/mark-paid")).status_code == 403
        assert (await a.get(f"/api/billing/orders/{order_id}")).json()["status"] == "pending"


async def test_the_account_page_shows_the_plan_and_orders_awaiting_payment(
    manual_shop: Shop,
) -> None:
    _, client = manual_shop.account()
    async with client:
        await client.post("/api/billing/checkout", json={"plan": "premium", "interval": "monthly"})
        page = await client.get("/account")
        assert (await manual_shop.client().get("/account")).status_code == 303
    assert page.status_code == 200, page.text
    assert 'id="billing"' in page.text and "Free" in page.text
    assert "awaiting payment" in page.text and "15.00 USD" in page.text
    assert "Manage subscription" not in page.text  # nothing bought through a provider
