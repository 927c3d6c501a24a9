"""The manual provider: for operators who invoice by hand. A checkout only records the order
as pending (the buyer's account page says "awaiting payment"); an admin marks it paid
(`POST /api/admin/orders/{order_id}/mark-paid`), which grants the plan."""

from __future__ import annotations

from collections.abc import Mapping

from labyard.errors import BadWebhook, Conflict
from labyard.services.billing.provider import CheckoutRequest, CheckoutStarted, WebhookEvent


class ManualProvider:
    name = "manual"

    def checkout(self, request: CheckoutRequest) -> CheckoutStarted:
        return CheckoutStarted(url=request.success_url)

    def portal(self, customer_id: str, return_url: str) -> str:
        raise Conflict("orders paid by invoice have no subscription portal; ask the operator")

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        raise BadWebhook("the manual provider takes no webhooks")
