"""Promo codes on SQLite and PostgreSQL: made by admins (API, web page, CLI), redeemed at
checkout, every rule refused with its own message, reserved uses given back when a checkout
expires, and max redemptions held under concurrent checkouts. Stripe is the local stand-in
(stand_in.py; Stripe's servers cannot be reached from here), webhooks signed as Stripe signs
them."""

from __future__ import annotations

import os
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select

from labyard.errors import PromoRefused
from labyard.services.billing.promos import NewPromo
from labyard.store import OrderRow, PromoCodeRow, PromoRedemptionRow
from tests.billing.conftest import Shop
from tests.billing.stand_in import event, session_completed
from tests.conftest import IMAGES_DIR, REPO

IN = "14.139.0.1"  # a block registered to India: tier 5, 0.30 of the base price


async def make(shop: Shop, **fields: Any) -> dict[str, Any]:
    _, boss = shop.account(role="admin")
    async with boss:
        r = await boss.post("/api/admin/promos", json=fields)
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    return made


async def buy(
    client: httpx.AsyncClient, code: str | None, interval: str = "monthly", **extra: Any
) -> httpx.Response:
    body = {"plan": "premium", "interval": interval, "promo_code": code, **extra}
    return await client.post("/api/billing/checkout", json=body)


def redemptions(shop: Shop, code: str) -> list[tuple[str, str, int]]:
    query = select(PromoRedemptionRow).where(PromoRedemptionRow.code == code)
    with shop.labyard.db.session() as session:
        rows = session.scalars(query.order_by(PromoRedemptionRow.id))
        return [(r.order_id, r.status, r.discount) for r in rows]


def used(shop: Shop, code: str) -> int:
    with shop.labyard.db.session() as session:
        return int(session.scalar(select(PromoCodeRow.used).where(PromoCodeRow.code == code)))


# -- made by admins ----------------------------------------------------------------------


async def test_admins_make_list_and_disable_codes_and_learners_may_not(shop: Shop) -> None:
    _, boss = shop.account(role="admin")
    _, learner = shop.account()
    async with boss, learner:
        made = await boss.post(
            "/api/admin/promos",
            json={
                "code": "spring-25",
                "percent": 25,
                "max_redemptions": 10,
                "expires": "2099-03-31",
            },
        )
        assert made.status_code == 201, made.text
        fixed = await boss.post(
            "/api/admin/promos",
            json={"code": "FIVE", "amount": "5.00", "currency": "usd", "plans": ["premium"]},
        )
        assert fixed.status_code == 201, fixed.text
        twice = await boss.post("/api/admin/promos", json={"code": "Spring-25", "percent": 5})
        both = await boss.post(
            "/api/admin/promos",
            json={"code": "BOTH", "percent": 5, "amount": "1", "currency": "USD"},
        )
        nothing = await boss.post("/api/admin/promos", json={"code": "NONE"})
        listed = (await boss.get("/api/admin/promos")).json()
        disabled = await boss.post("/api/admin/promos/five/disable")
        shown = (await boss.get("/api/admin/promos/FIVE")).json()
        refused = {
            "create": await learner.post("/api/admin/promos", json={"code": "MINE", "percent": 99}),
            "list": await learner.get("/api/admin/promos"),
            "show": await learner.get("/api/admin/promos/FIVE"),
            "disable": await learner.post("/api/admin/promos/SPRING-25/disable"),
        }
    assert made.json()["code"] == "SPRING-25"
    assert made.json()["expires_at"] == "2099-04-01T00:00:00+00:00"  # good through the 31st
    assert (fixed.json()["amount_off"], fixed.json()["currency"], fixed.json()["off"]) == (
        500,
        "USD",
        "5.00 USD",
    )
    assert twice.status_code == 409 and "exists already" in twice.json()["error"]["message"]
    assert both.status_code == 422 and "either a percentage or an amount" in both.text
    assert nothing.status_code == 422
    assert [p["code"] for p in listed] == ["FIVE", "SPRING-25"]
    assert disabled.status_code == 200 and disabled.json()["state"] == "disabled"
    assert shown["state"] == "disabled" and shown["redemptions"] == []
    assert {k: r.status_code for k, r in refused.items()} == dict.fromkeys(refused, 403)
    assert used(shop, "SPRING-25") == 0


