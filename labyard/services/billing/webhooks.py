"""The webhook inbox: verify, store, then act.

1. The provider verifies the request (signature, timestamp, JSON): BadWebhook (400) before
   anything is stored, so a forged or broken request changes nothing.
2. The event is inserted into `billing_events`, unique on (provider, event id), in its own
   committed transaction: from here on it is durable, whatever happens next.
3. It is processed in a second transaction that locks its inbox row, skips it if another
   delivery processed it already, runs its handler (stripe_events.py), issues the invoice
   or credit note it calls for (stripe_invoicing.py) and sets `processed_at`: the effects
   and the mark commit together.

The endpoint answers 2xx once 2 and 3 are done. If 3 fails the answer is 500 and the event
stays unprocessed in the inbox: the provider delivers it again, the insert finds it, and it
is processed then (`process_pending` does the same for every one left).
Bodies are stored, never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from labyard.errors import BadWebhook, NotFound
from labyard.services.billing.invoices import Invoices
from labyard.services.billing.provider import Provider, WebhookEvent
from labyard.services.billing.stripe_events import HANDLERS
from labyard.services.billing.stripe_invoicing import follow
from labyard.services.entitlements import Entitlements
from labyard.store import BillingEventRow, Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Received:
    event_id: str
    type: str
    duplicate: bool
    """It was in the inbox already (a redelivery)."""
    outcome: str


def _now() -> datetime:
    return datetime.now(UTC)


def _event(row: BillingEventRow) -> WebhookEvent:
    subject = row.payload.get("data", {}).get("object", {})
    return WebhookEvent(row.provider, row.event_id, row.type, row.created, subject, row.payload)


class Webhooks:
    def __init__(
        self,
        db: Database,
        entitlements: Entitlements,
        providers: dict[str, Provider],
        invoices: Invoices,
    ) -> None:
        self.db = db
        self.entitlements = entitlements
        self.providers = providers
        self.invoices = invoices

    def receive(self, provider: str, body: bytes, headers: Mapping[str, str]) -> Received:
        """Verify, store durably, process; see the module docstring."""
        found = self.providers.get(provider)
        if found is None or provider == "manual":
            raise BadWebhook(f"no webhooks for provider {provider!r}")
        event = found.parse_webhook(body, headers)
        new = self._store(event)
        outcome = self.process(event.provider, event.id)
        log.info(
            "webhook %s %s %s: %s", provider, event.id, event.type, outcome if new else "again"
        )
        return Received(event.id, event.type, not new, outcome)

    def _store(self, event: WebhookEvent) -> bool:
        """Insert into the inbox and commit; False if it was there already."""
        row = BillingEventRow(
            provider=event.provider,
            event_id=event.id,
            type=event.type,
            created=event.created,
            payload=event.payload,
            received_at=_now(),
            outcome="",
        )
        try:
            with self.db.session() as session:
                session.add(row)
        except IntegrityError:
            return False
        return True

    def process(self, provider: str, event_id: str) -> str:
        """Act on a stored event once; a processed one returns its recorded outcome."""
        query = select(BillingEventRow).where(
            BillingEventRow.provider == provider, BillingEventRow.event_id == event_id
        )
        with self.db.session() as session:
            row = session.scalar(query.with_for_update())
            if row is None:
                raise NotFound(f"no {provider} event {event_id} in the inbox")
            if row.processed_at is not None:
                return row.outcome
            handler, event = HANDLERS.get(row.type), _event(row)
            outcome = (
                "ignored: not a handled type"
                if handler is None
                else handler(session, self.entitlements, event)
            )
            if issued := follow(self.invoices, session, event):
                outcome = f"{outcome}; {issued}"
            row.processed_at, row.outcome = _now(), outcome[:200]
            return row.outcome

    def process_pending(self) -> int:
        """Process every stored event not processed yet (oldest first); returns how many."""
        query = (
            select(BillingEventRow.provider, BillingEventRow.event_id)
            .where(BillingEventRow.processed_at.is_(None))
            .order_by(BillingEventRow.created, BillingEventRow.id)
        )
        with self.db.session() as session:
            pending = list(session.execute(query))
        for provider, event_id in pending:
            self.process(provider, event_id)
        return len(pending)
