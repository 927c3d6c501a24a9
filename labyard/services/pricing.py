"""Country prices and the group discount ladder: operator data, like plans.

`<data dir>/pricing.yaml` when it exists, else the built-in `default_pricing.yaml` beside
this module (docs/pricing.md has the format). A country (ISO 3166-1 alpha-2) is in a tier;
a tier is a multiplier of the plans' base prices (plans.yaml), optionally with hand-set
prices in a local currency for its countries that use that currency. A country not listed,
or a visitor whose country is not known, is in `default_tier`. Team seats get no country
price but the group discount ladder. A file that does not validate names the file, line
and field of every problem, and the instance refuses to start (the machinery of plans.py).

What a buyer pays is worked out from this in billing/quotes.py.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from labyard.manifest.models import Name
from labyard.manifest.source import YamlSource, read_yaml
from labyard.services.plans import (
    Money,
    PlanBook,
    Problems,
    _Strict,
    read_operator_file,
    validate_source,
)

BUILTIN = Path(__file__).with_name("default_pricing.yaml")
FILE_NAME = "pricing.yaml"
INTERVALS = ("monthly", "yearly", "lifetime")


def _norway(value: Any) -> Any:
    """YAML 1.1 reads an unquoted `NO:` (Norway) as false: take it back as the country."""
    if isinstance(value, dict):
        return {("NO" if key is False else key): item for key, item in value.items()}
    return value


Country = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
"""ISO 3166-1 alpha-2, upper case: `US`, `IN`."""
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
"""ISO 4217: `USD`, `EUR`."""
TierNumber = Annotated[int, Field(ge=1, le=99)]


class LocalPrices(_Strict):
    """Hand-set prices of one plan in one currency, in major units (`499`, `4.99`)."""

    monthly: Money | None = None
    yearly: Money | None = None
    lifetime: Money | None = None


class Tier(_Strict):
    multiplier: Decimal = Field(gt=0, le=10, max_digits=6, decimal_places=4)
    """Of the base price: 0.45 sells a 15.00 plan at 7 (rounded: see billing/quotes.py)."""
    local_prices: dict[Currency, dict[Name, LocalPrices]] = {}
    """Currency -> plan -> prices, used instead of the multiplier where set."""


class GroupDiscount(_Strict):
    seats: int = Field(ge=2, le=10_000)
    """From this many seats in one order ..."""
    percent: int = Field(gt=0, lt=100)
    """... this much comes off each seat."""


class Pricing(_Strict):
    """A whole pricing file."""

    default_tier: TierNumber = 1
    """The tier of a country not listed, and of a visitor whose country is not known."""
    tiers: dict[TierNumber, Tier] = Field(min_length=1)
    countries: Annotated[dict[Country, TierNumber], BeforeValidator(_norway)] = {}
    currencies: Annotated[dict[Country, Currency], BeforeValidator(_norway)] = {}
    """The currency a country's hand-set local prices are in (only those need one)."""
    group_discounts: list[GroupDiscount] = []
    """The ladder for team seats, smallest step first."""

    def tier_of(self, country: str | None) -> int:
        return self.countries.get(country or "", self.default_tier)

    def local_price(
        self, tier: int, country: str | None, plan: str, interval: str
    ) -> tuple[str, Decimal] | None:
        """(currency, amount) hand-set for the country's currency in its tier, if any."""
        currency = self.currencies.get(country or "")
        prices = self.tiers[tier].local_prices.get(currency or "", {}).get(plan)
        amount: Decimal | None = getattr(prices, interval) if prices is not None else None
        return (currency, amount) if currency and amount is not None else None

    def group_discount(self, seats: int) -> GroupDiscount | None:
        """The largest step of the ladder `seats` reaches (None: below the first)."""
        reached = [step for step in self.group_discounts if seats >= step.seats]
        return reached[-1] if reached else None

    def reference_problems(self, plans: PlanBook) -> Problems:
        known = ", ".join(str(t) for t in self.tiers)
        problems: Problems = []
        if self.default_tier not in self.tiers:
            problems.append((("default_tier",), f"no tier {self.default_tier} (tiers: {known})"))
        for country, tier in self.countries.items():
            if tier not in self.tiers:
                problems.append((("countries", country), f"no tier {tier} (tiers: {known})"))
        for number, tier_ in self.tiers.items():
            problems += self._local_problems(number, tier_, plans)
        previous = 0
        for i, step in enumerate(self.group_discounts):
            if step.seats <= previous:
                message = f"{step.seats} seats: each step must be for more seats than the last"
                problems.append((("group_discounts", i, "seats"), message))
            previous = step.seats
        return problems

    def _local_problems(self, number: int, tier: Tier, plans: PlanBook) -> Problems:
        problems: Problems = []
        for currency, by_plan in tier.local_prices.items():
            where: tuple[int | str, ...] = ("tiers", number, "local_prices", currency)
            users = [c for c, cur in self.currencies.items() if cur == currency]
            if not any(self.tier_of(c) == number for c in users):
                message = f"no country of tier {number} pays in {currency} (see `currencies`)"
                problems.append((where, message))
            for name, prices in by_plan.items():
                if name not in plans.plans:
                    message = f"unknown plan {name!r} (plans: {', '.join(plans.plans)})"
                    problems.append(((*where, name), message))
                    continue
                for interval in INTERVALS:
                    base = getattr(plans.plans[name].prices, interval)
                    if getattr(prices, interval) is not None and not base:
                        message = f"the {plans.plans[name].title} plan is not sold {interval}"
                        problems.append(((*where, name, interval), message))
        return problems


def pricing_from_source(source: YamlSource, plans: PlanBook) -> Pricing:
    """Validate a parsed pricing file against the plans it prices."""
    return validate_source(
        source, Pricing, "pricing file", lambda book: book.reference_problems(plans)
    )


def load_pricing(data_dir: Path, plans: PlanBook) -> Pricing:
    """`<data_dir>/pricing.yaml` when there is one, else the built-in pricing. A file that
    does not validate raises SettingsFileError with every problem, each as file:line: field."""
    return read_operator_file(
        data_dir,
        FILE_NAME,
        "pricing file",
        lambda: pricing_from_source(read_yaml(BUILTIN), plans),
        lambda source: pricing_from_source(source, plans),
    )
