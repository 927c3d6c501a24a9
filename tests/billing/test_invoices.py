"""Invoices and credit notes, on SQLite and PostgreSQL: numbered per year without gaps (also
under concurrent payments), issued once per payment from a manual "mark paid" and from
Stripe webhooks signed exactly as Stripe signs them (stand_in.py; Stripe's servers cannot be
reached from here, so the real `stripe` client talks to a local stand-in at checkout), a
credit note per refund, and PDFs whose text is read back with pypdf."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pypdf import PdfReader
from sqlalchemy import select

from labyard.api.app import create_app
from labyard.errors import InvalidInput
from labyard.services import Labyard
from labyard.services.billing import invoice_numbers
from labyard.settings import BillingSettings, Settings
from labyard.store import BillingEventRow, InvoiceCounterRow, InvoiceRow
from tests.billing.conftest import Shop
from tests.billing.stand_in import (
    SECRET_KEY,
    WEBHOOK_SECRET,
    StandIn,
    event,
    stand_in_stripe,
)
from tests.conftest import IMAGES_DIR

SELLER = {
    "seller_name": "Labyard Learning GmbH",
    "seller_address": "Invalidenstraße 7\n10115 Berlin\nGermany",
    "seller_vat_id": "DE123456789",
    "seller_email": "billing@labyard.example",
}
BUYER = {
    "name": "Zoë Łukasiewicz",
    "address": "東京都千代田区丸の内 1-1\n100-0005 東京",
    "country": "jp",
    "vat_id": "JP T1234567890123",
}
YEAR = datetime.now(UTC).year
DAY = 86400


def _books(database_url: str, tmp_path: Path, stripe: StandIn | None, rate: int) -> Shop:
    settings = Settings(
        data_dir=tmp_path / "data",
        images_dir=IMAGES_DIR,
        database_url=database_url,
        billing=BillingSettings(
            stripe_secret_key=SECRET_KEY if stripe else "",
            stripe_webhook_secret=WEBHOOK_SECRET if stripe else "",
            stripe_api_base=stripe.url if stripe else "",
            tax_rate_percent=Decimal(rate),
            **SELLER,
        ),
    )
    labyard = Labyard(settings)
    return Shop(labyard, create_app(labyard, reconcile_interval_s=None), stripe)


@pytest.fixture
async def books(database_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    """The manual provider; the operator's tax rate is 20 %, included in the prices."""
    found = _books(database_url, tmp_path, None, 20)
    yield found
    found.labyard.close()