# -- redeemed at checkout ----------------------------------------------------------------


async def test_a_code_takes_its_discount_and_is_redeemed_when_paid(shop: Shop) -> None:
    assert shop.stripe is not None
    await make(shop, code="QUARTER", percent=25)
    buyer, client = shop.account()
    async with client:
        r = await buy(client, "quarter")
        assert r.status_code == 201, r.text
        mine = (await client.get(f"/api/billing/orders/{r.json()['order_id']}")).json()
    order_id = r.json()["order_id"]
    form = shop.stripe.last("/v1/checkout/sessions").form
    assert form["line_items[0][price_data][unit_amount]"] == "1125"
    assert form["allow_promotion_codes"] == "false"  # Stripe's codes would stack on ours
    assert (mine["amount"], mine["discount"], mine["promo_code"]) == (1125, 375, "QUARTER")
    assert redemptions(shop, "QUARTER") == [(order_id, "reserved", 375)]
    assert used(shop, "QUARTER") == 1
    paid = await shop.deliver(event("checkout.session.completed", session_completed(order_id)))
    assert paid.status_code == 200, paid.text
    assert redemptions(shop, "QUARTER") == [(order_id, "redeemed", 375)]
    assert used(shop, "QUARTER") == 1
    assert [g.plan for g in shop.labyard.entitlements.list(buyer.id)] == ["premium"]


async def test_every_rule_is_refused_with_its_own_message(shop: Shop) -> None:
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    await make(shop, code="OLD", percent=10, expires=past)
    await make(shop, code="GONE", percent=10)
    await make(shop, code="ONCE", percent=10, max_redemptions=1)
    await make(shop, code="OTHER", percent=10, plans=["premium"])
    await make(shop, code="NEWBIE", percent=10, first_purchase_only=True)
    await make(shop, code="EURO", amount="5", currency="EUR")
    await make(shop, code="HUGE", amount="20", currency="USD")
    await make(shop, code="MINE", percent=10)
    _, boss = shop.account(role="admin")
    async with boss:
        assert (await boss.post("/api/admin/promos/GONE/disable")).status_code == 200
    # Only premium is for sale here: a code for another plan is made in the database.
    with shop.labyard.db.session() as session:
        row = session.scalar(select(PromoCodeRow).where(PromoCodeRow.code == "OTHER"))
        assert row is not None
        row.plans = ["team-pro"]

    first, first_client = shop.account()
    async with first_client:
        assert (await buy(first_client, "ONCE")).status_code == 201
        assert (await buy(first_client, "MINE")).status_code == 201
        again = await buy(first_client, "mine")
        order_id = (await first_client.get("/api/billing/orders")).json()[0]["id"]
    paid = await shop.deliver(event("checkout.session.completed", session_completed(order_id)))
    assert paid.status_code == 200

    _, client = shop.account()
    async with client:
        outcomes = {
            code: await buy(client, code)
            for code in ("NOPE", "OLD", "GONE", "ONCE", "OTHER", "EURO", "HUGE")
        }
        yearly_huge = await buy(client, "HUGE", interval="yearly")
    async with shop.account()[1] as fresh:
        assert (await buy(fresh, "NEWBIE")).status_code == 201  # never bought: fine
    async with shop.client(shop.labyard.accounts.issue(first, "api", "t")) as bought_before:
        outcomes["NEWBIE"] = await buy(bought_before, "NEWBIE")
    outcomes["MINE again"] = again

    seen = {
        code: (r.status_code, r.json()["error"]["reason"], r.json()["error"]["message"])
        for code, r in outcomes.items()
    }
    assert seen == {
        "NOPE": (422, "promo_unknown", "there is no promo code NOPE"),
        "OLD": (422, "promo_expired", seen["OLD"][2]),
        "GONE": (422, "promo_disabled", "promo code GONE is no longer valid"),
        "ONCE": (422, "promo_used_up", "promo code ONCE has been used up"),
        "OTHER": (
            422,
            "promo_not_for_plan",
            "promo code OTHER is not for this plan (it is for: team-pro)",
        ),
        "EURO": (
            422,
            "promo_wrong_currency",
            "promo code EURO takes off EUR, and the Premium plan is priced in USD",
        ),
        "HUGE": (
            422,
            "promo_not_for_plan",
            "promo code HUGE takes off more than the Premium plan costs monthly",
        ),
        "NEWBIE": (
            422,
            "promo_not_first_purchase",
            "promo code NEWBIE is for a first purchase only, and this account has bought before",
        ),
        "MINE again": (422, "promo_used_already", "you have used promo code MINE already"),
    }
    assert seen["OLD"][2].startswith("promo code OLD expired on ")
    assert yearly_huge.status_code == 201, yearly_huge.text  # 20 off 120: fine
    # A refused code made no order and took no use.
    assert len((await shop.account()[1].get("/api/billing/orders")).json()) == 0
    assert used(shop, "ONCE") == 1 and used(shop, "OLD") == 0


