"""Invoices and credit notes. Each is issued in the transaction that records its payment
or refund, numbered without gaps (invoice_numbers.py), stored with everything it says
(invoice_content.py) and never changed: invoice_pdf.py draws the PDF from what was stored,
so a later edit of the billing profile or of the seller's settings changes only invoices
issued after it.

What issues one, once however often it is reported (the row's `once_key`):
- an order paid (an admin marks a manual order paid; Stripe's checkout completes): the
  order's first invoice, `order:<order id>`;
- a subscription's renewal (Stripe's `invoice.paid` for a later period): one per provider
  invoice, `<provider>:<invoice id>`;
- a refund: a credit note for the invoice of the refunded payment, `credit:<invoice row>`.

Buyers see their own; another account's invoice is NotFound, like one that does not exist.
Admins see every one.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from labyard.errors import Forbidden, NotFound
from labyard.services.accounts import User
from labyard.services.billing import invoice_numbers
from labyard.services.billing.invoice_content import (
    Draft,
    Line,
    Party,
    Reported,
    Taxes,
    compose,
    credit_note,
    partial_credit_note,
)
from labyard.services.billing.invoice_pdf import render
from labyard.services.billing.periods import add_interval
from labyard.services.billing.profile import profile_in
from labyard.services.plans import PlanBook
from labyard.settings import Settings
from labyard.store import Database, InvoiceRow, OrderRow, UserRow
from labyard.types import InvoiceKind, OrderKind, Role

MAX_NUMBER = 32
"""The longest invoice number (`CN-2026-000001` is 14)."""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Invoice:
    """An issued invoice or credit note, as lists show it (the PDF has the rest)."""

    number: str
    kind: str
    account_id: int | None
    order_id: str | None
    issued_at: datetime
    currency: str
    total: int
    tax: int
    buyer: str
    credits: str | None
    """A credit note's invoice number."""

    @property
    def pdf_url(self) -> str:
        return f"/api/billing/invoices/{self.number}.pdf"

    def to_json(self, *, admin: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "number": self.number,
            "kind": self.kind,
            "order_id": self.order_id,
            "issued_at": self.issued_at.isoformat(),
            "currency": self.currency,
            "total": self.total,
            "tax": self.tax,
            "credits": self.credits,
            "pdf": self.pdf_url,
        }
        if admin:
            data.update(account_id=self.account_id, buyer=self.buyer)
        return data


def invoice_of(row: InvoiceRow) -> Invoice:
    credits = row.content.get("credits") or {}
    return Invoice(
        row.number,
        row.kind,
        row.account_id,
        row.order_id,
        row.issued_at,
        row.currency,
        row.total,
        row.tax,
        str(row.content.get("buyer", {}).get("name", "")),
        credits.get("number"),
    )


def _discount_label(order: OrderRow) -> str:
    """What took `order.discount` off (quotes.py: a promo code, or the seats' group
    discount; they never stack)."""
    if order.promo_code:
        return f"Promo code {order.promo_code}"
    return "Group discount" if order.kind == OrderKind.SEATS else "Discount"


def _period(start: datetime, end: datetime | None) -> str:
    return f"{start:%Y-%m-%d} to {end:%Y-%m-%d}" if end is not None else ""


