"""What an invoice says, worked out once when it is issued and stored as it is (the
`content` of its row, plain JSON): seller, buyer, lines, discounts, tax per rate, totals.

Amounts are integers in the currency's minor unit (cents). Tax comes from the payment
provider when it reported some (Stripe Tax: a per-rate breakdown, or a tax amount above
zero); otherwise from the operator's rate (LABYARD_TAX_RATE_PERCENT), which plan prices
include: the buyer paid the price, so the invoice's total is the price and the tax is the
part of it that `rate / (100 + rate)` gives. A credit note for a whole refund is its invoice
with every amount negated (`credit_note`); one for part of it (`partial_credit_note`) has one
line for the amount refunded and each tax rate's share of it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from labyard.types import InvoiceKind


@dataclass(frozen=True)
class Party:
    """A seller or a buyer, as the invoice prints them."""

    name: str
    address: str = ""
    """One line per line."""
    country: str = ""
    """ISO 3166-1 alpha-2, or '' when not known."""
    vat_id: str = ""
    email: str = ""


@dataclass(frozen=True)
class TaxPart:
    """Tax at one rate, as a provider reported it."""

    amount: int
    rate: Decimal | None = None
    """Percent; None when the provider did not say."""
    taxable: int | None = None
    inclusive: bool | None = None
    name: str = ""
    """The provider's name for it (`VAT`, `Sales Tax`), or ''."""


@dataclass(frozen=True)
class Reported:
    """What a payment provider said about one payment; None: it did not say."""

    currency: str | None = None
    subtotal: int | None = None
    """Before discounts and before tax it added on top."""
    discount: int | None = None
    tax: int | None = None
    total: int | None = None
    """What was paid."""
    taxes: tuple[TaxPart, ...] = ()
    buyer: Party | None = None
    """Whom the provider collected the payment from (its checkout's name, address, tax ID)."""
    period: tuple[datetime, datetime] | None = None
    provider_invoice_id: str | None = None
    charge_id: str | None = None
    payment_intent_id: str | None = None


@dataclass(frozen=True)
class Line:
    description: str
    quantity: int
    amount: int
    """The line's total; `unit_amount` is this over the quantity."""
    period: str = ""

    def to_json(self) -> dict[str, Any]:
        unit = self.amount // self.quantity if self.quantity else self.amount
        return {**asdict(self), "unit_amount": unit}


@dataclass(frozen=True)
class Taxes:
    """How to tax an invoice without provider figures: the operator's rate, inclusive."""

    rate: Decimal = Decimal(0)
    label: str = "VAT"


@dataclass(frozen=True)
class Draft:
    """Everything an invoice says but its number and date."""

    seller: Party
    buyer: Party
    currency: str
    lines: list[Line]
    discounts: list[Line] = field(default_factory=list)
    """Negative amounts."""
    references: dict[str, str | None] = field(default_factory=dict)
    """Order id, the provider's invoice id, when it was paid, and the like."""


