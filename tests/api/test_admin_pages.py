"""/admin/orders: admins see every order, flagged ones explained, and mark manual ones paid
through the form (CSRF-checked); learners get a 403 page, visitors the sign-in form."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from labyard.api.app import create_app
from labyard.services import Labyard, User
from labyard.store import OrderRow

PASSWORD = "a long enough password"


@dataclass(frozen=True)
class People:
    admin: User
    learner: User


@pytest.fixture(scope="module")
def app(labyard: Labyard) -> FastAPI:
    return create_app(labyard, reconcile_interval_s=None)


@pytest.fixture(scope="module")
def people(labyard: Labyard) -> People:
    def make(role: str) -> User:
        email = f"{role}-{secrets.token_hex(5)}@example.org"
        return labyard.accounts.create_user(email, PASSWORD, role=role)

    return People(make("admin"), make("learner"))


async def signed_in(app: FastAPI, user: User) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("192.0.2.40", 40000))
    client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
    r = await client.post("/api/login", json={"email": user.email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return client


@pytest.fixture
async def admin_client(app: FastAPI, people: People) -> AsyncIterator[httpx.AsyncClient]:
    client = await signed_in(app, people.admin)
    yield client
    await client.aclose()


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


async def test_admins_see_every_order_and_why_one_is_flagged(
    labyard: Labyard, people: People, admin_client: httpx.AsyncClient
) -> None:
    orders = labyard.billing.orders
    pending, _ = orders.checkout(people.learner, "premium", "monthly", "http://testserver/")
    flagged, _ = orders.checkout(people.learner, "premium", "yearly", "http://testserver/")
    with labyard.db.session() as session:
        row = session.get(OrderRow, flagged.id)
        assert row is not None
        row.quoted_country, row.card_country, row.flagged = "IN", "US", True
        row.flag_reason = "quoted for IN, paid with a card from US"

    page = await admin_client.get("/admin/orders")
    assert page.status_code == 200, page.text
    assert pending.id in page.text and flagged.id in page.text
    assert people.learner.email in page.text  # accounts by email, not by id
    assert "quoted for IN, paid with a card from US" in page.text
    assert "plan granted" in page.text  # the admin is told a flag is not a refusal
    assert 'href="/admin/orders"' in page.text  # the nav's Admin link

    only_flagged = await admin_client.get("/admin/orders", params={"flagged": "true"})
    assert flagged.id in only_flagged.text and pending.id not in only_flagged.text
    bad = await admin_client.get("/admin/orders", params={"status": "lost"})
    assert bad.status_code == 400 and "unknown status &#39;lost&#39;" in bad.text


async def test_mark_paid_form_grants_the_plan_and_checks_csrf(
    labyard: Labyard, people: People, admin_client: httpx.AsyncClient
) -> None:
    buyer = labyard.accounts.create_user(f"buyer-{secrets.token_hex(4)}@example.org", PASSWORD)
    order, _ = labyard.billing.orders.checkout(buyer, "premium", "monthly", "http://testserver/")
    page = await admin_client.get("/admin/orders")
    action = f"/admin/orders/{order.id}/mark-paid"
    assert f'action="{action}"' in page.text

    forged = await admin_client.post(action, data={"csrf": "not the token"})
    assert forged.status_code == 403
    assert labyard.entitlements.effective(buyer.id).name == "free"

    done = await admin_client.post(action, data={"csrf": csrf_of(page)})
    assert done.status_code == 303 and done.headers["location"] == f"/admin/orders#{order.id}"
    assert labyard.entitlements.effective(buyer.id).name == "premium"
    again = await admin_client.post(action, data={"csrf": csrf_of(page)})
    assert again.status_code == 409 and "not pending" in again.text


async def test_refund_form_ends_a_manual_orders_plan_and_checks_csrf(
    labyard: Labyard, people: People, admin_client: httpx.AsyncClient
) -> None:
    buyer = labyard.accounts.create_user(f"buyer-{secrets.token_hex(4)}@example.org", PASSWORD)
    order, _ = labyard.billing.orders.checkout(buyer, "premium", "monthly", "http://testserver/")
    action = f"/admin/orders/{order.id}/refund"
    assert f'action="{action}"' not in (await admin_client.get("/admin/orders")).text  # pending
    labyard.billing.orders.mark_paid(labyard.accounts.operator(), order.id)
    page = await admin_client.get("/admin/orders")
    assert f'action="{action}"' in page.text

    forged = await admin_client.post(action, data={"csrf": "not the token"})
    assert forged.status_code == 403
    assert labyard.entitlements.effective(buyer.id).name == "premium"

    done = await admin_client.post(action, data={"csrf": csrf_of(page)})
    assert done.status_code == 303 and done.headers["location"] == f"/admin/orders#{order.id}"
    assert labyard.entitlements.effective(buyer.id).name == "free"
    assert labyard.billing.orders.get(buyer, order.id).status == "refunded"
    after = await admin_client.get("/admin/orders")
    assert f'action="{action}"' not in after.text


async def test_learners_get_403_and_visitors_the_sign_in_form(
    app: FastAPI, people: People, labyard: Labyard
) -> None:
    order, _ = labyard.billing.orders.checkout(people.learner, "premium", "monthly", "http://x/")
    learner = await signed_in(app, people.learner)
    try:
        page = await learner.get("/admin/orders")
        assert page.status_code == 403 and "Only admins" in page.text
        assert order.id not in page.text
        assert 'href="/admin/orders"' not in page.text  # no Admin link for learners
        mark = await learner.post(
            f"/admin/orders/{order.id}/mark-paid", data={"csrf": csrf_of(page)}
        )
        assert mark.status_code == 403
        assert labyard.billing.orders.get(people.learner, order.id).status == "pending"
    finally:
        await learner.aclose()
    transport = httpx.ASGITransport(app=app, client=("192.0.2.41", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as visitor:
        r = await visitor.get("/admin/orders")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fadmin%2Forders"
