"""Stripe, through the official `stripe` package: Checkout Sessions (subscriptions, lifetime
one-off payments, seat quantities; promotion codes and tax IDs collected), the billing
portal, and webhooks verified with signature.py. Prices are the order's quote (plans.yaml
and pricing.yaml, less labyard's own discounts) as inline `price_data`, so nothing has to
be set up in Stripe's dashboard but the webhook endpoint. Stripe's own promotion codes are
offered only on orders at the full base price, so they never stack on ours.

No `stripe` exception leaves this module: API failures become ProviderFailure (the
message for the buyer, Stripe's detail for the log, the original chained)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import stripe

from labyard.errors import BadWebhook, ProviderFailure
from labyard.services.billing import signature
from labyard.services.billing.provider import CheckoutRequest, CheckoutStarted, WebhookEvent

INTERVALS = {"monthly": "month", "yearly": "year"}
TIMEOUT_S = 20.0


class StripeProvider:
    name = "stripe"

    def __init__(self, secret_key: str, webhook_secret: str, api_base: str = "") -> None:
        self._webhook_secret = webhook_secret
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=stripe.RequestsClient(timeout=TIMEOUT_S),
            max_network_retries=2,
        )

    def checkout(self, request: CheckoutRequest) -> CheckoutStarted:
        params = checkout_params(request)
        try:
            session = self._client.v1.checkout.sessions.create(params=cast(Any, params))
        except stripe.StripeError as exc:
            raise _failure("could not start the checkout", exc) from exc
        if not session.url:
            raise ProviderFailure("Stripe returned a checkout without a URL")
        return CheckoutStarted(url=session.url, session_id=session.id)

    def portal(self, customer_id: str, return_url: str) -> str:
        params = {"customer": customer_id, "return_url": return_url}
        try:
            portal = self._client.v1.billing_portal.sessions.create(params=cast(Any, params))
        except stripe.StripeError as exc:
            raise _failure("could not open the subscription portal", exc) from exc
        return portal.url

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        if not self._webhook_secret:
            raise BadWebhook("Stripe webhooks are not configured (LABYARD_STRIPE_WEBHOOK_SECRET)")
        signature.verify(body, headers.get("stripe-signature"), self._webhook_secret)
        return parse_event(body)


def checkout_params(request: CheckoutRequest) -> dict[str, Any]:
    """The Checkout Session for one order (Stripe's API reference, `POST /v1/checkout/sessions`)."""
    metadata = {"order_id": request.order_id, "account_id": str(request.account_id)}
    price: dict[str, Any] = {
        "currency": request.currency.lower(),
        "unit_amount": request.unit_amount,
        "product_data": {"name": request.plan_title, "metadata": {"plan": request.plan}},
    }
    params: dict[str, Any] = {
        "client_reference_id": request.order_id,
        "customer_email": request.email,
        "success_url": request.success_url,
        "cancel_url": request.cancel_url,
        "allow_promotion_codes": request.provider_promotions,
        "tax_id_collection": {"enabled": True},
        "metadata": metadata,
        "line_items": [{"price_data": price, "quantity": request.quantity}],
    }
    if request.interval in INTERVALS:
        price["recurring"] = {"interval": INTERVALS[request.interval]}
        params["mode"] = "subscription"
        params["subscription_data"] = {"metadata": metadata}
    else:
        params["mode"] = "payment"
        params["customer_creation"] = "always"  # a customer, so the portal has invoices
        params["payment_intent_data"] = {"metadata": metadata}
    return params


def parse_event(body: bytes) -> WebhookEvent:
    """A Stripe event from a verified body; BadWebhook when it is not one."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise BadWebhook("the webhook body is not JSON") from None
    if not isinstance(payload, dict):
        raise BadWebhook("the webhook body is not a JSON object")
    event_id, kind, created = payload.get("id"), payload.get("type"), payload.get("created")
    data = payload.get("data")
    subject = data.get("object") if isinstance(data, dict) else None
    if not (isinstance(event_id, str) and event_id and isinstance(kind, str)):
        raise BadWebhook("the webhook event has no id or type")
    if not isinstance(created, int) or isinstance(created, bool) or not isinstance(subject, dict):
        raise BadWebhook("the webhook event has no created time or data.object")
    try:
        when = datetime.fromtimestamp(created, UTC)
    except (OverflowError, OSError, ValueError):
        raise BadWebhook("the webhook event's created time is out of range") from None
    return WebhookEvent("stripe", event_id[:255], kind[:100], when, subject, payload)


def _failure(what: str, exc: stripe.StripeError) -> ProviderFailure:
    # Stripe's messages name parameters and ids, never the secret key or card numbers.
    detail = f"{type(exc).__name__} (HTTP {exc.http_status}): {exc.user_message or ''}"
    return ProviderFailure(f"{what}: the payment provider failed; try again", detail=detail)
