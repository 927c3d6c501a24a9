"""Amounts: integer minor units (cents) inside, major units with two decimals outside.
(Zero-decimal currencies such as JPY are not handled yet: see docs/billing.md.)"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from labyard.errors import InvalidInput

CENT = Decimal("0.01")


def minor_units(amount: Decimal) -> int:
    """15.00 -> 1500 (plans.yaml prices have at most two decimals)."""
    return int((amount * 100).to_integral_value(ROUND_HALF_UP))


def parse_amount(text: str) -> int:
    """`5`, `5.00`, `4.99` (major units, at most two decimals, above zero) -> minor units."""
    try:
        amount = Decimal(text.strip())
    except InvalidOperation:
        raise InvalidInput(f"{text!r} is not an amount; write e.g. 5 or 4.99") from None
    if not amount.is_finite() or amount <= 0:
        raise InvalidInput(f"{text!r} is not an amount above zero with at most two decimals")
    if amount >= 10**9:
        raise InvalidInput(f"{text!r} is too large an amount")
    if amount != amount.quantize(CENT):
        raise InvalidInput(f"{text!r} is not an amount above zero with at most two decimals")
    return minor_units(amount)


def major(amount: int, currency: str) -> str:
    """1500, USD -> `15.00 USD`."""
    return f"{Decimal(amount) / 100:.2f} {currency}"