def percent(rate: Decimal) -> str:
    """`20`, `7.7`, `0`: a rate as invoices print it."""
    text = format(rate.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _tax_line(label: str, part: TaxPart, net: int) -> dict[str, Any]:
    rate = percent(part.rate) if part.rate is not None else None
    name = part.name or label
    return {
        "label": f"{name} {rate}%" if rate is not None else name,
        "rate": rate,
        "inclusive": bool(part.inclusive),
        "taxable": part.taxable if part.taxable is not None else net,
        "amount": part.amount,
    }


def _grouped(parts: Iterable[TaxPart]) -> list[TaxPart]:
    """One part per (rate, inclusive, name): an invoice shows one tax line per rate."""
    groups: dict[tuple[Decimal | None, bool, str], TaxPart] = {}
    for part in parts:
        key = (part.rate, bool(part.inclusive), part.name)
        seen = groups.get(key)
        if seen is None:
            groups[key] = part
            continue
        both = seen.taxable is not None and part.taxable is not None
        taxable = (seen.taxable or 0) + (part.taxable or 0) if both else None
        groups[key] = replace(seen, amount=seen.amount + part.amount, taxable=taxable)
    return list(groups.values())


def _provider_taxes(reported: Reported, subtotal: int) -> list[TaxPart] | None:
    """The provider's tax parts, or None when it computed none (a bare zero is no tax
    computation: Stripe reports `amount_tax: 0` when Stripe Tax is off)."""
    total = reported.total if reported.total is not None else subtotal
    inclusive = total == subtotal  # tax added on top would have raised the total
    if reported.taxes:
        return _grouped(
            part if part.inclusive is not None else replace(part, inclusive=inclusive)
            for part in reported.taxes
        )
    if not reported.tax:
        return None
    net = total - reported.tax
    rate = (Decimal(reported.tax) * 100 / net).quantize(Decimal("0.01")) if net > 0 else None
    return [TaxPart(reported.tax, rate, net, inclusive)]


def _operator_tax(taxes: Taxes, total: int) -> TaxPart:
    rate = taxes.rate
    amount = int((Decimal(total) * rate / (100 + rate)).quantize(Decimal(1), ROUND_HALF_UP))
    return TaxPart(amount, rate, total - amount, True, taxes.label)


def compose(
    kind: str, number: str, issued_at: datetime, draft: Draft, reported: Reported, taxes: Taxes
) -> dict[str, Any]:
    """The stored content of a new invoice."""
    subtotal = sum(line.amount for line in draft.lines) + sum(d.amount for d in draft.discounts)
    parts = _provider_taxes(reported, subtotal)
    if parts is None:
        parts = [_operator_tax(taxes, subtotal)]
    added = sum(part.amount for part in parts if not part.inclusive)
    total = subtotal + added
    tax = sum(part.amount for part in parts)
    return {
        "kind": kind,
        "number": number,
        "issued_at": issued_at.isoformat(),
        "currency": draft.currency.upper(),
        "seller": asdict(draft.seller),
        "buyer": asdict(draft.buyer),
        "lines": [line.to_json() for line in draft.lines],
        "discounts": [line.to_json() for line in draft.discounts],
        "subtotal": subtotal,
        "taxes": [_tax_line(taxes.label, part, total - tax) for part in parts],
        "tax": tax,
        "total": total,
        "references": draft.references,
        "credits": None,
    }


def _negated(entries: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{**entry, **{key: -entry[key] for key in keys if entry.get(key)}} for entry in entries]


def credit_note(invoice: dict[str, Any], number: str, issued_at: datetime) -> dict[str, Any]:
    """A credit note for `invoice` (its content): the same parties and lines, every amount
    negated, and a reference to the invoice."""
    note = copy.deepcopy(invoice)
    note.update(
        kind=InvoiceKind.CREDIT_NOTE.value,
        number=number,
        issued_at=issued_at.isoformat(),
        lines=_negated(note["lines"], ("amount", "unit_amount")),
        discounts=_negated(note["discounts"], ("amount", "unit_amount")),
        taxes=_negated(note["taxes"], ("amount", "taxable")),
        subtotal=-note["subtotal"],
        tax=-note["tax"],
        total=-note["total"],
        credits={"number": invoice["number"], "issued_at": invoice["issued_at"]},
    )
    return note


def partial_credit_note(
    invoice: dict[str, Any], number: str, issued_at: datetime, amount: int
) -> dict[str, Any]:
    """A credit note for `amount` (minor units, 0 < amount < the invoice's total) of what
    `invoice` charged: one line, and each of its tax lines scaled by amount / total (so the
    note's tax is the refunded part's tax)."""
    whole = invoice["total"]
    taxes = [
        {
            **line,
            "taxable": -_share(line["taxable"], amount, whole),
            "amount": -_share(line["amount"], amount, whole),
        }
        for line in invoice["taxes"]
    ]
    added = sum(line["amount"] for line in taxes if not line["inclusive"])
    refunded = {
        "description": f"Partial refund of invoice {invoice['number']}",
        "quantity": 1,
        "amount": -amount - added,
        "unit_amount": -amount - added,
        "period": "",
    }
    note = copy.deepcopy(invoice)
    note.update(
        kind=InvoiceKind.CREDIT_NOTE.value,
        number=number,
        issued_at=issued_at.isoformat(),
        lines=[refunded],
        discounts=[],
        taxes=taxes,
        subtotal=refunded["amount"],
        tax=sum(line["amount"] for line in taxes),
        total=-amount,
        credits={"number": invoice["number"], "issued_at": invoice["issued_at"]},
    )
    return note


def _share(value: int, part: int, whole: int) -> int:
    """`value` x part / whole, rounded half up."""
    return int((Decimal(value) * part / whole).quantize(Decimal(1), ROUND_HALF_UP))
