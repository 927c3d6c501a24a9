"""Billing: orders, the payment providers behind one seam, and the webhook inbox.

orders.py          orders, checkout, the manual "mark paid", what a paid order grants
quotes.py          what an order costs: country price, group discount, promo code
promos.py          promo codes: made by admins, reserved at checkout, redeemed when paid
money.py           minor units in, major units out
provider.py        the provider seam (checkout, portal link, webhook -> typed event)
stripe_provider.py Stripe on the official `stripe` package
manual.py          invoices by hand
signature.py       Stripe-Signature verification
webhooks.py        the inbox: verify, store durably, process once
stripe_events.py   what each Stripe event does
profile.py         the buyer's billing profile (name, address, country, VAT ID)
invoices.py        invoices and credit notes: issued once, numbered without gaps, never changed
invoice_numbers.py the per-year number series and their counters
invoice_content.py what an invoice says: parties, lines, tax per rate, totals
invoice_pdf.py     its PDF, drawn from what was stored
stripe_invoicing.py what Stripe's events issue: first invoices, renewals, credit notes
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from labyard.services.accounts import User
from labyard.services.billing.invoices import Invoice, Invoices
from labyard.services.billing.manual import ManualProvider
from labyard.services.billing.orders import Order, Orders
from labyard.services.billing.profile import EMPTY, BillingProfile, Profiles
from labyard.services.billing.promos import Promos
from labyard.services.billing.provider import Provider
from labyard.services.billing.stripe_provider import StripeProvider
from labyard.services.billing.webhooks import Received, Webhooks
from labyard.services.entitlements import Entitlements
from labyard.services.plans import PlanBook
from labyard.services.pricing import load_pricing
from labyard.settings import Settings
from labyard.store import Database

__all__ = [
    "Billing",
    "BillingProfile",
    "BillingSummary",
    "Invoice",
    "Invoices",
    "Order",
    "Orders",
    "Received",
    "Webhooks",
]


@dataclass(frozen=True)
class BillingSummary:
    """What the account page's Billing section shows."""

    plan: str
    plan_title: str
    ends_at: datetime | None
    """When the current plan's grants in force end (None: no end, or the default plan)."""
    orders: list[Order]
    portal: bool
    """Whether "Manage subscription" has a provider portal to go to."""
    invoices: list[Invoice] = field(default_factory=list)
    """Invoices and credit notes, newest first."""
    profile: BillingProfile = EMPTY
    """Whom invoices are made out to."""

    def to_json(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "plan_title": self.plan_title,
            "ends_at": self.ends_at.isoformat() if self.ends_at else None,
            "orders": [order.to_json() for order in self.orders],
            "portal": self.portal,
            "invoices": [invoice.to_json() for invoice in self.invoices],
            "profile": self.profile.to_json(),
        }


def providers_for(settings: Settings) -> tuple[dict[str, Provider], str]:
    """(providers by name, the one new checkouts use): Stripe when its key is set."""
    providers: dict[str, Provider] = {"manual": ManualProvider()}
    if settings.billing.stripe_secret_key or settings.billing.stripe_webhook_secret:
        providers["stripe"] = StripeProvider(
            settings.billing.stripe_secret_key,
            settings.billing.stripe_webhook_secret,
            settings.billing.stripe_api_base,
        )
    return providers, "stripe" if settings.billing.stripe_secret_key else "manual"


class Billing:
    def __init__(
        self, settings: Settings, db: Database, plans: PlanBook, entitlements: Entitlements
    ) -> None:
        providers, checkout = providers_for(settings)
        self.plans = plans
        self.entitlements = entitlements
        self.pricing = load_pricing(settings.data_dir, plans)
        """pricing.yaml: a file that does not validate stops the instance here."""
        self.promos = Promos(db, plans)
        self.profiles = Profiles(db)
        self.invoices = Invoices(settings, db, plans)
        self.orders = Orders(
            db, plans, entitlements, providers, checkout, self.pricing, self.invoices
        )
        self.webhooks = Webhooks(db, entitlements, providers, self.invoices)

    def summary(self, user: User) -> BillingSummary:
        plan = self.entitlements.effective(user.id)
        now = datetime.now(UTC)
        ends = [
            grant.ends_at
            for grant in self.entitlements.list(user.id)
            if grant.plan == plan.name and grant.in_force(now)
        ]
        ends_at = None if None in ends or not ends else max(e for e in ends if e is not None)
        return BillingSummary(
            plan.name,
            plan.title,
            ends_at,
            self.orders.list(user),
            self.orders.has_portal(user),
            self.invoices.list(user),
            self.profiles.get(user),
        )