async def test_a_country_price_and_a_code_do_not_stack(shop: Shop) -> None:
    assert shop.stripe is not None
    await make(shop, code="SMALL", percent=25)
    await make(shop, code="BIG", percent=80)
    _, client = shop.account(address=IN)
    async with client:
        small = await buy(client, "SMALL")
        big = await buy(client, "BIG")
    assert small.status_code == 201 and big.status_code == 201
    with shop.labyard.db.session() as session:
        rows = {r.id: r for r in session.scalars(select(OrderRow))}
    country, promo = rows[small.json()["order_id"]], rows[big.json()["order_id"]]
    # 0.30 of the price (India's tier) beats 25 % off: the code is not used, nor used up.
    assert (country.amount, country.price_tier, country.promo_code, country.discount) == (
        500,
        "5",
        None,
        0,
    )
    assert used(shop, "SMALL") == 0 and redemptions(shop, "SMALL") == []
    # 80 % off beats the country price: the base price less the code, not country-priced.
    assert (promo.amount, promo.price_tier, promo.promo_code, promo.discount) == (
        300,
        None,
        "BIG",
        1200,
    )
    assert promo.quoted_country == "IN"
    assert shop.stripe.last("/v1/checkout/sessions").form["allow_promotion_codes"] == "false"


async def test_seats_take_the_better_of_the_group_discount_and_a_code(shop: Shop) -> None:
    await make(shop, code="FIFTEEN", percent=15)
    _, client = shop.account()
    async with client:
        ladder = await buy(client, "FIFTEEN", seats=20)  # 20 % off beats 15 %
        promo = await buy(client, "FIFTEEN", seats=5, interval="yearly")  # 15 % beats 10 %
    assert ladder.status_code == 201 and promo.status_code == 201, promo.text
    with shop.labyard.db.session() as session:
        first = session.get(OrderRow, ladder.json()["order_id"])
        second = session.get(OrderRow, promo.json()["order_id"])
        assert first is not None and second is not None
        assert (first.amount, first.promo_code, first.discount) == (24000, None, 6000)
        assert (second.amount, second.promo_code, second.discount) == (51000, "FIFTEEN", 9000)
    assert [r[1:] for r in redemptions(shop, "FIFTEEN")] == [("reserved", 9000)]


async def test_an_expired_checkout_gives_its_use_back(shop: Shop) -> None:
    await make(shop, code="LAST", percent=50, max_redemptions=1)
    _, first = shop.account()
    _, second = shop.account()
    async with first, second:
        taken = await buy(first, "LAST")
        assert taken.status_code == 201, taken.text
        refused = await buy(second, "LAST")
        assert refused.json()["error"]["reason"] == "promo_used_up"
        order_id = taken.json()["order_id"]
        expired = {"id": f"cs_{order_id}", "object": "checkout.session"}
        expired |= {"client_reference_id": order_id, "status": "expired"}
        for _ in range(2):  # a redelivery gives nothing back twice
            r = await shop.deliver(event("checkout.session.expired", expired))
            assert r.status_code == 200, r.text
        assert used(shop, "LAST") == 0
        assert redemptions(shop, "LAST") == [(order_id, "released", 750)]
        now = await buy(second, "LAST")
    assert now.status_code == 201, now.text
    assert used(shop, "LAST") == 1


