"""The analytics report over 1,000,000 usage sessions and 50,000 orders, on SQLite and on
PostgreSQL: how long one `Analytics.report(period)` takes, for a 30-day period and for the
whole range of the data.

The data is made up, deterministic (seeded), two years of it: 50,000 accounts (a tenth of
them paying), sessions of every kind with restarts, failed starts and a few still open,
200,000 attempts, orders in four currencies and five price tiers with their grants and
provider subscriptions. It is bulk-loaded with the database's own fast path (executemany in
one transaction on SQLite, COPY on PostgreSQL) into a schema made by the migrations, so the
indexes are exactly those of the migrations. Then the daily roll-ups are summed from the
loaded sessions with `usage.rebuild_days` (what migration 0015 does for the sessions closed
before it; a live server adds each session as it closes), timed as `roll_up_s`. Each period
is reported once untimed, then `--runs` times; the figures are the median and p95 (nearest
rank) of those, in ms, against the target of 500 ms.

Run: `.venv/bin/python bench/analytics.py [--postgres URL] [--runs 9] [--json PATH]`
(`--postgres "$(scripts/postgres.sh)"` for a throwaway PostgreSQL; a database of its own is
made there and dropped again). Own temp data dir and SQLite file. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, make_url, text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from labyard.services.analytics import Analytics, period  # noqa: E402
from labyard.services.plans import builtin_plans  # noqa: E402
from labyard.services.usage import rebuild_days  # noqa: E402
from labyard.store import Database  # noqa: E402

TARGET_MS = 500.0
FIRST, LAST = date(2024, 1, 1), date(2025, 12, 31)
START = datetime(2024, 1, 1, tzinfo=UTC)
SPAN_S = ((LAST - FIRST).days + 1) * 86400
NOW = datetime(2026, 1, 1, tzinfo=UTC)
PLAYGROUNDS = ["linux", "docker", "linux-cluster", "k8s", "web-lab", "net-lab", "ctf", "git"]
PLAYGROUNDS += [f"custom-{n}" for n in range(40)]
LAUNCHED_BY = ["free-play"] * 60 + ["challenge"] * 20 + ["tutorial"] * 10 + ["course"] * 7
LAUNCHED_BY += ["class"] * 3
CURRENCIES = ["USD"] * 12 + ["EUR"] * 5 + ["INR"] * 2 + ["BRL"]
TIERS = ["t1", "t2", "t3", "t4", "t5", None]


def _when(rng: random.Random) -> datetime:
    return START + timedelta(seconds=rng.random() * SPAN_S)


class World:
    """The rows, as tuples in column order, made once and loaded into each database."""

    def __init__(self, accounts: int, sessions: int, orders: int, seed: int = 8) -> None:
        rng = random.Random(seed)
        self.users = [
            (i, f"bench{i}@example.org", "x", "learner", START) for i in range(1, accounts + 1)
        ]
        paying = [i for i in range(1, accounts + 1) if i % 10 == 0]
        self.sessions = list(self._sessions(rng, accounts, sessions))
        self.attempts = list(self._attempts(rng, accounts, 200_000))
        self.entitlements: list[tuple[Any, ...]] = []
        self.orders: list[tuple[Any, ...]] = []
        self.subscriptions: list[tuple[Any, ...]] = []
        self._orders(rng, paying, orders)

    def _sessions(self, rng: random.Random, accounts: int, count: int) -> Iterator[tuple[Any, ...]]:
        for n in range(1, count + 1):
            account = rng.randint(1, accounts) if rng.random() > 0.01 else None
            started = _when(rng)
            machines = rng.choice((1, 1, 1, 2, 3))
            seconds = min(8 * 3600.0, rng.expovariate(1 / 1800))
            is_open = n > count - 200  # the last few: still running
            ended = None if is_open else started + timedelta(seconds=seconds)
            paid = account is not None and account % 10 == 0 and rng.random() < 0.9
            plan = "" if account is None else "premium" if paid else "free"
            roll = rng.random()
            yield (
                n,
                account,
                f"user:{account}" if account else "",
                plan,
                rng.choice(LAUNCHED_BY),
                "",
                f"pg{n:010d}"[-16:],
                rng.choice(PLAYGROUNDS),
                machines,
                roll < 0.05,
                started,
                ended,
                None if is_open else "failed" if roll > 0.99 else "stopped",
                None if ended is None else machines * seconds / 60,
            )

    def _attempts(self, rng: random.Random, accounts: int, count: int) -> Iterator[tuple[Any, ...]]:
        for n in range(count):
            started = _when(rng)
            solved = rng.random() < 0.4
            yield (
                f"at{n:012d}",
                f"user:{rng.randint(1, accounts)}",
                f"challenges/c{rng.randint(0, 299)}",
                "solved" if solved else "ended",
                "",
                "{}",
                "{}",
                started,
                started + timedelta(minutes=rng.randint(1, 90)),
            )

    def _orders(self, rng: random.Random, paying: list[int], count: int) -> None:
        for n in range(count):
            account = rng.choice(paying)
            paid_at = _when(rng)
            roll = rng.random()
            kind, interval = (
                ("subscription", "monthly")
                if roll < 0.7
                else ("subscription", "yearly")
                if roll < 0.85
                else ("lifetime", "lifetime")
                if roll < 0.9
                else ("seats", rng.choice(("monthly", "yearly")))
            )
            status = rng.choices(("paid", "refunded", "pending", "failed"), (92, 3, 3, 2))[0]
            amount = {"monthly": 1500, "yearly": 12000, "lifetime": 30000}[interval]
            quantity = rng.randint(2, 40) if kind == "seats" else 1
            order_id = f"ord_{n:020d}"
            grant = None
            if kind != "seats" and status in ("paid", "refunded"):
                grant = len(self.entitlements) + 1
                ends = (
                    None
                    if interval == "lifetime"
                    else paid_at + timedelta(days=30 if interval == "monthly" else 365)
                )
                revoked = paid_at + timedelta(days=3) if status == "refunded" else None
                self.entitlements.append(
                    (
                        grant,
                        account,
                        "premium",
                        "subscription",
                        "",
                        None,
                        paid_at,
                        ends,
                        revoked,
                        paid_at,
                    )
                )
            self.orders.append(
                (
                    order_id,
                    account,
                    "premium",
                    kind,
                    interval,
                    quantity,
                    rng.choice(CURRENCIES),
                    amount * quantity,
                    status,
                    "stripe" if kind == "seats" else "manual",
                    rng.choice(TIERS) if kind != "seats" else None,
                    False,
                    "",
                    grant,
                    paid_at,
                    paid_at if status in ("paid", "refunded") else None,
                    paid_at,
                )
            )
            if kind == "seats":
                period_end = paid_at + timedelta(days=30 if interval == "monthly" else 365)
                self.subscriptions.append(
                    (len(self.subscriptions) + 1, "stripe", f"sub_{n}", order_id, "active",
                     period_end, None, None, paid_at, paid_at)
                )  # fmt: skip


COLUMNS = {
    "users": "id, email, password_hash, role, created_at",
    "usage_sessions": "id, account_id, owner, plan, launched_by, content_key, playground_id, "
    "playground_name, machines, restart, started_at, ended_at, end_reason, machine_minutes",
    "attempts": "id, owner, content_key, state, message, spec, inputs, started_at, finished_at",
    "entitlements": "id, account_id, plan, kind, source, once_key, starts_at, ends_at, "
    "revoked_at, created_at",
    "orders": "id, account_id, plan, kind, interval, quantity, currency, amount, status, "
    "provider, price_tier, flagged, flag_reason, entitlement_id, created_at, paid_at, updated_at",
    "subscriptions": "id, provider, provider_id, order_id, status, current_period_end, "
    "ended_at, payment_failed_at, last_event_at, updated_at",
}


def _tables(world: World) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "users": world.users,
        "usage_sessions": world.sessions,
        "attempts": world.attempts,
        "entitlements": world.entitlements,
        "orders": world.orders,
        "subscriptions": world.subscriptions,
    }


def _sqlite_value(value: Any) -> Any:
    # How SQLAlchemy's DateTime stores a (UTC) moment on SQLite.
    return value.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(value, datetime) else value


def load_sqlite(path: Path, world: World) -> None:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA synchronous=OFF")
    for table, rows in _tables(world).items():
        columns = COLUMNS[table]
        marks = ", ".join("?" for _ in columns.split(","))
        connection.executemany(
            f"INSERT INTO {table} ({columns}) VALUES ({marks})",
            ([_sqlite_value(v) for v in row] for row in rows),
        )
    connection.commit()
    connection.close()


def load_postgres(url: str, world: World) -> None:
    engine = create_engine(url)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for table, rows in _tables(world).items():
            with cursor.copy(f"COPY {table} ({COLUMNS[table]}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for row in rows:
                    copy.write_row(row)
        raw.commit()
        raw.driver_connection.autocommit = True  # type: ignore[union-attr]
        cursor.execute("VACUUM ANALYZE")  # what autovacuum does soon after a bulk load
    finally:
        raw.close()
        engine.dispose()


@contextmanager
def postgres_database(base: str) -> Iterator[str]:
    name = f"labyard_bench_{secrets.token_hex(4)}"
    admin = create_engine(make_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def roll_up(url: str) -> float:
    """Seconds to sum the daily roll-ups from the loaded sessions."""
    db = Database(url)
    try:
        started = time.perf_counter()
        with db.session() as session:
            rebuild_days(session)
        return round(time.perf_counter() - started, 1)
    finally:
        db.close()


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def time_reports(url: str, runs: int) -> dict[str, Any]:
    db = Database(url)
    analytics = Analytics(db, builtin_plans())
    periods = {
        "30_days": period(LAST - timedelta(days=29), LAST),
        "whole_range": period(FIRST, LAST),
    }
    results: dict[str, Any] = {}
    try:
        for name, found in periods.items():
            report = analytics.report(found, now=NOW)  # untimed: warms the cache
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                analytics.report(found, now=NOW)
                times.append((time.perf_counter() - started) * 1000)
            results[name] = {
                "from": found.first.isoformat(),
                "to": found.last.isoformat(),
                "median_ms": round(statistics.median(times), 1),
                "p95_ms": round(percentile(times, 95), 1),
                "min_ms": round(min(times), 1),
                "max_ms": round(max(times), 1),
                "launches": report["launches"],
                "active_accounts": report["active_accounts"],
                "mrr": report["mrr"],
            }
    finally:
        db.close()
    return results


def machine() -> dict[str, Any]:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        memory = meminfo.read_text().splitlines()[0].split(":", 1)[1].strip()
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "memory": memory,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    world = World(args.accounts, args.sessions, args.orders)
    made_s = time.perf_counter() - started
    result: dict[str, Any] = {
        "sessions": len(world.sessions),
        "orders": len(world.orders),
        "accounts": len(world.users),
        "attempts": len(world.attempts),
        "runs": args.runs,
        "target_ms": TARGET_MS,
        "machine": machine(),
        "load_average_before": os.getloadavg(),
        "generate_s": round(made_s, 1),
    }
    data_dir = Path(tempfile.mkdtemp(prefix="labyard-bench-analytics-"))
    try:
        path = data_dir / "labyard.db"
        Database(f"sqlite:///{path}").migrate()
        started = time.perf_counter()
        load_sqlite(path, world)
        result["sqlite"] = {"load_s": round(time.perf_counter() - started, 1)}
        result["sqlite"]["roll_up_s"] = roll_up(f"sqlite:///{path}")
        result["sqlite"].update(time_reports(f"sqlite:///{path}", args.runs))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    if args.postgres:
        with postgres_database(args.postgres) as url:
            db = Database(url)
            db.migrate()
            db.close()
            started = time.perf_counter()
            load_postgres(url, world)
            result["postgresql"] = {"load_s": round(time.perf_counter() - started, 1)}
            result["postgresql"]["roll_up_s"] = roll_up(url)
            result["postgresql"].update(time_reports(url, args.runs))
            engine = create_engine(url)
            with engine.connect() as connection:
                result["machine"]["postgresql"] = connection.execute(
                    text("SHOW server_version")
                ).scalar()
            engine.dispose()
    result["load_average_after"] = os.getloadavg()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--postgres", default="", help="a PostgreSQL URL to run on as well")
    parser.add_argument("--json", type=Path, default=REPO / "bench/results/analytics.json")
    args = parser.parse_args()
    if args.accounts < 10 or args.sessions < 1000 or args.orders < 10 or args.runs < 1:
        parser.error("at least 10 accounts, 1000 sessions, 10 orders and 1 run")
    result = run(args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    for database in ("sqlite", "postgresql"):
        if database not in result:
            continue
        for name in ("30_days", "whole_range"):
            figures = result[database][name]
            verdict = "PASS" if figures["p95_ms"] <= TARGET_MS else "MISS"
            print(
                f"analytics {database} {name}: median {figures['median_ms']} ms, "
                f"p95 {figures['p95_ms']} ms (target <= {TARGET_MS:g}: {verdict}); "
                f"{figures['launches']:,} launches"
            )
    before, after = result["load_average_before"][0], result["load_average_after"][0]
    print(
        f"{result['sessions']:,} sessions, {result['orders']:,} orders; "
        f"load average {before:.2f} before, {after:.2f} after"
    )


if __name__ == "__main__":
    main()
