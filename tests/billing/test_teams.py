"""Teams and seats on SQLite and PostgreSQL: a paid seats order (an admin marks a manual
one paid, or Stripe's signed webhooks, the checkout made with the real `stripe` client
against the local stand-in: Stripe's servers cannot be reached from here) makes the
buyer's team; members join by code or link, a full team refuses, the last seat goes to
exactly one of many concurrent joins, removal ends the seat at once, renewals extend the
seats, cancellation and refunds end them, "buy more" adds seats to the same team."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select

from labyard.errors import Conflict
from labyard.services import User
from labyard.services.class_spec import ClassSpec
from labyard.services.codes import ALPHABET
from labyard.store import BillingEventRow, EntitlementRow, OrderRow, SeatBlockRow
from tests.billing.conftest import Shop
from tests.billing.stand_in import event

DAY = 86400
CSRF = "csrf-for-forms"


async def buy_seats(
    client: httpx.AsyncClient, seats: int, interval: str = "monthly", **extra: Any
) -> str:
    r = await client.post(
        "/api/billing/checkout",
        json={"plan": "premium", "interval": interval, "seats": seats, **extra},
    )
    assert r.status_code == 201, r.text
    order_id: str = r.json()["order_id"]
    return order_id


async def paid_team(
    shop: Shop, boss: httpx.AsyncClient, buyer: httpx.AsyncClient, seats: int
) -> dict[str, Any]:
    """A manual seats order, marked paid by an admin: the buyer's new team (admin view)."""
    order_id = await buy_seats(buyer, seats)
    paid = await boss.post(f"/api/admin/orders/{order_id}/mark-paid")
    assert paid.status_code == 200, paid.text
    (team,) = (await buyer.get("/api/teams")).json()
    return await team_of(buyer, team["id"])