def test_max_redemptions_hold_under_concurrent_checkouts(shop: Shop) -> None:
    """Twelve buyers at once, in threads (each a transaction of its own, as the server's
    thread pool runs them), for a code with three uses: exactly three get it."""
    orders = shop.labyard.billing.orders
    shop.labyard.billing.promos.create(None, NewPromo(code="RUSH", percent=30, max_redemptions=3))
    buyers = [shop.account()[0] for _ in range(12)]
    start = threading.Barrier(len(buyers))

    def attempt(user: Any) -> str:
        start.wait(timeout=30)
        try:
            orders.checkout(user, "premium", "monthly", "http://testserver/", promo_code="rush")
        except PromoRefused as exc:
            return exc.reason
        return "ok"

    with ThreadPoolExecutor(len(buyers)) as pool:
        outcomes = list(pool.map(attempt, buyers))
    assert sorted(outcomes) == ["ok"] * 3 + ["promo_used_up"] * 9
    assert used(shop, "RUSH") == 3
    assert [r[1] for r in redemptions(shop, "RUSH")] == ["reserved"] * 3


# -- the admin page ----------------------------------------------------------------------


async def test_the_admin_page_lists_and_makes_codes(shop: Shop) -> None:
    _, boss = shop.account(role="admin")
    _, learner = shop.account()
    async with boss, learner:
        boss.cookies.set("labyard_csrf", "t0ken")
        made = await boss.post(
            "/admin/promos",
            data={
                "csrf": "t0ken",
                "code": "web10",
                "percent": "10",
                "max_redemptions": "5",
                "expires": "2099-01-31",
                "first_purchase_only": "on",
                "plans": "premium",
                "note": "from the web",
            },
        )
        bad = await boss.post("/admin/promos", data={"csrf": "t0ken", "code": "x", "percent": "5"})
        page = await boss.get("/admin/promos")
        off = await boss.post("/admin/promos/WEB10/disable", data={"csrf": "t0ken"})
        after = await boss.get("/admin/promos")
        theirs = await learner.get("/admin/promos")
    assert made.status_code == 303 and made.headers["location"] == "/admin/promos"
    assert bad.status_code == 422 and "is not a promo code" in bad.text
    assert '<tr data-code="WEB10">' in page.text
    assert "10 %" in page.text and "0 / 5" in page.text and "first purchase only" in page.text
    assert off.status_code == 303
    assert '<td class="state">disabled</td>' in after.text
    assert theirs.status_code == 403
    promo, _ = shop.labyard.billing.promos.get(None, "web10")
    assert (promo.first_purchase_only, promo.plans, promo.note) == (
        True,
        ("premium",),
        "from the web",
    )


# -- the CLI -----------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "LABYARD_DATA_DIR": str(tmp_path), "LABYARD_IMAGES_DIR": str(IMAGES_DIR)}
    env.pop("LABYARD_DATABASE_URL", None)
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / ".venv/bin/labyard"), "admin", "promo", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_the_cli_makes_lists_shows_and_disables_codes(cli_env: dict[str, str]) -> None:
    import json

    made = cli(cli_env, "create", "cli-20", "--percent", "20", "--max", "2", "--plan", "premium")
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "CLI-20"
    assert "created promo code CLI-20: 20 % off" in made.stderr
    fixed = cli(
        cli_env,
        "create",
        "TENOFF",
        "--amount",
        "10",
        "--currency",
        "usd",
        "--first-purchase",
        "--expires",
        "2099-12-31",
        "--json",
    )
    assert fixed.returncode == 0, fixed.stderr
    data = json.loads(fixed.stdout)
    assert (data["amount_off"], data["currency"], data["first_purchase_only"]) == (
        1000,
        "USD",
        True,
    )
    assert data["expires_at"] == "2100-01-01T00:00:00+00:00"
    listed = json.loads(cli(cli_env, "list", "--json").stdout)
    assert [(p["code"], p["used"], p["max_redemptions"]) for p in listed] == [
        ("TENOFF", 0, None),
        ("CLI-20", 0, 2),
    ]
    table = cli(cli_env, "list")
    assert "CLI-20" in table.stdout and "plans: premium" in table.stdout
    shown = json.loads(cli(cli_env, "show", "cli-20", "--json").stdout)
    assert shown["redemptions"] == []
    off = cli(cli_env, "disable", "CLI-20", "--json")
    assert off.returncode == 0 and json.loads(off.stdout)["state"] == "disabled"


