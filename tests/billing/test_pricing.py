"""Country prices (pricing.yaml): the file and its line-precise errors, a quote per tier,
the pricing page, team seats' group discount, and the card-country check at payment.

Buyers' countries come from their IP address, looked up offline: each test client connects
from a real public address of a block registered to that country (ASGITransport's `client`,
which is what the app sees as `request.client`), the way a visitor from there would. Stripe
is the local stand-in (stand_in.py; Stripe's servers cannot be reached from here), and
webhooks are signed exactly as Stripe signs them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from labyard.errors import SettingsFileError
from labyard.services import Labyard
from labyard.services.billing.quotes import quote, rounded
from labyard.services.geo import country_of
from labyard.services.plans import builtin_plans
from labyard.services.pricing import load_pricing
from labyard.settings import Settings
from labyard.store import OrderRow
from tests.billing.conftest import Shop, _shop
from tests.billing.stand_in import (
    charge_succeeded,
    event,
    session_completed,
    stand_in_stripe,
)
from tests.conftest import IMAGES_DIR

# Addresses of blocks the Regional Internet Registries assign to these countries.
US, DE, JP, BR, IN = "8.8.8.8", "193.99.144.80", "133.1.1.1", "200.147.67.142", "14.139.0.1"
# The built-in tiers (default_pricing.yaml) and premium's prices in them (plans.yaml:
# 15 / 120 / 300 USD), rounded to whole dollars.
PER_TIER = {
    US: ("US", 1, 1500, 12000, 30000),
    DE: ("DE", 2, 1200, 9600, 24000),
    JP: ("JP", 3, 900, 7200, 18000),
    BR: ("BR", 4, 700, 5400, 13500),  # 6.75 -> 7
    IN: ("IN", 5, 500, 3600, 9000),  # 4.50 -> 5
}

LOCAL_PRICES = """\
tiers:
  1: {multiplier: 1}
  5:
    multiplier: 0.30
    local_prices:
      INR:
        premium: {monthly: 399, yearly: 3499}
countries: {IN: 5, NO: 1}
currencies: {IN: INR}
"""


@pytest.fixture
async def local_shop(database_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    """Stripe (the stand-in) with a pricing.yaml that sets INR prices for India."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "pricing.yaml").write_text(LOCAL_PRICES)
    with stand_in_stripe() as stripe:
        found = _shop(database_url, tmp_path, stripe)
        yield found
        found.labyard.close()


def order_row(shop: Shop, order_id: str) -> OrderRow:
    with shop.labyard.db.session() as session:
        row = session.get(OrderRow, order_id)
        assert row is not None
        return row


# -- the file ----------------------------------------------------------------------------


def test_the_addresses_are_where_the_tests_say() -> None:
    assert {address: country_of(address) for address in PER_TIER} == {
        address: expected[0] for address, expected in PER_TIER.items()
    }
    assert country_of("2001:4860:4860::8888") == "US"
    for private in ("127.0.0.1", "10.1.2.3", "192.168.0.9", "192.0.2.10", "::1", "", "nope"):
        assert country_of(private) is None, private


def test_the_builtin_pricing_has_five_tiers_and_the_seat_ladder(tmp_path: Path) -> None:
    pricing = load_pricing(tmp_path, builtin_plans())
    assert {n: t.multiplier for n, t in pricing.tiers.items()} == {
        1: Decimal("1"),
        2: Decimal("0.8"),
        3: Decimal("0.6"),
        4: Decimal("0.45"),
        5: Decimal("0.3"),
    }
    assert set(pricing.countries.values()) == {1, 2, 3, 4, 5}
    assert pricing.tier_of("NO") == 2  # Norway, not YAML's `false`
    assert pricing.tier_of("ZZ") == pricing.tier_of(None) == 1
    assert [(s.seats, s.percent) for s in pricing.group_discounts] == [(5, 10), (20, 20)]
    header = (Path(__file__).parents[2] / "labyard/services/default_pricing.yaml").read_text()
    assert "Netflix" in header and "early 2025" in header and "17.99" in header


