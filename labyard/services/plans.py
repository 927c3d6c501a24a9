"""Plans: what an account may run at once, for how long, and how big."""

from __future__ import annotations

from dataclasses import dataclass

from labyard.errors import InvalidInput, LimitExceeded
from labyard.manifest import Manifest


@dataclass(frozen=True)
class Plan:
    name: str
    title: str
    concurrent_playgrounds: int
    max_lifetime_s: int
    """Longest a playground may live, extensions included."""
    machines_per_playground: int
    price_per_month_usd: int


PLANS: dict[str, Plan] = {
    "free": Plan("free", "Free", 1, 3600, 3, 0),
    "premium": Plan("premium", "Premium", 5, 8 * 3600, 5, 15),
}


def plan_named(name: str) -> Plan:
    try:
        return PLANS[name]
    except KeyError:
        raise InvalidInput(f"unknown plan {name!r} (plans: {', '.join(PLANS)})") from None


def check_start(plan: Plan, manifest: Manifest, running: int, lifetime_s: int) -> None:
    """Raise LimitExceeded, with a message that says what to do, when a start is over plan."""
    if running >= plan.concurrent_playgrounds:
        raise LimitExceeded(
            f"the {plan.title} plan runs {plan.concurrent_playgrounds} playground(s) at a time; "
            "destroy one first"
        )
    if len(manifest.machines) > plan.machines_per_playground:
        raise LimitExceeded(
            f"{manifest.name!r} has {len(manifest.machines)} machines; the {plan.title} plan "
            f"allows {plan.machines_per_playground} per playground"
        )
    if lifetime_s > plan.max_lifetime_s:
        raise LimitExceeded(
            f"a lifetime of {lifetime_s} s is over the {plan.title} plan's {plan.max_lifetime_s} s"
        )