async def team_of(client: httpx.AsyncClient, team_id: str) -> dict[str, Any]:
    r = await client.get(f"/api/teams/{team_id}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def plan(client: httpx.AsyncClient) -> str:
    name: str = (await client.get("/api/me")).json()["plan"]
    return name


async def join(client: httpx.AsyncClient, code: str) -> httpx.Response:
    return await client.post("/api/teams/join", json={"code": code})


def seat_grants(shop: Shop, user: User) -> list[Any]:
    return [g for g in shop.labyard.entitlements.list(user.id) if g.kind == "seat"]


def block_of(shop: Shop, order_id: str) -> SeatBlockRow:
    with shop.labyard.db.session() as session:
        block = session.scalar(select(SeatBlockRow).where(SeatBlockRow.order_id == order_id))
        assert block is not None
        return block


# -- manual orders ------------------------------------------------------------------------


async def test_a_paid_seats_order_makes_the_buyers_team(manual_shop: Shop) -> None:
    buyer, client = manual_shop.account()
    _, boss = manual_shop.account(role="admin")
    async with client, boss:
        order_id = await buy_seats(client, 3, "yearly")
        assert (await client.get("/api/teams")).json() == []  # not paid: no team yet
        team = await paid_team_from(manual_shop, boss, client, order_id)
        assert await plan(client) == "free"  # the buyer administers; holds no seat
        order = (await client.get(f"/api/billing/orders/{order_id}")).json()
    assert team["admin"] is True and team["my_seat"] is None
    assert team["seats"] == {"total": 3, "used": 0, "free": 3}
    assert team["plans"] == ["premium"]
    code = team["join_code"]
    assert len(code) == 8 and set(code) <= set(ALPHABET)
    assert team["invite_url"] == f"http://testserver/teams/join/{code}"
    assert [(m["email"], m["admin"], m["seat"]) for m in team["members"]] == [
        (buyer.email, True, None)
    ]
    (block,) = team["blocks"]
    assert (block["order_id"], block["quantity"], block["state"]) == (order_id, 3, "in force")
    ends = datetime.fromisoformat(block["ends_at"]) - datetime.fromisoformat(block["starts_at"])
    assert ends.days in (365, 366)
    assert order["team_id"] == team["id"]


async def paid_team_from(
    shop: Shop, boss: httpx.AsyncClient, buyer: httpx.AsyncClient, order_id: str
) -> dict[str, Any]:
    paid = await boss.post(f"/api/admin/orders/{order_id}/mark-paid")
    assert paid.status_code == 200, paid.text
    (team,) = (await buyer.get("/api/teams")).json()
    return await team_of(buyer, team["id"])


async def test_members_join_by_code_in_any_case_and_by_the_invite_link(manual_shop: Shop) -> None:
    _, buyer = manual_shop.account()
    _, boss = manual_shop.account(role="admin")
    first, one = manual_shop.account()
    second, two = manual_shop.account()
    async with buyer, boss, one, two:
        team = await paid_team(manual_shop, boss, buyer, 3)
        code = team["join_code"]
        typed = f"{code[:4].lower()}-{code[4:].lower()} "
        joined = await join(one, typed)
        assert joined.status_code == 200, joined.text
        assert joined.json()["my_seat"]["plan"] == "premium"
        assert joined.json()["my_seat"]["in_force"] is True
        assert "join_code" not in joined.json() and "members" not in joined.json()
        assert await plan(one) == "premium"
        again = await join(one, code)  # a double click keeps the one seat
        assert again.status_code == 200, again.text

        # The invite link: a page that says what it is, and a form that joins.
        page = await two.get(f"/teams/join/{code}")
        assert page.status_code == 200, page.text
        assert team["name"] in page.text and "2 of 3 seats free" in page.text
        two.cookies.set("labyard_csrf", CSRF)
        posted = await two.post(f"/teams/join/{code}", data={"csrf": CSRF})
        assert posted.status_code == 303, posted.text
        assert posted.headers["location"] == f"/teams/{team['id']}"
        assert await plan(two) == "premium"
        board = await team_of(buyer, team["id"])
        wrong = await join(two, "ZZZZZZZZ")
    assert wrong.status_code == 404, wrong.text
    assert board["seats"] == {"total": 3, "used": 2, "free": 1}
    seated = {m["email"]: m["seat"]["in_force"] for m in board["members"] if m["seat"]}
    assert seated == {first.email: True, second.email: True}
    (grant,) = seat_grants(manual_shop, first)
    assert grant.plan == "premium" and grant.ends_at == datetime.fromisoformat(
        board["blocks"][0]["ends_at"]
    )


async def test_a_full_team_refuses_with_a_409_that_says_so(manual_shop: Shop) -> None:
    _, buyer = manual_shop.account()
    _, boss = manual_shop.account(role="admin")
    _, one = manual_shop.account()
    late, two = manual_shop.account()
    async with buyer, boss, one, two:
        team = await paid_team(manual_shop, boss, buyer, 1)
        assert (await join(one, team["join_code"])).status_code == 200
        full = await join(two, team["join_code"])
        assert full.status_code == 409, full.text
        assert full.json()["error"]["reason"] == "team_full"
        assert "is full: its one seat is taken" in full.json()["error"]["message"]
        assert await plan(two) == "free"
        two.cookies.set("labyard_csrf", CSRF)
        page = await two.post(f"/teams/join/{team['join_code']}", data={"csrf": CSRF})
        assert page.status_code == 409 and "is full" in page.text
        assert (await two.get(f"/api/teams/{team['id']}")).status_code == 404
    assert seat_grants(manual_shop, late) == []


async def test_many_concurrent_joins_for_the_last_seat_one_wins(manual_shop: Shop) -> None:
    _, buyer = manual_shop.account()
    _, boss = manual_shop.account(role="admin")
    _, early = manual_shop.account()
    async with buyer, boss, early:
        team = await paid_team(manual_shop, boss, buyer, 2)
        assert (await join(early, team["join_code"])).status_code == 200
    racers = [manual_shop.account()[0] for _ in range(8)]
    start = threading.Barrier(len(racers))

    def race(user: User) -> str:
        start.wait()
        try:
            manual_shop.labyard.teams.join(user, team["join_code"])
        except Conflict:
            return "full"
        return "joined"

    with ThreadPoolExecutor(len(racers)) as pool:
        outcomes = list(pool.map(race, racers))
    assert sorted(outcomes) == ["full"] * 7 + ["joined"]
    winners = [u for u in racers if seat_grants(manual_shop, u)]
    assert len(winners) == 1
    _, admin = buyer_client(manual_shop, team)
    async with admin:
        assert (await team_of(admin, team["id"]))["seats"] == {"total": 2, "used": 2, "free": 0}


def buyer_client(shop: Shop, team: dict[str, Any]) -> tuple[User, httpx.AsyncClient]:
    """A client of the team's (first) admin."""
    (admin,) = [m for m in team["members"] if m["admin"]]
    user = shop.labyard.accounts.get(admin["account_id"])
    return user, shop.client(shop.labyard.accounts.issue(user, "api", "team admin"))


async def test_removal_frees_the_seat_and_ends_the_members_plan_at_once(manual_shop: Shop) -> None:
    _, buyer = manual_shop.account()
    _, boss = manual_shop.account(role="admin")
    member, one = manual_shop.account()
    _, two = manual_shop.account()
    async with buyer, boss, one, two:
        team = await paid_team(manual_shop, boss, buyer, 1)
        await join(one, team["join_code"])
        assert await plan(one) == "premium"
        refused = await one.delete(f"/api/teams/{team['id']}/members/{member.id}")
        assert refused.status_code == 403, refused.text  # members do not administer
        before = datetime.now(UTC)
        removed = await buyer.delete(f"/api/teams/{team['id']}/members/{member.id}")
        assert removed.status_code == 200, removed.text
        assert removed.json()["seats"] == {"total": 1, "used": 0, "free": 1}
        assert await plan(one) == "free"
        assert (await one.get(f"/api/teams/{team['id']}")).status_code == 404
        assert (await one.get("/api/teams")).json() == []
        again = await buyer.delete(f"/api/teams/{team['id']}/members/{member.id}")
        assert again.status_code == 404, again.text
        assert (await join(two, team["join_code"])).status_code == 200  # the seat is free
        assert (await join(one, team["join_code"])).status_code == 409
    (grant,) = seat_grants(manual_shop, member)
    assert grant.revoked_at is not None and grant.revoked_at >= before


async def test_a_new_code_replaces_the_old_one_and_admins_can_be_added(manual_shop: Shop) -> None:
    _, buyer = manual_shop.account()
    _, boss = manual_shop.account(role="admin")
    member, one = manual_shop.account()
    _, two = manual_shop.account()
    async with buyer, boss, one, two:
        team = await paid_team(manual_shop, boss, buyer, 3)
        old = team["join_code"]
        assert (await one.post(f"/api/teams/{team['id']}/code")).status_code == 404
        await join(one, old)
        assert (await one.post(f"/api/teams/{team['id']}/code")).status_code == 403
        fresh = await buyer.post(f"/api/teams/{team['id']}/code")
        assert fresh.status_code == 200, fresh.text
        new = fresh.json()["join_code"]
        assert new != old and fresh.json()["invite_url"].endswith(new)
        assert (await join(two, old)).status_code == 404
        assert (await two.get(f"/teams/join/{old}")).status_code == 404
        assert (await join(two, new)).status_code == 200

        made = await buyer.post(f"/api/teams/{team['id']}/admins", json={"account_id": member.id})
        assert made.status_code == 200, made.text
        as_admin = await team_of(one, team["id"])
        assert as_admin["admin"] is True and as_admin["join_code"] == new
        renamed = await one.patch(f"/api/teams/{team['id']}", json={"name": "  Acme   Labs "})
        assert renamed.json()["name"] == "Acme Labs"
        buyer_id = next(m["account_id"] for m in as_admin["members"] if m["seat"] is None)
        down = await buyer.delete(f"/api/teams/{team['id']}/admins/{buyer_id}")  # steps down
        assert down.status_code == 200, down.text
        assert down.json() == {
            "id": team["id"],
            "name": "Acme Labs",
            "admin": False,
            "my_seat": None,
        }
        last = await one.delete(f"/api/teams/{team['id']}/admins/{member.id}")
        assert last.status_code == 409 and "at least one admin" in last.text
        assert (await buyer.get(f"/api/teams/{team['id']}")).status_code == 404


async def test_buy_more_adds_seats_to_the_same_team(manual_shop: Shop) -> None:
    _, buyer = manual_shop.account()
    _, boss = manual_shop.account(role="admin")
    member, one = manual_shop.account()
    _, stranger = manual_shop.account()
    async with buyer, boss, one, stranger:
        team = await paid_team(manual_shop, boss, buyer, 1)
        await join(one, team["join_code"])
        for client, status in ((stranger, 404), (one, 403)):
            r = await client.post(
                "/api/billing/checkout",
                json={"plan": "premium", "interval": "yearly", "seats": 2, "team_id": team["id"]},
            )
            assert r.status_code == status, r.text
        no_seats = await buyer.post(
            "/api/billing/checkout",
            json={"plan": "premium", "interval": "yearly", "team_id": team["id"]},
        )
        assert no_seats.status_code == 422, no_seats.text
        more = await buy_seats(buyer, 2, "yearly", team_id=team["id"])
        assert (await team_of(buyer, team["id"]))["seats"]["total"] == 1  # not paid yet
        await boss.post(f"/api/admin/orders/{more}/mark-paid")
        teams = (await buyer.get("/api/teams")).json()
        board = await team_of(buyer, team["id"])
    assert [t["id"] for t in teams] == [team["id"]]
    assert board["seats"] == {"total": 3, "used": 1, "free": 2}
    # The member moved to the seats that last longer: the yearly block, for a year.
    (grant,) = seat_grants(manual_shop, member)
    assert grant.ends_at is not None and grant.ends_at == block_of(manual_shop, more).ends_at
    assert (grant.ends_at - datetime.now(UTC)).days >= 364


# -- Stripe ------------------------------------------------------------------------------


def completed(order_id: str, sub_id: str) -> dict[str, Any]:
    return {
        "id": f"cs_test_{order_id}",
        "object": "checkout.session",
        "client_reference_id": order_id,
        "customer": "cus_team",
        "mode": "subscription",
        "payment_status": "paid",
        "status": "complete",
        "subscription": sub_id,
        "metadata": {"order_id": order_id},
    }


def subscription(sub_id: str, status: str, period_end: int, order_id: str) -> dict[str, Any]:
    return {
        "id": sub_id,
        "object": "subscription",
        "status": status,
        "current_period_end": period_end,
        "items": {"data": [{"current_period_end": period_end, "quantity": 2}]},
        "metadata": {"order_id": order_id},
    }


def invoice(sub_id: str, order_id: str, period_end: int) -> dict[str, Any]:
    return {
        "id": f"in_{period_end}",
        "object": "invoice",
        "subscription": sub_id,
        "charge": f"ch_{period_end}",
        "subscription_details": {"metadata": {"order_id": order_id}},
        "lines": {"data": [{"period": {"start": period_end - 30 * DAY, "end": period_end}}]},
    }


async def ok(shop: Shop, payload: dict[str, Any]) -> None:
    r = await shop.deliver(payload)
    assert r.status_code == 200, r.text


async def stripe_team(
    shop: Shop, buyer: httpx.AsyncClient, sub_id: str, paid_at: int | None = None
) -> tuple[str, dict[str, Any]]:
    assert shop.stripe is not None
    order_id = await buy_seats(buyer, 2)
    form = shop.stripe.last("/v1/checkout/sessions").form
    assert (form["mode"], form["line_items[0][quantity]"]) == ("subscription", "2")
    await ok(shop, event("checkout.session.completed", completed(order_id, sub_id), paid_at))
    (team,) = (await buyer.get("/api/teams")).json()
    return order_id, await team_of(buyer, team["id"])


async def test_stripe_seats_renew_and_a_cancellation_ends_them(shop: Shop) -> None:
    _, buyer = shop.account()
    member, one = shop.account()
    _, two = shop.account()
    now = int(time.time())
    async with buyer, one, two:
        order_id, team = await stripe_team(shop, buyer, "sub_seats_1", paid_at=now - 100)
        assert team["seats"] == {"total": 2, "used": 0, "free": 2}
        await join(one, team["join_code"])
        assert await plan(one) == "premium"
        (grant,) = seat_grants(shop, member)
        assert grant.ends_at is not None and 27 <= (grant.ends_at - datetime.now(UTC)).days <= 31

        renewed = now + 61 * DAY
        await ok(shop, event("invoice.paid", invoice("sub_seats_1", order_id, renewed)))
        (grant,) = seat_grants(shop, member)
        assert grant.ends_at == datetime.fromtimestamp(renewed, UTC)
        later = now + 91 * DAY
        updated = subscription("sub_seats_1", "active", later, order_id)
        await ok(shop, event("customer.subscription.updated", updated))
        assert block_of(shop, order_id).ends_at == datetime.fromtimestamp(later, UTC)
        (grant,) = seat_grants(shop, member)
        assert grant.ends_at == datetime.fromtimestamp(later, UTC)

        deleted = subscription("sub_seats_1", "canceled", later, order_id)
        deleted["ended_at"] = now - 5
        await ok(shop, event("customer.subscription.deleted", deleted, created=now))
        assert await plan(one) == "free"
        # A late update made before the cancellation brings nothing back.
        await ok(shop, event("customer.subscription.updated", updated, created=now - 60))
        assert await plan(one) == "free"
        ended = await team_of(buyer, team["id"])
        mine = await team_of(one, team["id"])  # the member still sees it, seat ended
        refused = await join(two, team["join_code"])
    assert ended["seats"] == {"total": 0, "used": 0, "free": 0}
    assert ended["blocks"][0]["state"] == "ended"
    assert mine["my_seat"]["in_force"] is False
    assert refused.status_code == 409 and "no seats in force" in refused.text
    assert refused.json()["error"]["reason"] == "no_seats"
    ended_at = datetime.fromtimestamp(now - 5, UTC)
    assert block_of(shop, order_id).ends_at == ended_at
    (grant,) = seat_grants(shop, member)  # joined after it ended: ends where it starts
    assert grant.ends_at == max(ended_at, grant.starts_at)


async def test_a_quantity_changed_in_stripes_portal_resizes_the_seats(shop: Shop) -> None:
    """2 seats bought, then 3 in the portal, then 1: the third seat is free at once; going
    down to 1 unseats the member seated last (their plan ends now). A late event with an
    older quantity changes nothing."""
    _, buyer = shop.account()
    first, one = shop.account()
    last, two = shop.account()
    now = int(time.time())
    period_end = now + 30 * DAY
    async with buyer, one, two:
        order_id, team = await stripe_team(shop, buyer, "sub_seats_3", paid_at=now - 100)
        await join(one, team["join_code"])
        await join(two, team["join_code"])
        more = subscription("sub_seats_3", "active", period_end, order_id)
        more["items"]["data"][0]["quantity"] = 3
        await ok(shop, event("customer.subscription.updated", more, created=now))
        three = await team_of(buyer, team["id"])
        fewer = subscription("sub_seats_3", "active", period_end, order_id)
        fewer["items"]["data"][0]["quantity"] = 1
        await ok(shop, event("customer.subscription.updated", fewer, created=now + 10))
        late = event("customer.subscription.updated", more, created=now + 5)  # sent earlier
        await ok(shop, late)
        one_seat = await team_of(buyer, team["id"])
        plans = (await plan(one), await plan(two))
    assert three["seats"] == {"total": 3, "used": 2, "free": 1}
    assert one_seat["seats"] == {"total": 1, "used": 1, "free": 0}
    assert plans == ("premium", "free")  # the member seated first keeps the seat
    (grant,) = seat_grants(shop, last)
    assert grant.revoked_at is not None
    (kept,) = seat_grants(shop, first)
    assert kept.revoked_at is None
    with shop.labyard.db.session() as session:
        outcome = session.scalar(
            select(BillingEventRow.outcome).where(BillingEventRow.event_id == late["id"])
        )
    assert outcome == "subscription active", outcome


async def test_a_refunded_seats_order_ends_the_seats_at_once(shop: Shop) -> None:
    _, buyer = shop.account()
    member, one = shop.account()
    async with buyer, one:
        order_id, team = await stripe_team(shop, buyer, "sub_seats_2")
        await join(one, team["join_code"])
        renewed = int(time.time()) + 40 * DAY
        await ok(shop, event("invoice.paid", invoice("sub_seats_2", order_id, renewed)))
        assert await plan(one) == "premium"
        charge = {"id": f"ch_{renewed}", "object": "charge", "refunded": True}
        await ok(shop, event("charge.refunded", charge))
        assert await plan(one) == "free"
        board = await team_of(buyer, team["id"])
    assert board["blocks"][0]["state"] == "refunded"
    assert board["seats"]["total"] == 0
    (grant,) = seat_grants(shop, member)
    assert grant.revoked_at is not None
    with shop.labyard.db.session() as session:
        order = session.get(OrderRow, order_id)
        assert order is not None and order.status == "refunded"


# -- pages and who sees what ---------------------------------------------------------------


async def test_the_admin_board_and_what_members_and_others_see(manual_shop: Shop) -> None:
    buyer_user, buyer = manual_shop.account()
    _, boss = manual_shop.account(role="admin")
    member, one = manual_shop.account()
    _, stranger = manual_shop.account()
    async with buyer, boss, one, stranger:
        team = await paid_team(manual_shop, boss, buyer, 2)
        tid, code = team["id"], team["join_code"]
        await join(one, code)
        board = await buyer.get(f"/teams/{tid}")
        assert board.status_code == 200, board.text
        html = board.text
        assert f'<code class="join-code">{code}</code>' in html
        assert f"http://testserver/teams/join/{code}" in html
        assert '<strong class="used">1</strong> used, <strong class="free">1</strong> free' in html
        assert f'action="/teams/{tid}/members/{member.id}/remove"' in html
        assert 'action="/teams/buy"' in html and f'name="team_id" value="{tid}"' in html

        seen = await one.get(f"/teams/{tid}")
        assert seen.status_code == 200 and "You hold a seat" in seen.text
        assert code not in seen.text and "/remove" not in seen.text
        member_json = await team_of(one, tid)
        assert set(member_json) == {"id", "name", "admin", "my_seat"}
        for path in (f"/teams/{tid}", f"/api/teams/{tid}"):
            assert (await stranger.get(path)).status_code == 404
        assert (await stranger.get("/api/teams")).json() == []
        stranger.cookies.set("labyard_csrf", CSRF)
        poke = await stranger.post(f"/teams/{tid}/code", data={"csrf": CSRF})
        assert poke.status_code == 404, poke.text
        one.cookies.set("labyard_csrf", CSRF)
        poke = await one.post(f"/teams/{tid}/members/{member.id}/remove", data={"csrf": CSRF})
        assert poke.status_code == 403, poke.text

        listing = await buyer.get("/teams")
        assert f'href="/teams/{tid}"' in listing.text and 'action="/teams/buy"' in listing.text
        typed = await one.get("/teams/join", params={"code": code.lower()})
        assert typed.status_code == 303, typed.text
        assert typed.headers["location"] == f"/teams/join/{code.lower()}"
        account = await buyer.get("/account")
        assert 'id="teams"' in account.text and f'href="/teams/{tid}"' in account.text

        buyer.cookies.set("labyard_csrf", CSRF)
        more = await buyer.post(
            "/teams/buy",
            data={
                "csrf": CSRF,
                "team_id": tid,
                "seats": "3",
                "plan": "premium",
                "interval": "monthly",
            },
        )
        assert more.status_code == 303, more.text
        assert more.headers["location"].startswith("http://testserver/account")
        orders = (await buyer.get("/api/billing/orders")).json()
        assert (orders[0]["kind"], orders[0]["quantity"], orders[0]["team_id"]) == ("seats", 3, tid)
        new_team = await buyer.post(
            "/teams/buy",
            data={"csrf": CSRF, "seats": "2", "plan": "premium", "interval": "lifetime"},
        )
        assert new_team.status_code == 422 and "not for a lifetime" in new_team.text

        removed = await buyer.post(f"/teams/{tid}/members/{member.id}/remove", data={"csrf": CSRF})
        assert removed.status_code == 303, removed.text
        assert await plan(one) == "free"
        renewed = await buyer.post(f"/teams/{tid}/code", data={"csrf": CSRF})
        assert renewed.status_code == 303
        assert (await team_of(buyer, tid))["join_code"] != code
    assert buyer_user.id != member.id
    with manual_shop.labyard.db.session() as session:
        revoked = session.scalars(
            select(EntitlementRow).where(EntitlementRow.account_id == member.id)
        ).all()
        assert [g.revoked_at is not None for g in revoked] == [True]
    assert timedelta(0) <= datetime.now(UTC) - revoked[0].revoked_at < timedelta(minutes=1)


async def test_a_class_guest_cannot_take_a_team_seat(manual_shop: Shop) -> None:
    """A guest account exists for its class only: a team's code refuses it, while a learner
    with the same code gets the seat."""
    _, buyer = manual_shop.account()
    _, boss = manual_shop.account(role="admin")
    instructor, _ = manual_shop.account(role="instructor")
    _, learner = manual_shop.account()
    now = datetime.now(UTC)
    spec = ClassSpec(
        title="Workshop", content=["linux"], seats=5, guests=True,
        starts_at=now - timedelta(minutes=5), ends_at=now + timedelta(hours=1),
    )  # fmt: skip
    room = manual_shop.labyard.classes.create(instructor, spec)
    guest, _ = manual_shop.labyard.classes.join_as_guest(room.join_code, "Visitor")
    guest_client = manual_shop.client(manual_shop.labyard.accounts.issue(guest, "api", "t"))
    async with buyer, boss, learner, guest_client:
        team = await paid_team(manual_shop, boss, buyer, 2)
        refused = await join(guest_client, team["join_code"])
        assert refused.status_code == 403, refused.text
        assert "guest of a class cannot join a team" in refused.json()["error"]["message"]
        assert (await join(learner, team["join_code"])).status_code == 200
        board = await team_of(buyer, team["id"])
    assert board["seats"]["used"] == 1
    assert seat_grants(manual_shop, guest) == []