class Invoices:
    def __init__(self, settings: Settings, db: Database, plans: PlanBook) -> None:
        self.db = db
        self.plans = plans
        self.seller = Party(
            settings.billing.seller_name,
            settings.billing.seller_address,
            "",
            settings.billing.seller_vat_id,
            settings.billing.seller_email,
        )
        self.taxes = Taxes(settings.billing.tax_rate_percent, settings.billing.tax_label)

    # -- issuing, in the caller's transaction ---------------------------------------------

    def order_paid(
        self, session: Session, order: OrderRow, reported: Reported | None = None
    ) -> InvoiceRow | None:
        """The first invoice of a paid order (None: issued already)."""
        reported = reported or Reported()
        start = order.paid_at or _now()
        period = reported.period or (start, add_interval(start, order.interval))
        return self._issue(session, f"order:{order.id}", order, reported, period)

    def renewal_paid(
        self, session: Session, order: OrderRow, reported: Reported
    ) -> InvoiceRow | None:
        """A renewal's invoice, once per provider invoice (None: issued already, or the
        provider invoice is the order's first, which `order_paid` covers)."""
        provider_id = reported.provider_invoice_id
        if provider_id is None:
            return None
        key = f"{order.provider}:{provider_id}"
        issued = select(InvoiceRow.id).where(
            or_(InvoiceRow.once_key == key, InvoiceRow.provider_invoice_id == provider_id)
        )
        if session.scalar(issued.limit(1)) is not None:
            return None
        now = _now()
        period = reported.period or (now, add_interval(now, order.interval))
        return self._issue(session, key, order, reported, period)

    def refunded(
        self,
        session: Session,
        order: OrderRow,
        reported: Reported | None = None,
        refunded_amount: int | None = None,
    ) -> InvoiceRow | None:
        """A credit note for the invoice of the refunded payment: the one the provider's
        refund names (its invoice, charge or payment), else the order's newest one not
        wholly credited yet. `refunded_amount`: how much of that payment has been refunded
        so far (a partial refund; a provider reports the running sum), None: all of it.
        The note credits what no earlier note did. None: nothing (more) to credit."""
        invoice = self._refunded_invoice(session, order, reported or Reported())
        if invoice is None:
            return None
        credited = self._credited(session, invoice)
        remaining = invoice.total - credited
        amount = remaining if refunded_amount is None else refunded_amount - credited
        amount = min(amount, remaining)
        if amount <= 0:
            return None
        kind = InvoiceKind.CREDIT_NOTE
        if amount == invoice.total:

            def content(number: str, at: datetime) -> dict[str, Any]:
                return credit_note(invoice.content, number, at)

            key = f"credit:{invoice.id}"
        else:

            def content(number: str, at: datetime) -> dict[str, Any]:
                return partial_credit_note(invoice.content, number, at, amount)

            key = f"credit:{invoice.id}:{credited + amount}"  # the running sum credited
        row = self._store(session, kind, key, order, content)
        if row is not None:
            row.credited_id = invoice.id
        return row

    @staticmethod
    def _credited(session: Session, invoice: InvoiceRow) -> int:
        """How much of `invoice` its credit notes credit (a positive amount)."""
        notes = select(func.coalesce(func.sum(InvoiceRow.total), 0)).where(
            InvoiceRow.credited_id == invoice.id
        )
        return -int(session.scalar(notes) or 0)

    def _refunded_invoice(
        self, session: Session, order: OrderRow, reported: Reported
    ) -> InvoiceRow | None:
        query = select(InvoiceRow).where(
            InvoiceRow.order_id == order.id, InvoiceRow.kind == InvoiceKind.INVOICE
        )
        invoices = list(session.scalars(query.order_by(InvoiceRow.id.desc())))
        refs = (
            ("provider_invoice_id", reported.provider_invoice_id),
            ("charge_id", reported.charge_id),
            ("payment_intent_id", reported.payment_intent_id),
        )
        for invoice in invoices:
            if any(value is not None and getattr(invoice, c) == value for c, value in refs):
                return invoice
        return next((i for i in invoices if self._credited(session, i) < i.total), None)

    def _issue(
        self,
        session: Session,
        key: str,
        order: OrderRow,
        reported: Reported,
        period: tuple[datetime, datetime | None],
    ) -> InvoiceRow | None:
        def content(number: str, at: datetime) -> dict[str, Any]:
            draft = self._draft(session, order, reported, period)
            return compose(InvoiceKind.INVOICE, number, at, draft, reported, self.taxes)

        row = self._store(session, InvoiceKind.INVOICE, key, order, content)
        if row is not None:
            row.provider_invoice_id = reported.provider_invoice_id
            row.charge_id, row.payment_intent_id = reported.charge_id, reported.payment_intent_id
        return row

    @staticmethod
    def _store(
        session: Session,
        kind: InvoiceKind,
        key: str,
        order: OrderRow,
        content: Callable[[str, datetime], dict[str, Any]],
    ) -> InvoiceRow | None:
        """Issue the `kind` for `key` unless it was issued already: take its number, write
        what it says, add its row (a concurrent twin fails on the once key at commit)."""
        if session.scalar(select(InvoiceRow.id).where(InvoiceRow.once_key == key)) is not None:
            return None
        at = _now()
        sequence = invoice_numbers.take(session, kind, at.year)
        said = content(invoice_numbers.number(kind, at.year, sequence), at)
        row = InvoiceRow(
            number=said["number"],
            kind=kind,
            year=at.year,
            sequence=sequence,
            account_id=order.account_id,
            order_id=order.id,
            once_key=key,
            currency=said["currency"],
            total=said["total"],
            tax=said["tax"],
            issued_at=at,
            content=said,
        )
        session.add(row)
        return row

    def _draft(
        self,
        session: Session,
        order: OrderRow,
        reported: Reported,
        period: tuple[datetime, datetime | None],
    ) -> Draft:
        charged = reported.subtotal if reported.subtotal is not None else order.amount
        line = Line(
            self._description(order),
            order.quantity,
            charged + order.discount,
            _period(*period) if order.kind != OrderKind.LIFETIME else "",
        )
        discounts = []
        if order.discount:
            discounts.append(Line(_discount_label(order), 1, -order.discount))
        if reported.discount:
            discounts.append(Line("Promotion code at checkout", 1, -reported.discount))
        references = {
            "order": order.id,
            "provider": order.provider,
            "paid_at": order.paid_at.isoformat() if order.paid_at else None,
            "provider_invoice": reported.provider_invoice_id,
        }
        buyer = self._buyer(session, order, reported)
        currency = order.currency
        return Draft(self.seller, buyer, currency, [line], discounts, references)

    def _description(self, order: OrderRow) -> str:
        plan = self.plans.plans.get(order.plan)
        title = plan.title if plan is not None else order.plan
        what = f"{title} plan, {order.interval}"
        return f"{what}, team seats" if order.kind == OrderKind.SEATS else what

    @staticmethod
    def _buyer(session: Session, order: OrderRow, reported: Reported) -> Party:
        """The account's billing profile as it is now; what the provider collected at
        checkout where the profile says nothing; the account's email always."""
        account = session.get(UserRow, order.account_id)
        email = account.email if account is not None else ""
        profile = profile_in(session, order.account_id)
        collected = reported.buyer or Party("")
        if profile.complete:
            vat_id = profile.vat_id or collected.vat_id
            return Party(profile.name, profile.address, profile.country, vat_id, email)
        name = collected.name or email
        return Party(name, collected.address, collected.country, collected.vat_id, email)

    # -- reading --------------------------------------------------------------------------

    def list(self, user: User) -> builtins.list[Invoice]:
        """The user's own invoices and credit notes, newest first."""
        query = select(InvoiceRow).where(InvoiceRow.account_id == user.id)
        with self.db.session() as session:
            rows = session.scalars(query.order_by(InvoiceRow.issued_at.desc(), InvoiceRow.id))
            return [invoice_of(row) for row in rows]

    def list_all(self, actor: User) -> builtins.list[Invoice]:
        """Every invoice and credit note (admins only), newest first."""
        if actor.role != Role.ADMIN:
            raise Forbidden("only admins may see other accounts' invoices")
        with self.db.session() as session:
            query = select(InvoiceRow).order_by(InvoiceRow.issued_at.desc(), InvoiceRow.id)
            return [invoice_of(row) for row in session.scalars(query)]

    def _content(self, user: User, number: str) -> dict[str, Any]:
        if len(number) > MAX_NUMBER:
            raise NotFound(f"no invoice {number[:MAX_NUMBER]}...")
        with self.db.session() as session:
            row = session.scalar(select(InvoiceRow).where(InvoiceRow.number == number))
            if row is None or (row.account_id != user.id and user.role != Role.ADMIN):
                raise NotFound(f"no invoice {number}")
            return row.content

    def pdf(self, user: User, number: str) -> bytes:
        """The PDF of one of the user's own invoices or credit notes (an admin's: any)."""
        return render(self._content(user, number))
