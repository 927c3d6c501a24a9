"""Stripe's webhook signature, checked the way Stripe documents it.

`Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=...]`: each `v1` is
HMAC-SHA256 of `<t>.<raw body>` keyed with the endpoint's secret. Stripe sends several `v1`
while a secret is being rolled, so any one matching is enough; `v0` and unknown schemes are
ignored. A timestamp more than the tolerance (300 s) away from now, in either direction, is
refused so a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from labyard.errors import BadWebhook

TOLERANCE_S = 300


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The hex `v1` signature of `body` at `timestamp` (what Stripe computes)."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise BadWebhook("the Stripe-Signature timestamp is not a number") from None
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise BadWebhook("the Stripe-Signature header has no timestamp or no v1 signature")
    return timestamp, signatures


def verify(
    body: bytes,
    header: str | None,
    secret: str,
    *,
    now: float | None = None,
    tolerance_s: int = TOLERANCE_S,
) -> int:
    """Check `header` against `body`; returns the signed timestamp or raises BadWebhook."""
    if not header:
        raise BadWebhook("no Stripe-Signature header")
    timestamp, signatures = _parse(header)
    expected = sign(body, secret, timestamp)
    # compare_digest on every candidate: no early exit that would time the match.
    matches = [hmac.compare_digest(expected, given) for given in signatures]
    if not any(matches):
        raise BadWebhook("no Stripe-Signature v1 signature matches")
    age = (time.time() if now is None else now) - timestamp
    if abs(age) > tolerance_s:
        raise BadWebhook(
            f"the Stripe-Signature timestamp is {int(age)} s off (tolerance {tolerance_s} s)"
        )
    return timestamp
