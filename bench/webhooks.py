"""Stripe webhook handling: from request to durable response, on SQLite.

Each event is signed as Stripe signs it (`t=...,v1=<HMAC-SHA256 of "t.body">`) and posted
to `POST /api/billing/webhooks/stripe` of the ASGI app through httpx, one at a time; the
time is from just before the request until its 200, which labyard sends only once the
event is in the inbox (committed) and processed (committed). Half the events are
`checkout.session.completed` for fresh orders (an order paid and an entitlement granted),
half `invoice.paid` renewing them, so every request writes. Target: p99 <= 50 ms.

Run: `.venv/bin/python bench/webhooks.py --events 2000 [--json PATH]`. Own temp data dir
and SQLite database; nothing else is touched. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import math
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from labyard.api.app import create_app  # noqa: E402
from labyard.services import Labyard  # noqa: E402
from labyard.settings import BillingSettings, Settings  # noqa: E402
from labyard.store import OrderRow  # noqa: E402

SECRET = "whsec_bench_" + secrets.token_hex(8)
TARGET_P99_MS = 50.0


def sign(body: bytes) -> str:
    t = int(time.time())
    digest = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def _orders(labyard: Labyard, count: int) -> list[str]:
    user = labyard.accounts.create_user("bench@example.org", "a long enough password")
    now = datetime.now(UTC)
    ids = [f"ord_{secrets.token_hex(8)}" for _ in range(count)]
    with labyard.db.session() as session:
        for order_id in ids:
            session.add(
                OrderRow(
                    id=order_id,
                    account_id=user.id,
                    plan="premium",
                    kind="subscription",
                    interval="monthly",
                    quantity=1,
                    currency="USD",
                    amount=1500,
                    status="pending",
                    provider="stripe",
                    flagged=False,
                    flag_reason="",
                    created_at=now,
                    updated_at=now,
                )
            )
    return ids


def _events(order_ids: list[str]) -> list[dict[str, Any]]:
    now = int(time.time())
    events = []
    for n, order_id in enumerate(order_ids):
        sub = f"sub_bench_{n}"
        session = {
            "id": f"cs_bench_{n}",
            "client_reference_id": order_id,
            "payment_status": "paid",
            "customer": f"cus_bench_{n}",
            "subscription": sub,
        }
        invoice = {
            "id": f"in_bench_{n}",
            "subscription": sub,
            "lines": {"data": [{"period": {"end": now + 60 * 86400}}]},
        }
        for kind, subject in (("checkout.session.completed", session), ("invoice.paid", invoice)):
            events.append(
                {
                    "id": f"evt_bench_{len(events)}",
                    "type": kind,
                    "created": now,
                    "data": {"object": subject},
                }
            )
    return events


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


async def run(count: int) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="labyard-bench-webhooks-"))
    settings = Settings(
        data_dir=data_dir,
        images_dir=data_dir / "images",
        database_url=f"sqlite:///{data_dir / 'labyard.db'}",
        billing=BillingSettings(stripe_webhook_secret=SECRET),
    )
    labyard = Labyard(settings)
    try:
        events = _events(_orders(labyard, (count + 1) // 2))[:count]
        app = create_app(labyard, reconcile_interval_s=None)
        transport = httpx.ASGITransport(app=app)
        times: list[float] = []
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for warm_up in (True, False):
                for payload in events[:20] if warm_up else events[20:]:
                    body = json.dumps(payload).encode()
                    headers = {"stripe-signature": sign(body), "content-type": "application/json"}
                    started = time.perf_counter()
                    r = await client.post(
                        "/api/billing/webhooks/stripe", content=body, headers=headers
                    )
                    elapsed = (time.perf_counter() - started) * 1000
                    if r.status_code != 200:
                        raise SystemExit(f"webhook answered {r.status_code}: {r.text}")
                    if not warm_up:
                        times.append(elapsed)
        return {
            "events": len(times),
            "warm_up_events": 20,
            "database": "sqlite",
            "median_ms": round(statistics.median(times), 2),
            "p99_ms": round(percentile(times, 99), 2),
            "max_ms": round(max(times), 2),
            "target_p99_ms": TARGET_P99_MS,
            "load_average": os.getloadavg(),
        }
    finally:
        labyard.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--json", type=Path, default=REPO / "bench/results/webhooks.json")
    args = parser.parse_args()
    if args.events < 40:
        parser.error("--events: at least 40 (20 are a warm-up)")
    result = asyncio.run(run(args.events))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    verdict = "PASS" if result["p99_ms"] <= TARGET_P99_MS else "MISS"
    print(
        f"webhooks: {result['events']} events, median {result['median_ms']} ms, "
        f"p99 {result['p99_ms']} ms (target <= {TARGET_P99_MS:g}: {verdict}), "
        f"max {result['max_ms']} ms"
    )


if __name__ == "__main__":
    main()
