"""The payment provider seam: start a checkout, link to the customer's portal, turn a webhook
into a typed event. Everything provider-specific (its API, its signature scheme, its
exceptions) stays behind it; orders.py and webhooks.py act on what it returns.

    Provider
    ├── StripeProvider   stripe_provider.py: Checkout Sessions, billing portal, signed webhooks
    └── ManualProvider   manual.py: the operator invoices by hand and an admin marks orders paid
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class CheckoutRequest:
    """What to sell: one order's line. `unit_amount` is in the currency's minor unit."""

    order_id: str
    plan: str
    plan_title: str
    kind: str
    """`subscription`, `lifetime` or `seats` (OrderKind)."""
    interval: str
    """`monthly`, `yearly` or `lifetime`."""
    quantity: int
    currency: str
    unit_amount: int
    account_id: int
    email: str
    success_url: str
    cancel_url: str
    provider_promotions: bool = True
    """Whether the provider may offer its own promotion codes: only for an order at the
    full base price, so they never stack on a country price or a labyard discount."""


@dataclass(frozen=True)
class CheckoutStarted:
    url: str
    """Where to send the buyer's browser."""
    session_id: str | None = None
    """The provider's id of the checkout, when it has one."""


@dataclass(frozen=True)
class WebhookEvent:
    """One verified provider event. `object` is the event's subject (a checkout session, a
    subscription, an invoice, a charge) as the provider sent it."""

    provider: str
    id: str
    type: str
    created: datetime
    object: dict[str, Any]
    payload: dict[str, Any]
    """The whole event, kept in the inbox (never logged)."""


class Provider(Protocol):
    name: str

    def checkout(self, request: CheckoutRequest) -> CheckoutStarted:
        """Start paying for an order; ProviderFailure if the provider cannot."""
        ...

    def portal(self, customer_id: str, return_url: str) -> str:
        """A link where the customer manages their subscription (card, cancel, invoices)."""
        ...

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """Verify and parse a webhook request; BadWebhook if it is not genuine and well formed."""
        ...