def test_a_pricing_file_that_does_not_validate_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "pricing.yaml"
    path.write_text(
        "default_tier: 7\n"  # 1
        "tiers:\n"  # 2
        "  1: {multiplier: 1}\n"  # 3
        "  2:\n"  # 4
        "    multiplier: -0.5\n"  # 5
        "    local_prices:\n"  # 6
        "      EUR:\n"  # 7
        "        gold: {monthly: 5}\n"  # 8
        "countries:\n"  # 9
        "  DE: 3\n"  # 10
        "  usa: 1\n"  # 11
        "group_discounts:\n"  # 12
        "  - {seats: 10, percent: 10}\n"  # 13
        "  - {seats: 5, percent: 150}\n"  # 14
    )
    with pytest.raises(SettingsFileError) as caught:
        load_pricing(tmp_path, builtin_plans())
    problems = caught.value.problems
    assert f"{path}:5: tiers.2.multiplier: Input should be greater than 0" in problems
    assert any(p.startswith(f"{path}:11: countries.usa") for p in problems), problems
    assert f"{path}:14: group_discounts.1.percent: Input should be less than 100" in problems

    path.write_text(
        "default_tier: 7\n"
        "tiers:\n"
        "  1: {multiplier: 1}\n"
        "  2:\n"
        "    multiplier: 0.5\n"
        "    local_prices:\n"
        "      EUR:\n"
        "        gold: {monthly: 5}\n"
        "        free: {monthly: 1}\n"
        "countries:\n"
        "  DE: 3\n"
        "group_discounts:\n"
        "  - {seats: 10, percent: 10}\n"
        "  - {seats: 5, percent: 15}\n"
    )
    with pytest.raises(SettingsFileError) as caught:
        load_pricing(tmp_path, builtin_plans())
    assert caught.value.problems == [
        f"{path}:1: default_tier: no tier 7 (tiers: 1, 2)",
        f"{path}:11: countries.DE: no tier 3 (tiers: 1, 2)",
        f"{path}:8: tiers.2.local_prices.EUR: no country of tier 2 pays in EUR (see `currencies`)",
        f"{path}:8: tiers.2.local_prices.EUR.gold: unknown plan 'gold' (plans: free, premium)",
        f"{path}:9: tiers.2.local_prices.EUR.free.monthly: the Free plan is not sold monthly",
        f"{path}:14: group_discounts.1.seats: 5 seats: each step must be for more seats than "
        "the last",
    ]
    assert str(caught.value).startswith("invalid pricing file:\n")


def test_an_instance_with_a_bad_pricing_file_does_not_start(tmp_path: Path) -> None:
    (tmp_path / "pricing.yaml").write_text("tiers: {}\n")
    settings = Settings(
        data_dir=tmp_path, images_dir=IMAGES_DIR, database_url=f"sqlite:///{tmp_path}/l.db"
    )
    with pytest.raises(SettingsFileError, match=r"pricing.yaml:1: tiers: "):
        Labyard(settings)


def test_rounding_is_to_whole_units_and_exact_at_the_base_price() -> None:
    assert rounded(1500, Decimal("1")) == 1500
    assert rounded(1499, Decimal("1")) == 1499
    assert rounded(1500, Decimal("0.45")) == 700
    assert rounded(1500, Decimal("0.30")) == 500
    assert rounded(1999, Decimal("0.30")) == 600
    assert rounded(250, Decimal("0.30")) == 75  # under one unit: to the cent


# -- quotes through the API --------------------------------------------------------------


async def test_every_tier_is_quoted_and_charged_its_price(shop: Shop) -> None:
    assert shop.stripe is not None
    for address, (country, tier, monthly, yearly, lifetime) in PER_TIER.items():
        _, client = shop.account(address=address)
        async with client:
            listed = (await client.get("/api/pricing")).json()
            assert (listed["country"], listed["tier"]) == (country, tier)
            amounts = {p["interval"]: (p["unit_amount"], p["currency"]) for p in listed["prices"]}
            assert amounts == {
                "monthly": (monthly, "USD"),
                "yearly": (yearly, "USD"),
                "lifetime": (lifetime, "USD"),
            }, country
            r = await client.post(
                "/api/billing/checkout", json={"plan": "premium", "interval": "yearly"}
            )
            assert r.status_code == 201, r.text
        sent = shop.stripe.last("/v1/checkout/sessions").form
        assert sent["line_items[0][price_data][unit_amount]"] == str(yearly), country
        assert sent["line_items[0][price_data][currency]"] == "usd"
        # Stripe's own promotion codes would stack on a country price: only at full price.
        assert sent["allow_promotion_codes"] == ("true" if tier == 1 else "false"), country
        row = order_row(shop, r.json()["order_id"])
        assert (row.quoted_country, row.price_tier, row.amount) == (country, str(tier), yearly)


async def test_a_visitor_whose_country_is_unknown_pays_the_base_price(shop: Shop) -> None:
    _, client = shop.account(address="10.0.0.7")
    async with client:
        listed = (await client.get("/api/pricing")).json()
        r = await client.post(
            "/api/billing/checkout", json={"plan": "premium", "interval": "monthly"}
        )
    assert (listed["country"], listed["tier"]) == (None, 1)
    assert listed["why"].startswith("Prices differ by country because")
    row = order_row(shop, r.json()["order_id"])
    assert (row.quoted_country, row.price_tier, row.amount, row.currency) == (
        None,
        "1",
        1500,
        "USD",
    )