def test_cli_usage_errors_exit_2_and_bad_input_says_why(cli_env: dict[str, str]) -> None:
    for args in (
        ["create"],
        ["create", "X1X", "--percent", "500"],
        ["frobnicate"],
        ["list", "--nope"],
    ):
        usage = cli(cli_env, *args)
        assert usage.returncode == 2, (args, usage.stderr)
        assert "Traceback" not in usage.stderr and "Usage:" in usage.stderr, usage.stderr
    for args, message in (
        (["create", "x", "--percent", "5"], "'x' is not a promo code"),
        (["create", "BOTHKINDS"], "either a percentage or an amount: give one"),
        (["create", "NOCUR", "--amount", "5"], "an amount off needs its currency"),
        (["create", "BADAMT", "--amount", "5.555", "--currency", "USD"], "at most two decimals"),
        (["create", "WHEN", "--percent", "5", "--expires", "soon"], "'soon' is not an expiry"),
        (["create", "NOPLAN", "--percent", "5", "--plan", "gold"], "unknown plan 'gold'"),
        (["create", "FREEPLAN", "--percent", "5", "--plan", "free"], "the Free plan is not sold"),
        (["disable", "MISSING"], "no promo code MISSING"),
        (["show", "MISSING"], "no promo code MISSING"),
    ):
        bad = cli(cli_env, *args)
        assert bad.returncode != 0, (args, bad.stdout)
        assert "Traceback" not in bad.stderr
        assert bad.stderr.startswith("labyard: ") and message in bad.stderr, (args, bad.stderr)
    again = cli(cli_env, "create", "TWICE", "--percent", "5")
    assert again.returncode == 0
    twice = cli(cli_env, "create", "twice", "--percent", "5")
    assert twice.returncode == 4 and "promo code TWICE exists already" in twice.stderr


HOSTILE = [
    "\x00",
    "x" * 5000,
    "ünï💥\u202e",
    "' OR '1'='1",
    "1e999999",
    "NaN",
    "-0",
    "0001-01-01T00:00+14:00",
]


async def test_odd_input_from_an_admin_is_refused_without_a_server_error(shop: Shop) -> None:
    _, boss = shop.account(role="admin")
    fields = ("code", "amount", "currency", "expires", "note")
    async with boss:
        for value in HOSTILE:
            for field in fields:
                body: dict[str, Any] = {"code": "ODD1", "amount": "1", "currency": "USD"}
                body.pop("amount" if field == "code" else "", None)
                body |= {field: value}
                if field != "amount" and "amount" not in body:
                    body["percent"] = 5
                r = await boss.post("/api/admin/promos", json=body)
                assert r.status_code < 500, (field, value, r.text)
                if r.status_code == 201:
                    assert (
                        await boss.post(f"/api/admin/promos/{r.json()['code']}/disable")
                    ).status_code == 200
                    with shop.labyard.db.session() as session:
                        row = session.scalar(
                            select(PromoCodeRow).where(PromoCodeRow.code == r.json()["code"])
                        )
                        session.delete(row)
            quoted = quote(value[:100], safe="")
            for path in (f"/api/admin/promos/{quoted}", f"/api/pricing?seats={quoted[:20]}"):
                assert (await boss.get(path)).status_code < 500, (path, value)
            checkout = await buy(boss, value[:40])
            assert checkout.status_code == 422, (value, checkout.text)
