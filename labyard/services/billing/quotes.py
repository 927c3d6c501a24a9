"""Quotes: what one order costs, from (plan, interval, seats, country, promo code).

- A plan for oneself is priced for the buyer's country (pricing.yaml): the tier's hand-set
  local price when there is one for the country's currency, else the base price (plans.yaml)
  times the tier's multiplier, rounded to whole units of the currency (half up; under one
  unit, to the cent). A tier whose multiplier is 1 sells at the base price exactly.
- Team seats get no country price: the base price, less the group discount ladder's step.
- Discounts do not stack: of the country price (or the group discount) and a promo code,
  the one that is better for the buyer applies. A promo code that is not better is not
  used (and not used up); the quote says so in `note`. A promo code applies to the base
  price, in the plan's currency.

Every unit costs `unit_amount` and the total is `unit_amount * quantity`, so what Stripe is
sent (an inline price and a quantity) adds up to the order's amount exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from labyard.errors import InvalidInput, PromoRefused
from labyard.services.billing.money import major, minor_units
from labyard.services.billing.promos import PromoTerms
from labyard.services.plans import Plan
from labyard.services.pricing import Pricing


@dataclass(frozen=True)
class Line:
    """A discount: what it is, and what it takes off the order (positive minor units)."""

    kind: str
    """`promo` or `group`."""
    label: str
    amount: int

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "label": self.label, "amount": -self.amount}


@dataclass(frozen=True)
class Quote:
    plan: str
    plan_title: str
    interval: str
    quantity: int
    country: str | None
    """The buyer's country, when known."""
    tier: int | None
    """The country tier that priced it; None: not country-priced (team seats, or a promo
    code that was better for the buyer)."""
    currency: str
    base_unit_amount: int
    """The plan's price in plans.yaml, in `base_currency`."""
    base_currency: str
    list_unit_amount: int
    """Each unit before discounts: the country price (or the base price)."""
    unit_amount: int
    """Each unit after discounts: what the provider is asked for."""
    discounts: tuple[Line, ...] = ()
    promo_code: str | None = None
    """The code that applies (None: none given, or it was not the better deal)."""
    multiplier: Decimal = Decimal(1)
    """The tier's multiplier (1 when not country-priced)."""
    local: bool = False
    """A hand-set local price (pricing.yaml), not the multiplier."""
    note: str = ""

    @property
    def total(self) -> int:
        return self.unit_amount * self.quantity

    @property
    def discount(self) -> int:
        return sum(line.amount for line in self.discounts)

    @property
    def full_price(self) -> bool:
        """At the base price, with no discount of any kind (a provider's own promotion codes
        may then be offered without stacking on ours)."""
        return (
            not self.discounts
            and self.currency == self.base_currency
            and self.unit_amount == self.base_unit_amount
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "plan_title": self.plan_title,
            "interval": self.interval,
            "quantity": self.quantity,
            "country": self.country,
            "tier": self.tier,
            "currency": self.currency,
            "base_unit_amount": self.base_unit_amount,
            "base_currency": self.base_currency,
            "list_unit_amount": self.list_unit_amount,
            "unit_amount": self.unit_amount,
            "discounts": [line.to_json() for line in self.discounts],
            "discount": self.discount,
            "total": self.total,
            "promo_code": self.promo_code,
            "multiplier": str(self.multiplier),
            "local": self.local,
            "note": self.note,
            "display": major(self.total, self.currency),
        }


def base_price(plan: Plan, interval: str) -> int:
    price: Decimal | None = getattr(plan.prices, interval, None)
    if price is None or price <= 0:
        raise InvalidInput(f"the {plan.title} plan is not sold {interval}")
    return minor_units(price)


def rounded(base: int, multiplier: Decimal) -> int:
    """base * multiplier, to whole units of the currency (half up), or to the cent when
    that is under one unit; exactly `base` for a multiplier of 1."""
    if multiplier == 1:
        return base
    exact = Decimal(base) * multiplier
    if exact < 100:
        return max(1, int(exact.to_integral_value(ROUND_HALF_UP)))
    return int((exact / 100).to_integral_value(ROUND_HALF_UP)) * 100


def quote(
    pricing: Pricing,
    plan: Plan,
    interval: str,
    country: str | None,
    seats: int | None = None,
    promo: PromoTerms | None = None,
) -> Quote:
    """What `plan` costs `interval` for a buyer in `country` (None: not known), for
    oneself or as `seats`, with `promo` (already checked by promos.check) if given."""
    base = base_price(plan, interval)
    currency = plan.prices.currency
    start = Quote(
        plan=plan.name,
        plan_title=plan.title,
        interval=interval,
        quantity=seats or 1,
        country=country,
        tier=None,
        currency=currency,
        base_unit_amount=base,
        base_currency=currency,
        list_unit_amount=base,
        unit_amount=base,
    )
    own = _group_price(pricing, start) if seats is not None else _country_price(pricing, start)
    if promo is None:
        return own
    promo_unit = _promo_unit(start, promo)
    if _share(promo_unit, start) < _share(own.unit_amount, own):
        line = Line("promo", f"promo code {promo.code}", (base - promo_unit) * start.quantity)
        return replace(start, unit_amount=promo_unit, discounts=(line,), promo_code=promo.code)
    better = "the group discount" if seats is not None else "your country's price"
    return replace(own, note=f"{better} is better than promo code {promo.code}: it was not used")


def _share(unit: int, quote: Quote) -> Decimal:
    """The fraction of the base price a unit costs. A local price counts as its tier's
    multiplier: its currency cannot be compared with the base one without a rate."""
    if quote.local:
        return quote.multiplier
    return Decimal(unit) / Decimal(quote.base_unit_amount)


def _country_price(pricing: Pricing, start: Quote) -> Quote:
    tier = pricing.tier_of(start.country)
    multiplier = pricing.tiers[tier].multiplier
    local = pricing.local_price(tier, start.country, start.plan, start.interval)
    currency, unit = start.currency, rounded(start.base_unit_amount, multiplier)
    if local is not None:
        currency, unit = local[0], minor_units(local[1])
    return replace(
        start,
        tier=tier,
        multiplier=multiplier,
        currency=currency,
        list_unit_amount=unit,
        unit_amount=unit,
        local=local is not None,
    )


def _group_price(pricing: Pricing, start: Quote) -> Quote:
    step = pricing.group_discount(start.quantity)
    if step is None:
        return start
    unit = _percent_off(start.base_unit_amount, step.percent)
    label = f"group discount: {step.percent} % off from {step.seats} seats"
    line = Line("group", label, (start.base_unit_amount - unit) * start.quantity)
    return replace(start, unit_amount=unit, discounts=(line,))


def _percent_off(unit: int, percent: int) -> int:
    kept = Decimal(unit) * (100 - percent) / 100
    return int(kept.to_integral_value(ROUND_HALF_UP))


def _promo_unit(start: Quote, promo: PromoTerms) -> int:
    """A unit's price with the code, or PromoRefused if it cannot apply to this price."""
    if promo.percent is not None:
        return _percent_off(start.base_unit_amount, promo.percent)
    if promo.currency != start.base_currency:
        raise PromoRefused(
            f"promo code {promo.code} takes off {promo.currency}, and the {start.plan_title} "
            f"plan is priced in {start.base_currency}",
            reason="promo_wrong_currency",
        )
    unit = start.base_unit_amount - (promo.amount_off or 0)
    if unit <= 0:
        raise PromoRefused(
            f"promo code {promo.code} takes off more than the {start.plan_title} plan costs "
            f"{start.interval}",
            reason="promo_not_for_plan",
        )
    return unit