@pytest.fixture
async def stripe_books(database_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    """Stripe against the stand-in; no operator tax rate (0 %)."""
    with stand_in_stripe() as stripe:
        found = _books(database_url, tmp_path, stripe, 0)
        yield found
        found.labyard.close()


def pdf_text(data: bytes) -> str:
    assert data.startswith(b"%PDF-"), data[:20]
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def buy(client: httpx.AsyncClient, interval: str = "monthly") -> str:
    body = {"plan": "premium", "interval": interval}
    order_id: str = (await ok(await client.post("/api/billing/checkout", json=body), 201))[
        "order_id"
    ]
    return order_id


async def invoices(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await ok(await client.get("/api/billing/invoices"))
    return found


async def pdf(client: httpx.AsyncClient, number: str) -> bytes:
    r = await client.get(f"/api/billing/invoices/{number}.pdf")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"] == f'attachment; filename="{number}.pdf"'
    return r.content


# -- manual orders, numbering -------------------------------------------------------------


async def test_paid_orders_get_invoices_one_and_two_of_the_year(books: Shop) -> None:
    _, client = books.account()
    _, boss = books.account(role="admin")
    async with client, boss:
        await ok(await client.put("/api/billing/profile", json=BUYER))
        first, second = await buy(client), await buy(client, "yearly")
        assert await invoices(client) == []  # pending orders have none
        for order_id in (first, second):
            await ok(await boss.post(f"/api/admin/orders/{order_id}/mark-paid"))
        listed = await invoices(client)
    assert [(i["number"], i["order_id"], i["kind"]) for i in listed] == [
        (f"{YEAR}-000002", second, "invoice"),
        (f"{YEAR}-000001", first, "invoice"),
    ]
    # 15.00 and 120.00 include 20 % VAT: 2.50 and 20.00 of them.
    assert [(i["total"], i["tax"], i["currency"]) for i in listed] == [
        (12000, 2000, "USD"),
        (1500, 250, "USD"),
    ]
    assert listed[1]["pdf"] == f"/api/billing/invoices/{YEAR}-000001.pdf"


async def test_the_pdf_says_who_sold_what_to_whom_for_how_much(books: Shop) -> None:
    _, client = books.account()
    _, boss = books.account(role="admin")
    async with client, boss:
        await ok(await client.put("/api/billing/profile", json=BUYER))
        order_id = await buy(client)
        await ok(await boss.post(f"/api/admin/orders/{order_id}/mark-paid"))
        (invoice,) = await invoices(client)
        text = pdf_text(await pdf(client, invoice["number"]))
    for expected in (
        f"Invoice {YEAR}-000001",
        # the seller, from the operator's settings
        "Labyard Learning GmbH",
        "Invalidenstraße 7",
        "10115 Berlin",
        "VAT ID: DE123456789",
        "billing@labyard.example",
        # the buyer, from their billing profile: Unicode names and addresses print
        "Zoë Łukasiewicz",
        "東京都千代田区丸の内 1-1",
        "100-0005 東京",
        "Japan",
        "VAT ID: JP T1234567890123",
        # the line, the tax at its rate, the totals and the currency
        "Premium plan, monthly",
        f"Order: {order_id}",
        "1 15.00 15.00",
        "Subtotal 15.00 USD",
        "incl. VAT 20% on 12.50 2.50 USD",
        "Total (USD) 15.00 USD",
    ):
        assert expected in text, f"{expected!r} not in:\n{text}"


async def test_concurrent_payments_get_distinct_numbers_without_gaps(books: Shop) -> None:
    buyer, client = books.account()
    boss, _ = books.account(role="admin")
    async with client:
        *orders, later = [await buy(client) for _ in range(11)]
    start = threading.Barrier(len(orders))
    failures: list[BaseException] = []

    def pay(order_id: str) -> None:
        start.wait(timeout=30)
        try:
            books.labyard.billing.orders.mark_paid(boss, order_id)
        except BaseException as exc:  # collected, asserted below
            failures.append(exc)

    threads = [threading.Thread(target=pay, args=(order_id,)) for order_id in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    issued = books.labyard.billing.invoices.list(buyer)
    assert sorted(i.number for i in issued) == [f"{YEAR}-{n:06d}" for n in range(1, 11)]
    assert sorted(i.order_id or "" for i in issued) == sorted(orders)

    # A transaction that took a number and then failed gives it back.
    with pytest.raises(RuntimeError), books.labyard.db.session() as session:
        assert invoice_numbers.take(session, "invoice", YEAR) == 11
        raise RuntimeError("the payment's transaction fails after taking a number")
    books.labyard.billing.orders.mark_paid(boss, later)
    assert books.labyard.billing.invoices.list(buyer)[0].number == f"{YEAR}-000011"
    with books.labyard.db.session() as session:
        counter = session.get(InvoiceCounterRow, ("invoice", YEAR))
        assert counter is not None and counter.last == 11


async def test_a_profile_edit_leaves_issued_invoices_as_they_were(books: Shop) -> None:
    _, client = books.account()
    _, boss = books.account(role="admin")
    async with client, boss:
        await ok(await client.put("/api/billing/profile", json=BUYER))
        await ok(await boss.post(f"/api/admin/orders/{await buy(client)}/mark-paid"))
        (issued,) = await invoices(client)
        before = await pdf(client, issued["number"])

        moved = {**BUYER, "name": "Zoë Nowak", "address": "Rynek 1\n31-042 Kraków", "country": "PL"}
        await ok(await client.put("/api/billing/profile", json=moved))
        assert await pdf(client, issued["number"]) == before  # the same bytes
        assert "Zoë Łukasiewicz" in pdf_text(before) and "Nowak" not in pdf_text(before)

        await ok(await boss.post(f"/api/admin/orders/{await buy(client)}/mark-paid"))
        newest = (await invoices(client))[0]
        text = pdf_text(await pdf(client, newest["number"]))
    assert "Zoë Nowak" in text and "Kraków" in text and "Poland" in text
    assert "Łukasiewicz" not in text


# -- Stripe -------------------------------------------------------------------------------


def checkout_session(order_id: str, **extra: Any) -> dict[str, Any]:
    """A paid Checkout Session as Stripe sends it, with Stripe Tax's breakdown (20 % added
    on top of 15.00) and the buyer's details and tax ID collected at checkout."""
    return {
        "id": f"cs_test_{order_id}",
        "object": "checkout.session",
        "client_reference_id": order_id,
        "customer": "cus_1",
        "currency": "usd",
        "amount_subtotal": 1500,
        "amount_total": 1800,
        "total_details": {
            "amount_discount": 0,
            "amount_shipping": 0,
            "amount_tax": 300,
            "breakdown": {
                "discounts": [],
                "taxes": [
                    {
                        "amount": 300,
                        "taxable_amount": 1500,
                        "taxability_reason": "standard_rated",
                        "rate": {
                            "id": "txr_1",
                            "object": "tax_rate",
                            "display_name": "MwSt.",
                            "inclusive": False,
                            "percentage": 20.0,
                        },
                    }
                ],
            },
        },
        "customer_details": {
            "email": "buyer@example.org",
            "name": "Ада Лавлейс",
            "address": {
                "line1": "Musterweg 5",
                "postal_code": "1010",
                "city": "Wien",
                "country": "AT",
            },
            "tax_ids": [{"type": "eu_vat", "value": "ATU12345678"}],
        },
        "mode": "subscription",
        "payment_status": "paid",
        "status": "complete",
        "subscription": "sub_1",
        "invoice": "in_1",
        "metadata": {"order_id": order_id},
        **extra,
    }


def stripe_invoice(invoice_id: str, order_id: str, start: int, reason: str) -> dict[str, Any]:
    """A paid subscription invoice (API 2025-03-31 shapes), VAT at two rates."""
    return {
        "id": invoice_id,
        "object": "invoice",
        "billing_reason": reason,
        "currency": "usd",
        "subtotal": 1500,
        "total": 1500,
        "charge": f"ch_{invoice_id}",
        "customer_name": "Ада Лавлейс",
        "customer_address": {"line1": "Musterweg 5", "city": "Wien", "country": "AT"},
        "customer_tax_ids": [{"type": "eu_vat", "value": "ATU12345678"}],
        "total_taxes": [
            {
                "amount": 150,
                "tax_behavior": "inclusive",
                "taxable_amount": 750,
                "tax_rate_details": {"tax_rate": {"percentage": 20, "display_name": "VAT"}},
            },
            {
                "amount": 68,
                "tax_behavior": "inclusive",
                "taxable_amount": 682,
                "tax_rate_details": {"tax_rate": {"percentage": 10, "display_name": "VAT"}},
            },
        ],
        "parent": {
            "subscription_details": {"subscription": "sub_1", "metadata": {"order_id": order_id}}
        },
        "lines": {"data": [{"period": {"start": start, "end": start + 31 * DAY}}]},
    }


async def deliver(shop: Shop, payload: dict[str, Any]) -> dict[str, Any]:
    r = await shop.deliver(payload)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def rows(shop: Shop) -> list[InvoiceRow]:
    with shop.labyard.db.session() as session:
        return list(session.scalars(select(InvoiceRow).order_by(InvoiceRow.id)))


async def test_a_stripe_checkout_issues_one_invoice_with_stripes_tax(stripe_books: Shop) -> None:
    _, client = stripe_books.account()
    async with client:
        order_id = await buy(client)
        payload = event("checkout.session.completed", checkout_session(order_id))
        assert (await deliver(stripe_books, payload))["duplicate"] is False
        assert (await deliver(stripe_books, payload))["duplicate"] is True  # redelivered
        # The same payment told again in another event, and the subscription's first
        # invoice (which the checkout stands for): no second invoice.
        again = event("checkout.session.async_payment_succeeded", checkout_session(order_id))
        await deliver(stripe_books, again)
        first = stripe_invoice("in_1", order_id, int(time.time()), "subscription_create")
        await deliver(stripe_books, event("invoice.paid", first))
        (invoice,) = await invoices(client)
        text = pdf_text(await pdf(client, invoice["number"]))
    assert (invoice["number"], invoice["total"], invoice["tax"]) == (f"{YEAR}-000001", 1800, 300)
    (row,) = rows(stripe_books)
    assert (row.provider_invoice_id, row.order_id) == ("in_1", order_id)
    # No billing profile: the details Stripe's checkout collected.
    for expected in (
        "Ада Лавлейс",
        "Musterweg 5",
        "1010 Wien",
        "Austria",
        "VAT ID: ATU12345678",
        "VAT ID: DE123456789",
        "Subtotal 15.00 USD",
        "MwSt. 20% on 15.00 3.00 USD",
        "Total (USD) 18.00 USD",
    ):
        assert expected in text, f"{expected!r} not in:\n{text}"
    assert "Prices include tax" not in text
    with stripe_books.labyard.db.session() as session:
        query = select(BillingEventRow.outcome).where(BillingEventRow.event_id == payload["id"])
        outcome = session.scalar(query)
    assert outcome is not None and outcome.endswith(f"; invoice {YEAR}-000001"), outcome


async def test_each_renewal_gets_its_own_invoice_once(stripe_books: Shop) -> None:
    _, client = stripe_books.account()
    now = int(time.time())
    async with client:
        order_id = await buy(client)
        await deliver(stripe_books, event("checkout.session.completed", checkout_session(order_id)))
        renewal = event(
            "invoice.paid", stripe_invoice("in_2", order_id, now + 30 * DAY, "subscription_cycle")
        )
        await deliver(stripe_books, renewal)
        await deliver(stripe_books, renewal)  # redelivered
        # The same Stripe invoice in a second event (a retried payment, say): still one.
        retold = stripe_invoice("in_2", order_id, now + 30 * DAY, "subscription_cycle")
        await deliver(stripe_books, event("invoice.paid", retold))
        third = stripe_invoice("in_3", order_id, now + 61 * DAY, "subscription_cycle")
        await deliver(stripe_books, event("invoice.paid", third))
        listed = await invoices(client)
        text = pdf_text(await pdf(client, listed[1]["number"]))
    assert [i["number"] for i in listed] == [f"{YEAR}-00000{n}" for n in (3, 2, 1)]
    assert [r.provider_invoice_id for r in rows(stripe_books)] == ["in_1", "in_2", "in_3"]
    start = datetime.fromtimestamp(now + 30 * DAY, UTC)
    end = datetime.fromtimestamp(now + 61 * DAY, UTC)
    # One tax line per rate, included in the price Stripe charged.
    for expected in (
        f"{start:%Y-%m-%d} to {end:%Y-%m-%d}",
        "incl. VAT 20% on 7.50 1.50 USD",
        "incl. VAT 10% on 6.82 0.68 USD",
        "Total (USD) 15.00 USD",
        "Prices include tax.",
    ):
        assert expected in text, f"{expected!r} not in:\n{text}"


async def test_a_refund_issues_a_credit_note_for_the_invoice(stripe_books: Shop) -> None:
    _, client = stripe_books.account()
    async with client:
        order_id = await buy(client, "lifetime")
        paid = checkout_session(
            order_id,
            mode="payment",
            subscription=None,
            invoice=None,
            payment_intent="pi_1",
            amount_subtotal=30000,
            amount_total=30000,
            total_details={"amount_discount": 0, "amount_tax": 0},
        )
        await deliver(stripe_books, event("checkout.session.completed", paid))
        charge = {"id": "ch_1", "object": "charge", "payment_intent": "pi_1", "refunded": False}
        await deliver(stripe_books, event("charge.refunded", charge))  # partly: nothing
        assert len(await invoices(client)) == 1
        full = event("charge.refunded", {**charge, "refunded": True, "amount_refunded": 30000})
        await deliver(stripe_books, full)
        await deliver(stripe_books, full)  # redelivered
        await deliver(stripe_books, event("charge.refunded", {**charge, "refunded": True}))
        note, invoice = await invoices(client)
        text = pdf_text(await pdf(client, note["number"]))
    assert (invoice["number"], invoice["total"], invoice["kind"]) == (
        f"{YEAR}-000001",
        30000,
        "invoice",
    )
    assert (note["number"], note["kind"], note["credits"]) == (
        f"CN-{YEAR}-000001",
        "credit_note",
        f"{YEAR}-000001",
    )
    assert (note["total"], note["tax"]) == (-30000, 0)
    for expected in (
        f"Credit note CN-{YEAR}-000001",
        f"Credits invoice {YEAR}-000001",
        "Premium plan, lifetime",
        "1 -300.00 -300.00",
        "VAT 0% on -300.00 0.00 USD",
        "Total (USD) -300.00 USD",
        "Ада Лавлейс",
    ):
        assert expected in text, f"{expected!r} not in:\n{text}"


async def test_partial_refunds_credit_what_was_refunded_since_the_last_note(
    stripe_books: Shop,
) -> None:
    """18.00 paid (15.00 + 20 % added on top): 6.00 refunded, then 6.00 more, then the rest.
    Each note credits the new part with its share of the tax; the grant stays until the
    whole is refunded; redeliveries issue nothing."""
    user, client = stripe_books.account()
    async with client:
        order_id = await buy(client)
        await deliver(stripe_books, event("checkout.session.completed", checkout_session(order_id)))
        charge = {"id": "ch_p", "object": "charge", "invoice": "in_1", "refunded": False}
        first = event("charge.refunded", {**charge, "amount_refunded": 600})
        await deliver(stripe_books, first)
        await deliver(stripe_books, first)  # redelivered
        await deliver(stripe_books, event("charge.refunded", {**charge, "amount_refunded": 600}))
        plan_after_part = stripe_books.labyard.entitlements.effective(user.id).name
        await deliver(stripe_books, event("charge.refunded", {**charge, "amount_refunded": 1200}))
        whole = {**charge, "refunded": True, "amount_refunded": 1800}
        await deliver(stripe_books, event("charge.refunded", whole))
        await deliver(stripe_books, event("charge.refunded", whole))
        listed = await invoices(client)
        first_note = pdf_text(await pdf(client, f"CN-{YEAR}-000001"))
    with stripe_books.labyard.db.session() as session:
        query = select(BillingEventRow.outcome).where(BillingEventRow.event_id == first["id"])
        outcome = session.scalar(query)
    assert outcome == f"partly refunded: the grant stays; credit note CN-{YEAR}-000001", outcome
    assert plan_after_part == "premium"
    assert stripe_books.labyard.entitlements.effective(user.id).name == "free"
    assert [(i["number"], i["total"], i["tax"], i["credits"]) for i in listed] == [
        (f"CN-{YEAR}-000003", -600, -100, f"{YEAR}-000001"),  # the rest, once refunded
        (f"CN-{YEAR}-000002", -600, -100, f"{YEAR}-000001"),
        (f"CN-{YEAR}-000001", -600, -100, f"{YEAR}-000001"),
        (f"{YEAR}-000001", 1800, 300, None),
    ]
    for expected in (
        f"Credit note CN-{YEAR}-000001",
        f"Credits invoice {YEAR}-000001",
        f"Partial refund of invoice {YEAR}-000001",
        "Subtotal -5.00 USD",
        "MwSt. 20% on -5.00 -1.00 USD",
        "Total (USD) -6.00 USD",
    ):
        assert expected in first_note, f"{expected!r} not in:\n{first_note}"


async def test_a_manual_refund_ends_the_plan_and_credits_the_invoice(books: Shop) -> None:
    user, client = books.account()
    _, boss = books.account(role="admin")
    async with client, boss:
        await ok(await client.put("/api/billing/profile", json=BUYER))
        order_id, pending = await buy(client), await buy(client, "yearly")
        # Not an admin's: refused, nothing changes; a pending order has nothing to refund.
        refused = await client.post(f"/api/admin/orders/{order_id}/refund")
        assert refused.status_code == 403, refused.text
        not_paid = await boss.post(f"/api/admin/orders/{order_id}/refund")
        assert not_paid.status_code == 409 and "not paid" in not_paid.text, not_paid.text
        await ok(await boss.post(f"/api/admin/orders/{order_id}/mark-paid"))
        assert books.labyard.entitlements.effective(user.id).name == "premium"
        refunded = await ok(await boss.post(f"/api/admin/orders/{order_id}/refund"))
        again = await boss.post(f"/api/admin/orders/{order_id}/refund")
        note, invoice = await invoices(client)
        statuses = {o["id"]: o["status"] for o in await ok(await client.get("/api/billing/orders"))}
    assert refunded["status"] == "refunded"
    assert again.status_code == 409 and "is refunded, not paid" in again.text, again.text
    assert books.labyard.entitlements.effective(user.id).name == "free"
    assert statuses == {order_id: "refunded", pending: "pending"}
    assert (invoice["number"], invoice["kind"]) == (f"{YEAR}-000001", "invoice")
    assert (note["number"], note["kind"], note["credits"]) == (
        f"CN-{YEAR}-000001",
        "credit_note",
        f"{YEAR}-000001",
    )
    assert (note["total"], note["tax"]) == (-1500, -250)


async def test_a_provider_order_is_not_refunded_by_hand(stripe_books: Shop) -> None:
    user, client = stripe_books.account()
    _, boss = stripe_books.account(role="admin")
    async with client, boss:
        order_id = await buy(client, "lifetime")
        paid = checkout_session(
            order_id,
            mode="payment",
            subscription=None,
            invoice=None,
            payment_intent="pi_2",
            amount_subtotal=30000,
            amount_total=30000,
            total_details={"amount_discount": 0, "amount_tax": 0},
        )
        await deliver(stripe_books, event("checkout.session.completed", paid))
        r = await boss.post(f"/api/admin/orders/{order_id}/refund")
        listed = await invoices(client)
    assert r.status_code == 409 and "refund it there" in r.text, r.text
    assert [i["kind"] for i in listed] == ["invoice"]
    assert stripe_books.labyard.entitlements.effective(user.id).name == "premium"


# -- who sees what ------------------------------------------------------------------------


async def test_nobody_else_gets_an_accounts_invoices(books: Shop) -> None:
    _, a = books.account()
    _, b = books.account()
    _, boss = books.account(role="admin")
    async with a, b, boss, books.client() as nobody:
        await ok(await boss.post(f"/api/admin/orders/{await buy(a)}/mark-paid"))
        (invoice,) = await invoices(a)
        number = invoice["number"]
        theirs = await b.get(f"/api/billing/invoices/{number}.pdf")
        missing = await b.get(f"/api/billing/invoices/{YEAR}-999999.pdf")
        assert (theirs.status_code, missing.status_code) == (404, 404)
        assert theirs.json()["error"]["message"].replace(number, "X") == missing.json()["error"][
            "message"
        ].replace(f"{YEAR}-999999", "X")
        assert await invoices(b) == []
        assert number not in (await b.get("/api/billing")).text
        assert (await b.get("/api/admin/invoices")).status_code == 403
        assert (await nobody.get(f"/api/billing/invoices/{number}.pdf")).status_code == 401
        assert (await nobody.get("/api/billing/invoices")).status_code == 401

        everything = await ok(await boss.get("/api/admin/invoices"))
        assert [i["number"] for i in everything] == [number]
        assert pdf_text(await pdf(boss, number)) == pdf_text(await pdf(a, number))


async def test_billing_profiles_are_validated(books: Shop) -> None:
    _, client = books.account()
    async with client:
        assert (await ok(await client.get("/api/billing/profile")))["name"] == ""
        for wrong, says in (
            ({**BUYER, "country": "XX"}, "ISO 3166-1 alpha-2"),
            ({**BUYER, "country": "Germany"}, "String should have at most 2 characters"),
            ({**BUYER, "vat_id": "not a vat id!"}, "does not look like a VAT ID"),
            ({**BUYER, "name": "  "}, "name: give the name"),
            ({**BUYER, "address": "\n".join(["line"] * 7)}, "at most 6 lines"),
        ):
            r = await client.put("/api/billing/profile", json=wrong)
            assert r.status_code == 422, r.text
            assert says in r.json()["error"]["message"], r.text
        saved = await ok(await client.put("/api/billing/profile", json=BUYER))
        assert await ok(await client.get("/api/billing/profile")) == saved
    assert (saved["country"], saved["vat_id"]) == ("JP", "JP T1234567890123")
    assert saved["address"] == BUYER["address"]


async def test_the_account_page_lists_invoices_and_edits_billing_details(books: Shop) -> None:
    _, client = books.account()
    _, boss = books.account(role="admin")
    async with client, boss:
        await ok(await boss.post(f"/api/admin/orders/{await buy(client)}/mark-paid"))
        page = await client.get("/account")
        assert page.status_code == 200, page.text
        assert f'href="/api/billing/invoices/{YEAR}-000001.pdf"' in page.text
        assert 'action="/account/billing-profile"' in page.text
        csrf = client.cookies["labyard_csrf"]
        form = {"csrf": csrf, "name": "Zoë Łukasiewicz", "address": "Rynek 1", "country": "PL"}
        saved = await client.post("/account/billing-profile", data=form)
        assert saved.status_code == 303, saved.text
        wrong = await client.post("/account/billing-profile", data={**form, "country": "ZZ"})
        assert wrong.status_code == 422 and "ISO 3166-1" in wrong.text
        assert 'value="Zoë Łukasiewicz"' in wrong.text  # what was typed stays in the form
        forged = await client.post("/account/billing-profile", data={**form, "csrf": "x"})
        assert forged.status_code == 403
        page = await client.get("/account")
        profile = await ok(await client.get("/api/billing/profile"))
    assert '<option value="PL" selected>Poland</option>' in page.text
    assert (profile["name"], profile["address"], profile["country"]) == (
        "Zoë Łukasiewicz",
        "Rynek 1",
        "PL",
    )


# -- settings -----------------------------------------------------------------------------


def test_seller_and_tax_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABYARD_SELLER_NAME", " Labyard Ltd ")
    monkeypatch.setenv("LABYARD_SELLER_ADDRESS", "1 Main Street\\nDublin 2\\nIreland")
    monkeypatch.setenv("LABYARD_SELLER_VAT_ID", "IE1234567T")
    monkeypatch.setenv("LABYARD_TAX_RATE_PERCENT", "7.7")
    settings = Settings.from_env()
    assert settings.billing.seller_name == "Labyard Ltd"
    assert settings.billing.seller_address == "1 Main Street\nDublin 2\nIreland"
    assert (settings.billing.seller_vat_id, settings.billing.tax_rate_percent) == (
        "IE1234567T",
        Decimal("7.7"),
    )
    assert settings.billing.tax_label == "VAT"
    for wrong in ("abc", "-1", "100", "NaN"):
        monkeypatch.setenv("LABYARD_TAX_RATE_PERCENT", wrong)
        with pytest.raises(InvalidInput, match="LABYARD_TAX_RATE_PERCENT"):
            Settings.from_env()
