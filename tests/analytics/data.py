"""A small, known world for the analytics tests: sessions, attempts, orders, subscriptions
and entitlements written straight into the store, and every figure of its report worked
out by hand below (`EXPECTED`), for the period 2025-03-01 to 2025-03-10 and its previous
period, 2025-02-19 to 2025-02-28.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from labyard.services import Labyard
from labyard.services.usage import close_sessions
from labyard.store import AttemptRow, EntitlementRow, OrderRow, SubscriptionRow, UsageSessionRow
from labyard.types import EndReason

FROM, TO = "2025-03-01", "2025-03-10"
NOW = datetime(2025, 3, 20, tzinfo=UTC)
PASSWORD = "a long enough password"
PEOPLE = ("alice", "bob", "carol", "dave", "erin", "fred", "hank", "ivan")


def at(text: str) -> datetime:
    """`03-02 10:00` in 2025 (or a full `2024-06-15 00:00`), UTC."""
    full = text if text.count("-") == 2 else f"2025-{text}"
    return datetime.strptime(full, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


# name: (who, plan at start, launched by, playground, machines, start, end, and "restart" or
# "failed" (a failed start) or "")
SESSIONS: dict[str, tuple[str | None, str, str, str, int, str, str | None, str]] = {
    "s1": ("alice", "premium", "free-play", "linux", 1, "03-02 10:00", "03-02 11:00", ""),
    "s2": ("alice", "premium", "challenge", "docker", 2, "03-03 10:00", "03-03 10:30", ""),
    "s3": ("bob", "free", "free-play", "linux", 1, "03-04 09:00", "03-04 09:45", ""),
    "s4": ("bob", "free", "free-play", "linux", 1, "03-04 12:00", "03-04 12:15", "restart"),
    "s5": ("carol", "free", "tutorial", "linux-cluster", 3, "03-05 08:00", "03-05 08:20", ""),
    "s6": ("carol", "free", "free-play", "linux", 1, "03-06 10:00", "03-06 10:01", "failed"),
    # across the period's start: 02-28 23:00 to 03-01 01:00 on 2 machines
    "s7": ("erin", "premium", "free-play", "linux", 2, "02-28 23:00", "03-01 01:00", ""),
    # across the period's end: 03-10 23:30 to 03-11 00:30
    "s8": ("bob", "free", "class", "docker", 1, "03-10 23:30", "03-11 00:30", ""),
    # still open (no end): counts up to the period's end
    "s9": ("alice", "premium", "free-play", "linux", 1, "03-10 22:00", None, ""),
    "s10": ("dave", "free", "free-play", "linux", 1, "02-20 10:00", "02-20 11:00", ""),
    # the operator's local CLI: no account, no plan
    "s11": (None, "", "free-play", "linux", 1, "03-07 10:00", "03-07 10:10", ""),
    "s12": ("carol", "premium", "challenge", "docker", 1, "02-25 10:00", "02-25 10:30", ""),
    "s13": ("bob", "free", "free-play", "linux", 1, "01-01 10:00", "01-01 11:00", ""),
}

# name: (who, content, started, state, finished)
ATTEMPTS = {
    "a1": ("alice", "challenges/a", "03-03 10:00", "solved", "03-03 10:20"),
    "a2": ("bob", "challenges/a", "03-04 09:00", "ended", "03-04 09:40"),
    "a3": ("carol", "tutorials/t", "03-05 08:00", "solved", "03-05 08:15"),
    "a4": ("bob", "challenges/b", "02-27 10:00", "solved", "03-02 09:00"),
    "a5": ("dave", "challenges/a", "02-20 10:00", "failed", "02-20 10:30"),
}

# name: (who, kind, interval, currency, amount, status, paid at, price tier,
#        entitlement (start, end, revoked) or None)
ORDERS: dict[str, tuple[Any, ...]] = {
    "o1": ("alice", "subscription", "monthly", "USD", 1500, "paid", "03-02 10:00", "t1",
           ("03-02 10:00", "04-02 10:00", None)),
    "o2": ("bob", "lifetime", "lifetime", "USD", 30000, "paid", "03-05 12:00", "t2",
           ("03-05 12:00", None, None)),
    "o3": ("carol", "subscription", "yearly", "EUR", 9600, "paid", "02-25 10:00", "t3",
           ("02-25 10:00", "2026-02-25 10:00", None)),
    "o4": ("erin", "subscription", "monthly", "INR", 50000, "refunded", "03-06 09:00", "t5",
           ("03-06 09:00", "04-06 09:00", "03-08 09:00")),
    # seats: no grant to the buyer; a provider subscription paid to 04-08
    "o5": ("fred", "seats", "monthly", "USD", 4500, "paid", "03-08 09:00", None, None),
    "o6": ("dave", "subscription", "monthly", "USD", 1500, "paid", "01-25 10:00", "t1",
           ("01-25 10:00", "02-25 10:00", None)),
    # cancelled: its grant ended when the subscription did, 03-05
    "o7": ("erin", "subscription", "monthly", "USD", 1500, "paid", "02-10 10:00", "t1",
           ("02-10 10:00", "03-05 10:00", None)),
    "o8": ("alice", "subscription", "monthly", "USD", 1500, "pending", None, "t1", None),
    # seats bought by hand a year ago: no grant, no provider subscription
    "o10": ("hank", "seats", "yearly", "USD", 12000, "paid", "2024-06-15 00:00", None, None),
    "o12": ("ivan", "subscription", "monthly", "EUR", 1200, "paid", "03-09 15:00", "t2",
            ("03-09 15:00", "04-09 15:00", None)),
}  # fmt: skip

# order: (status, current period end, ended at)
SUBSCRIPTIONS = {
    "o5": ("active", "04-08 09:00", None),
    "o7": ("canceled", "03-10 10:00", "03-05 10:00"),
}


def fill(labyard: Labyard) -> dict[str, int]:
    """Write the world into the store; returns the account ids by name."""
    ids = {
        name: labyard.accounts.create_user(f"{name}@example.org", PASSWORD).id for name in PEOPLE
    }
    created = at("2024-01-01 00:00")
    with labyard.db.session() as session:
        ends: dict[str, tuple[EndReason, datetime]] = {}
        for n, (who, plan, by, name, machines, start, end, how) in enumerate(SESSIONS.values()):
            session.add(
                UsageSessionRow(
                    account_id=ids[who] if who else None,
                    owner=who or "",
                    plan=plan,
                    launched_by=by,
                    content_key="",
                    playground_id=f"pg{n:04d}",
                    playground_name=name,
                    machines=machines,
                    restart=how == "restart",
                    started_at=at(start),
                )
            )
            if end:
                reason = EndReason.FAILED if how == "failed" else EndReason.STOPPED
                ends[f"pg{n:04d}"] = (reason, at(end))
        session.flush()
        # Ended the way the service ends them: the daily roll-ups are added to as they close.
        for playground_id, (reason, ended) in ends.items():
            assert close_sessions(session, playground_id, reason, ended) == 1
        for key, (who, content, start, state, finish) in ATTEMPTS.items():
            session.add(
                AttemptRow(
                    id=key,
                    owner=f"user:{ids[who]}",
                    content_key=content,
                    state=state,
                    spec={},
                    started_at=at(start),
                    finished_at=at(finish),
                )
            )
        for key, (
            who,
            kind,
            interval,
            currency,
            amount,
            status,
            paid,
            tier,
            grant,
        ) in ORDERS.items():
            entitlement = None
            if grant is not None:
                start, end, revoked = grant
                entitlement = EntitlementRow(
                    account_id=ids[who],
                    plan="premium",
                    kind="lifetime" if kind == "lifetime" else "subscription",
                    source=f"order {key}",
                    starts_at=at(start),
                    ends_at=at(end) if end else None,
                    revoked_at=at(revoked) if revoked else None,
                    created_at=at(start),
                )
                session.add(entitlement)
                session.flush()
            session.add(
                OrderRow(
                    id=key,
                    account_id=ids[who],
                    plan="premium",
                    kind=kind,
                    interval=interval,
                    quantity=3 if kind == "seats" else 1,
                    currency=currency,
                    amount=amount,
                    status=status,
                    provider="stripe" if key in SUBSCRIPTIONS else "manual",
                    price_tier=tier,
                    flagged=False,
                    flag_reason="",
                    entitlement_id=entitlement.id if entitlement else None,
                    created_at=at(paid) if paid else created,
                    paid_at=at(paid) if paid else None,
                    updated_at=created,
                )
            )
        session.flush()
        for key, (status, period_end, ended) in SUBSCRIPTIONS.items():
            session.add(
                SubscriptionRow(
                    provider="stripe",
                    provider_id=f"sub_{key}",
                    order_id=key,
                    status=status,
                    current_period_end=at(period_end),
                    ended_at=at(ended) if ended else None,
                    last_event_at=created,
                    updated_at=created,
                )
            )
    return ids


# -- the report, by hand -----------------------------------------------------------------
#
# The period is [03-01 00:00, 03-11 00:00); the previous one [02-19 00:00, 03-01 00:00).
#
# Launches (started in the period, not a restart): s1 s2 s3 s5 s6 s8 s9 s11 = 8 (s4 is a
# restart, s7 started in February; s6 failed to start, a launch all the same). Free-play:
# s1 s3 s6 s9 s11 = 5 -> 5/8.
# Machine-minutes inside the period:
#   s1 60 + s2 2x30=60 + s3 45 + s4 15 + s5 3x20=60 + s6 1 + s11 10
#   + s7 2x60=120 (its hour after midnight) + s8 30 (its half hour before midnight)
#   + s9 120 (open since 22:00: up to the period's end)                             = 521
# Paid (plan at start not `free`, not ''): s1 60 + s2 60 + s7 120 + s9 120         = 360
# Active accounts: alice (s1 s2 s9), bob (s3 s4 s8), carol (s5 s6), erin (s7)     = 4
#   (s11 has no account); paid ones: alice, erin = 2.
#
# Previous: launches s7 s10 s12 = 3, free-play s7 s10 = 2; minutes s7 2x60=120 (23:00 to
# midnight) + s10 60 + s12 30 = 210, paid s7 120 + s12 30 = 150; accounts erin, dave,
# carol = 3, paid erin, carol = 2.
#
# Money. In force at the period's end (03-11 00:00):
#   o1 alice monthly 1500 USD (grant to 04-02), o3 carol yearly 9600 EUR = 800 a month,
#   o5 fred seats 4500 USD (subscription paid to 04-08), o10 hank seats yearly 12000 USD
#   (paid 2024-06-15, a year: to 2025-06-15) = 1000 a month, o12 ivan 1200 EUR;
#   not: o4 (refunded), o6 (ended 02-25), o7 (cancelled 03-05), o2 (lifetime: no MRR).
#   MRR = USD 1500 + 4500 + 1000 = 7000, EUR 800 + 1200 = 2000.
# At the period's start (03-01 00:00), the previous MRR: o3 800 EUR, o7 1500 USD, o10 1000
#   USD -> USD 2500, EUR 800.
# Paying (a recurring order in force, or a lifetime one):
#   at 02-19: dave (o6), erin (o7), hank (o10)
#   at 03-01: carol (o3), erin (o7), hank (o10)
#   at 03-11: alice, bob (o2, lifetime), carol, fred, hank, ivan
#   churned in the period: erin = 1; in the previous one: dave = 1.
# First paid order (refunded ones do not count): alice 03-02, bob 03-05, carol 02-25,
#   dave 01-25, erin 02-10, fred 03-08, hank 2024-06-15, ivan 03-09
#   new paid in the period: alice, bob, fred, ivan = 4; in the previous one: carol = 1.
# Revenue (paid orders paid in the period): o1 1500 + o2 30000 + o5 4500 USD = 36000 USD,
#   o12 1200 EUR; previous: o3 9600 EUR. o4 is refunded: none.
# Country tiers: t1 alice 1500 USD; t2 bob 30000 USD + ivan 1200 EUR; untiered fred 4500.
# Top content: challenges/a started a1 a2 = 2, solved a1 = 1; tutorials/t 1 and 1;
#   challenges/b started in February, solved 03-02: 0 and 1.
# Series, by start day (03-01 gets s7's 120 minutes inside the period):
#   launches 0 1 1 1 1 1 1 0 0 2; minutes 120 60 60 60 60 1 10 0 0 150 (s8 30 + s9 120).

EXPECTED: dict[str, Any] = {
    "period": {"from": FROM, "to": TO, "days": 10},
    "previous_period": {"from": "2025-02-19", "to": "2025-02-28", "days": 10},
    "as_of": "2025-03-11T00:00:00+00:00",
    "launches": 8,
    "free_play_share": 0.625,
    "machine_minutes": 521,
    "paid_machine_minutes": 360,
    "paid_usage_share": round(360 / 521, 4),
    "active_accounts": 4,
    "paid_accounts": 2,
    "paid_accounts_share": 0.5,
    "new_paid": 4,
    "churned": 1,
    "mrr": {"EUR": 2000, "USD": 7000},
    "revenue": {"EUR": 1200, "USD": 36000},
    "previous": {
        "launches": 3,
        "free_play_share": round(2 / 3, 4),
        "machine_minutes": 210,
        "paid_machine_minutes": 150,
        "paid_usage_share": round(150 / 210, 4),
        "active_accounts": 3,
        "paid_accounts": 2,
        "paid_accounts_share": round(2 / 3, 4),
        "new_paid": 1,
        "churned": 1,
        "mrr": {"EUR": 800, "USD": 2500},
        "revenue": {"EUR": 9600},
    },
    "change": {
        "launches": 5,
        "free_play_share": round(0.625 - round(2 / 3, 4), 4),
        "machine_minutes": 311,
        "paid_machine_minutes": 210,
        "paid_usage_share": round(round(360 / 521, 4) - round(150 / 210, 4), 4),
        "active_accounts": 1,
        "paid_accounts": 0,
        "paid_accounts_share": round(0.5 - round(2 / 3, 4), 4),
        "new_paid": 3,
        "churned": 0,
        "mrr": {"EUR": 1200, "USD": 4500},
        "revenue": {"EUR": -8400, "USD": 36000},
    },
    "top_playgrounds": [
        # linux: s1 60 + s3 45 + s4 15 + s6 1 + s7 120 + s9 120 + s11 10
        {"name": "linux", "launches": 5, "machine_minutes": 371},
        {"name": "docker", "launches": 2, "machine_minutes": 90},  # s2 60 + s8 30
        {"name": "linux-cluster", "launches": 1, "machine_minutes": 60},
    ],
    "top_content": [
        {"key": "challenges/a", "started": 2, "solved": 1},
        {"key": "tutorials/t", "started": 1, "solved": 1},
        {"key": "challenges/b", "started": 0, "solved": 1},
    ],
    "revenue_by_month": [
        {"month": "2025-03", "currency": "EUR", "amount": 1200},
        {"month": "2025-03", "currency": "USD", "amount": 36000},
    ],
    "country_tiers": [
        {"tier": "t1", "accounts": 1, "revenue": {"USD": 1500}},
        {"tier": "t2", "accounts": 2, "revenue": {"EUR": 1200, "USD": 30000}},
        {"tier": None, "accounts": 1, "revenue": {"USD": 4500}},
    ],
    "series": {
        "bucket_days": 1,
        "start": [f"2025-03-{day:02d}" for day in range(1, 11)],
        "launches": [0, 1, 1, 1, 1, 1, 1, 0, 0, 2],
        "machine_minutes": [120, 60, 60, 60, 60, 1, 10, 0, 0, 150],
    },
}