async def test_hand_set_local_prices_are_charged_in_the_local_currency(local_shop: Shop) -> None:
    assert local_shop.stripe is not None
    _, client = local_shop.account(address=IN)
    async with client:
        listed = (await client.get("/api/pricing")).json()
        page = await client.get("/pricing")
        r = await client.post(
            "/api/billing/checkout", json={"plan": "premium", "interval": "monthly"}
        )
    amounts = {
        p["interval"]: (p["unit_amount"], p["currency"], p["local"]) for p in listed["prices"]
    }
    # monthly and yearly are hand-set; lifetime has no INR price: the multiplier, in USD.
    assert amounts == {
        "monthly": (39900, "INR", True),
        "yearly": (349900, "INR", True),
        "lifetime": (9000, "USD", False),
    }
    assert page.status_code == 200
    assert "399.00 INR" in page.text and 'data-country="IN"' in page.text
    sent = local_shop.stripe.last("/v1/checkout/sessions").form
    assert sent["line_items[0][price_data][currency]"] == "inr"
    assert sent["line_items[0][price_data][unit_amount]"] == "39900"
    row = order_row(local_shop, r.json()["order_id"])
    assert (row.currency, row.amount, row.price_tier) == ("INR", 39900, "5")


async def test_the_pricing_page_shows_the_visitors_price_and_why(shop: Shop) -> None:
    async with shop.client(address=BR) as visitor:
        page = await visitor.get("/pricing")
        home = await visitor.get("/")
    assert page.status_code == 200, page.text
    html = page.text
    assert 'data-country="BR"' in html
    assert (
        '<li class="price" data-interval="monthly" data-currency="USD" data-amount="700">' in html
    )
    assert "7.00 USD" in html and "standard price 15.00 USD" in html
    assert "Prices differ by country because" in html
    assert "Sign up to buy" in html  # signed out
    assert 'href="/pricing"' in home.text  # in the top bar


async def test_buying_from_the_pricing_page_goes_to_stripe_at_the_country_price(
    shop: Shop,
) -> None:
    assert shop.stripe is not None
    _, client = shop.account(address=JP)
    async with client:
        client.cookies.set("labyard_csrf", "t0ken")
        r = await client.post(
            "/pricing/checkout",
            data={"csrf": "t0ken", "plan": "premium", "interval": "monthly", "promo_code": ""},
        )
        bad = await client.post(
            "/pricing/checkout",
            data={"csrf": "t0ken", "plan": "premium", "interval": "monthly", "promo_code": "NOPE"},
        )
    assert r.status_code == 303, r.text
    assert r.headers["location"].startswith(f"{shop.stripe.url}/pay/cs_test_")
    assert (
        shop.stripe.last("/v1/checkout/sessions").form["line_items[0][price_data][unit_amount]"]
        == "900"
    )
    assert bad.status_code == 422 and "there is no promo code NOPE" in bad.text


# -- team seats: the group ladder, never a country price ---------------------------------


async def test_seats_get_the_group_discount_and_no_country_price(shop: Shop) -> None:
    assert shop.stripe is not None
    _, client = shop.account(address=IN)
    async with client:
        listed = (await client.get("/api/pricing?seats=20")).json()
        outcomes = {}
        for seats in (4, 5, 19, 20):
            r = await client.post(
                "/api/billing/checkout",
                json={"plan": "premium", "interval": "monthly", "seats": seats},
            )
            assert r.status_code == 201, r.text
            form = shop.stripe.last("/v1/checkout/sessions").form
            row = order_row(shop, r.json()["order_id"])
            outcomes[seats] = (
                form["line_items[0][price_data][unit_amount]"],
                form["line_items[0][quantity]"],
                row.amount,
                row.discount,
                row.price_tier,
            )
    assert outcomes == {
        4: ("1500", "4", 6000, 0, None),
        5: ("1350", "5", 6750, 750, None),
        19: ("1350", "19", 25650, 2850, None),
        20: ("1200", "20", 24000, 6000, None),
    }
    monthly = next(p for p in listed["prices"] if p["interval"] == "monthly")
    assert listed["tier"] is None
    assert (monthly["unit_amount"], monthly["tier"], monthly["country"]) == (1200, None, "IN")
    assert monthly["discounts"] == [
        {"kind": "group", "label": "group discount: 20 % off from 20 seats", "amount": -6000}
    ]


