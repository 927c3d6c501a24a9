"""A stand-in for Stripe's API, and Stripe-signed webhooks.

Stripe's servers cannot be reached from here, so the tests run the real `stripe` client
library against this: a tiny HTTP server on 127.0.0.1 that answers the endpoints labyard
calls (`POST /v1/checkout/sessions`, `POST /v1/billing_portal/sessions`) the way Stripe's
API reference shows, and records every request (path, form fields, headers) for the tests
to read. Webhooks are signed here exactly as Stripe signs them: `Stripe-Signature:
t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the endpoint secret>`,
computed with hmac directly, not with labyard's code.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

SECRET_KEY = "sk_test_standin_0123456789"
WEBHOOK_SECRET = "whsec_standin_abcdef0123456789"


@dataclass
class Seen:
    method: str
    path: str
    form: dict[str, str]
    headers: dict[str, str]


@dataclass
class StandIn:
    url: str
    requests: list[Seen] = field(default_factory=list)

    def last(self, path: str) -> Seen:
        found = [r for r in self.requests if r.path == path]
        assert found, f"the stand-in got no request for {path}: {self.requests}"
        return found[-1]


_ids = itertools.count(1)


def _handler(stand_in: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            form = dict(parse_qsl(self.rfile.read(length).decode()))
            stand_in.requests.append(Seen("POST", self.path, form, dict(self.headers.items())))
            n = next(_ids)
            if self.path == "/v1/checkout/sessions":
                self._json(200, _checkout_session(stand_in.url, n, form))
            elif self.path == "/v1/billing_portal/sessions":
                body = {"id": f"bps_test_{n}", "object": "billing_portal.session"}
                self._json(200, {**body, "url": f"{stand_in.url}/portal/bps_test_{n}"})
            else:
                error = {"type": "invalid_request_error", "message": f"no {self.path}"}
                self._json(404, {"error": error})

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("request-id", f"req_{next(_ids)}")
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _checkout_session(base: str, n: int, form: dict[str, str]) -> dict[str, Any]:
    session_id = f"cs_test_{n}"
    return {
        "id": session_id,
        "object": "checkout.session",
        "mode": form.get("mode"),
        "client_reference_id": form.get("client_reference_id"),
        "status": "open",
        "payment_status": "unpaid",
        "url": f"{base}/pay/{session_id}",
    }


@contextmanager
def stand_in_stripe() -> Iterator[StandIn]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    stand_in = StandIn(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(stand_in)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# -- webhooks ----------------------------------------------------------------------------


def event(kind: str, subject: dict[str, Any], created: int | None = None) -> dict[str, Any]:
    """A Stripe event envelope around `subject` (the event's `data.object`)."""
    return {
        "id": f"evt_test_{next(_ids)}_{time.time_ns()}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()) if created is None else created,
        "type": kind,
        "livemode": False,
        "data": {"object": subject},
    }


def stripe_signature(
    body: bytes,
    secret: str = WEBHOOK_SECRET,
    timestamp: int | None = None,
    extra_v1: tuple[str, ...] = (),
) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return ",".join([f"t={t}", *(f"v1={v}" for v in extra_v1), f"v1={digest}"])


def session_completed(
    order_id: str, *, country: str | None = None, subscription: str | None = "sub_1"
) -> dict[str, Any]:
    """`checkout.session.completed`'s object as Stripe sends it for a paid checkout; `country`
    is the billing address's (`customer_details.address.country`), which Checkout collects
    with the card."""
    address = {"country": country, "line1": None, "postal_code": None}
    return {
        "id": f"cs_test_{order_id}",
        "object": "checkout.session",
        "client_reference_id": order_id,
        "customer": "cus_1",
        "customer_details": {"email": "buyer@example.org", "address": address},
        "mode": "subscription" if subscription else "payment",
        "payment_status": "paid",
        "status": "complete",
        "subscription": subscription,
        "metadata": {"order_id": order_id},
    }


def charge_succeeded(order_id: str, card_country: str, charge_id: str = "ch_1") -> dict[str, Any]:
    """`charge.succeeded`'s object: `payment_method_details.card.country` is where the card
    was issued (Stripe's Charge object); never a card number, only its brand and last 4."""
    card = {"brand": "visa", "country": card_country, "last4": "4242", "funding": "credit"}
    return {
        "id": charge_id,
        "object": "charge",
        "amount": 500,
        "paid": True,
        "status": "succeeded",
        "refunded": False,
        "payment_intent": f"pi_{order_id}",
        "metadata": {"order_id": order_id},
        "payment_method_details": {"type": "card", "card": card},
    }