def test_the_quote_is_the_better_of_the_country_price_and_a_promo_code(tmp_path: Path) -> None:
    from labyard.services.billing.promos import PromoTerms

    plans = builtin_plans()
    pricing = load_pricing(tmp_path, plans)
    premium = plans.get("premium")
    small = PromoTerms("SMALL", 25, None, None)
    big = PromoTerms("BIG", 80, None, None)
    india = quote(pricing, premium, "monthly", "IN", promo=small)
    assert (india.unit_amount, india.tier, india.promo_code) == (500, 5, None)
    assert "better than promo code SMALL" in india.note
    promo = quote(pricing, premium, "monthly", "IN", promo=big)
    assert (promo.unit_amount, promo.tier, promo.promo_code, promo.discount) == (
        300,
        None,
        "BIG",
        1200,
    )
    seats = quote(pricing, premium, "monthly", "IN", seats=20, promo=small)
    assert (seats.unit_amount, seats.promo_code, seats.total) == (1125, "SMALL", 22500)


# -- the card's country, at payment ------------------------------------------------------


async def test_a_card_from_another_country_flags_the_order_and_still_grants(shop: Shop) -> None:
    buyer, client = shop.account(address=IN)
    _, boss = shop.account(role="admin")
    async with client, boss:
        r = await client.post(
            "/api/billing/checkout", json={"plan": "premium", "interval": "monthly"}
        )
        order_id = r.json()["order_id"]
        paid = await shop.deliver(
            event("checkout.session.completed", session_completed(order_id, country="US"))
        )
        assert paid.status_code == 200, paid.text
        assert (await client.get("/api/me")).json()["plan"] == "premium"
        listed = {o["id"]: o for o in (await boss.get("/api/admin/orders")).json()}
        mine = (await client.get(f"/api/billing/orders/{order_id}")).json()
    seen = listed[order_id]
    assert (seen["quoted_country"], seen["card_country"], seen["price_tier"]) == ("IN", "US", "5")
    assert seen["flagged"] is True
    assert seen["flag_reason"] == (
        "card country differs: priced for IN (tier 5), paid with a card from US; "
        "the plan was granted all the same"
    )
    assert "flagged" not in mine and "card_country" not in mine  # for the operator only
    assert [g.plan for g in shop.labyard.entitlements.list(buyer.id)] == ["premium"]


async def test_the_cards_own_country_outweighs_the_billing_address(shop: Shop) -> None:
    _, client = shop.account(address=BR)
    async with client:
        r = await client.post(
            "/api/billing/checkout", json={"plan": "premium", "interval": "lifetime"}
        )
    order_id = r.json()["order_id"]
    # The card arrives first (Stripe sends events in any order), from Brazil; the billing
    # address typed at checkout says Portugal: the card's issuing country counts.
    card = await shop.deliver(event("charge.succeeded", charge_succeeded(order_id, "BR")))
    assert card.status_code == 200, card.text
    done = session_completed(order_id, country="PT", subscription=None)
    assert (await shop.deliver(event("checkout.session.completed", done))).status_code == 200
    row = order_row(shop, order_id)
    assert (row.status, row.card_country, row.flagged, row.flag_reason) == ("paid", "BR", False, "")

    # The other way round: the address flags it, the card (same country as quoted) clears it.
    _, other = shop.account(address=BR)
    async with other:
        r = await other.post(
            "/api/billing/checkout", json={"plan": "premium", "interval": "lifetime"}
        )
    second = r.json()["order_id"]
    done = session_completed(second, country="PT", subscription=None)
    assert (await shop.deliver(event("checkout.session.completed", done))).status_code == 200
    assert order_row(shop, second).flagged is True
    charge = charge_succeeded(second, "BR", charge_id="ch_2")
    assert (await shop.deliver(event("charge.succeeded", charge))).status_code == 200
    row = order_row(shop, second)
    assert (row.card_country, row.flagged, row.charge_id) == ("BR", False, "ch_2")


async def test_orders_not_priced_for_a_country_are_not_flagged(shop: Shop) -> None:
    _, client = shop.account(address=IN)
    async with client:
        seats = await client.post(
            "/api/billing/checkout",
            json={"plan": "premium", "interval": "monthly", "seats": 5},
        )
    order_id = seats.json()["order_id"]
    paid = session_completed(order_id, country="US")
    assert (await shop.deliver(event("checkout.session.completed", paid))).status_code == 200
    row = order_row(shop, order_id)
    assert (row.quoted_country, row.card_country, row.price_tier, row.flagged) == (
        "IN",
        "US",
        None,
        False,
    )
