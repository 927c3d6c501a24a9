"""The analytics report on SQLite and PostgreSQL: a known world (data.py) whose every figure
was worked out by hand, through the service, the JSON API, the CSV export and
`labyard admin analytics --json`; and what a bad period gets."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, insert, text
from sqlalchemy.orm import Session

from labyard.api.app import create_app
from labyard.errors import InvalidInput
from labyard.services import Labyard
from labyard.services.analytics import period
from labyard.services.usage import rebuild_days
from labyard.settings import Settings
from labyard.store import UsageSessionRow
from labyard.store.db import make_engine
from tests.analytics.data import EXPECTED, FROM, NOW, PASSWORD, TO, fill
from tests.conftest import IMAGES_DIR, REPO
from tests.store.databases import KINDS, fresh_database_url, upgrade_to


@pytest.fixture(params=KINDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def labyard(database_url: str, tmp_path: Path) -> Iterator[Labyard]:
    settings = Settings(
        data_dir=tmp_path / "data", images_dir=IMAGES_DIR, database_url=database_url
    )
    instance = Labyard(settings)
    fill(instance)
    yield instance
    instance.close()


def client(labyard: Labyard, role: str | None) -> httpx.AsyncClient:
    """A client signed in as a new account of `role` (None: signed out)."""
    headers = {}
    if role is not None:
        user = labyard.accounts.create_user(f"{role}-x@example.org", PASSWORD, role=role)
        headers["Authorization"] = f"Bearer {labyard.accounts.issue(user, 'api', 'test')}"
    app = create_app(labyard, reconcile_interval_s=None)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=headers
    )


def test_every_figure_matches_the_hand_computation(labyard: Labyard) -> None:
    report = labyard.analytics.report(period(FROM, TO), now=NOW)
    for key, expected in EXPECTED.items():
        assert report[key] == expected, key
    assert set(report) - set(EXPECTED) == set(), "a new figure: add it to the test"
    assert isinstance(report["launches"], int)


def test_an_open_session_counts_up_to_now(labyard: Labyard) -> None:
    """Asked at 03-10 23:45, s9 (open since 22:00) has run 105 minutes and s8 (from 23:30)
    15 of its minutes so far: 521 - 120 + 105 - 30 + 15."""
    now = datetime(2025, 3, 10, 23, 45, tzinfo=UTC)
    report = labyard.analytics.report(period(FROM, TO), now=now)
    assert report["machine_minutes"] == 491
    assert report["paid_machine_minutes"] == 360 - 120 + 105
    assert report["as_of"] == now.isoformat()
    assert report["series"]["machine_minutes"][-1] == 105 + 15


def roll_ups(connection: Connection) -> list[tuple[Any, ...]]:
    rows = [
        (str(day), plan, by, launches, round(minutes, 6))
        for day, plan, by, launches, minutes in connection.execute(
            text("SELECT day, plan, launched_by, launches, machine_minutes FROM usage_days")
        )
    ]
    rows += [
        (str(day), name, launches, round(minutes, 6))
        for day, name, launches, minutes in connection.execute(
            text("SELECT day, playground_name, launches, machine_minutes FROM playground_days")
        )
    ]
    return sorted(rows, key=str)


def test_the_daily_roll_ups_are_the_closed_sessions_summed(labyard: Labyard) -> None:
    """data.py closed its sessions through usage.close_sessions; summing them afresh (what
    a bulk load does) gives the same days, and the report reads those."""
    with labyard.db.engine.connect() as connection:
        live = roll_ups(connection)
    assert ("2025-03-04", "free", "free-play", 1, 60.0) in live  # s3 and its restart s4
    assert not [r for r in live if r[:2] == ("2025-03-10", "premium")]  # s9 is still open
    with labyard.db.session() as session:
        rebuild_days(session)
    with labyard.db.engine.connect() as connection:
        assert roll_ups(connection) == live


def test_migration_0015_sums_the_sessions_closed_before_it(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade_to(engine, "0014")
    sessions = [  # (playground, started, ended, machines, restart): two days, one open
        ("linux", "2025-03-01 23:30", "2025-03-02 00:30", 2, False),
        ("linux", "2025-03-01 10:00", "2025-03-01 10:10", 1, True),
        ("docker", "2025-03-02 08:00", None, 1, False),
    ]
    with engine.begin() as connection:
        for n, (name, start, end, machines, restart) in enumerate(sessions):
            started = datetime.fromisoformat(start).replace(tzinfo=UTC)
            ended = datetime.fromisoformat(end).replace(tzinfo=UTC) if end else None
            minutes = machines * (ended - started).total_seconds() / 60 if ended else None
            connection.execute(
                insert(UsageSessionRow).values(
                    owner="", plan="free", launched_by="free-play", content_key="",
                    playground_id=f"pg{n}", playground_name=name, machines=machines,
                    restart=restart, started_at=started, ended_at=ended,
                    machine_minutes=minutes,
                )
            )  # fmt: skip
    upgrade_to(engine, "head")
    with engine.connect() as connection:
        migrated = roll_ups(connection)
    # The day a session started holds all of it; the restart adds minutes, no launch.
    assert migrated == [
        ("2025-03-01", "free", "free-play", 1, 130.0),
        ("2025-03-01", "linux", 1, 130.0),
    ]
    with Session(engine) as session, session.begin():
        rebuild_days(session)
    with engine.connect() as connection:
        assert roll_ups(connection) == migrated
    engine.dispose()


def test_months_split_revenue_and_currencies_stay_apart(labyard: Labyard) -> None:
    report = labyard.analytics.report(period("2025-02-01", "2025-03-31"), now=NOW)
    assert report["revenue_by_month"] == [
        {"month": "2025-02", "currency": "EUR", "amount": 9600},  # o3
        {"month": "2025-02", "currency": "USD", "amount": 1500},  # o7
        {"month": "2025-03", "currency": "EUR", "amount": 1200},  # o12
        {"month": "2025-03", "currency": "USD", "amount": 36000},  # o1 o2 o5
    ]
    assert report["revenue"] == {"EUR": 10800, "USD": 37500}


def test_a_long_period_buckets_its_series(labyard: Labyard) -> None:
    """366 days in at most 120 points: buckets of 4 days; the sums stay the same."""
    report = labyard.analytics.report(period("2024-06-01", "2025-06-01"), now=NOW)
    series = report["series"]
    assert series["bucket_days"] == 4
    assert len(series["start"]) == len(series["launches"]) == 92
    assert series["start"][:2] == ["2024-06-01", "2024-06-05"]
    assert sum(series["launches"]) == report["launches"] == 8 + 3 + 1  # and s13
    # Every session whole, s9 (open) from 03-10 22:00 to now (03-20): 9 days 2 hours.
    whole = 60 + 60 + 45 + 15 + 60 + 1 + 240 + 60 + 10 + 60 + 30 + 60  # s1 to s13 but s9
    assert report["machine_minutes"] == whole + 218 * 60
    assert round(sum(series["machine_minutes"]), 2) == report["machine_minutes"]


@pytest.mark.parametrize(
    ("first", "last", "says"),
    [
        ("2025-03-10", "2025-03-01", "from (2025-03-10) is after to (2025-03-01)"),
        ("2025-02-30", "2025-03-01", "from: '2025-02-30' is not a date; write YYYY-MM-DD"),
        ("yesterday", "2025-03-01", "from: 'yesterday' is not a date"),
        ("2025-3-1", "2025-03-01", "from: '2025-3-1' is not a date"),
        ("2000-01-01", "2099-01-01", "the period is 36161 days; at most 3660 at once"),
        ("1999-12-31", "2000-01-01", "from: 1999-12-31 is out of range"),
    ],
)
def test_bad_periods_say_what_is_wrong(first: str, last: str, says: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        period(first, last)
    assert says in raised.value.message


async def test_the_api_serves_the_report_to_admins_only(labyard: Labyard) -> None:
    query = {"from": FROM, "to": TO}
    async with client(labyard, "admin") as admin:
        r = await admin.get("/api/admin/analytics", params=query)
        assert r.status_code == 200, r.text
        report = r.json()
        # The API asks at the real now: the period is long over, so the figures are those.
        for key, expected in EXPECTED.items():
            assert report[key] == expected, key
        for params, says in (
            ({"from": TO, "to": FROM}, "is after to"),
            ({"from": "2025-13-01", "to": TO}, "is not a date"),
            ({"from": "2000-01-01", "to": "2030-01-01"}, "at most 3660"),
            ({"from": FROM}, "to"),
        ):
            bad = await admin.get("/api/admin/analytics", params=params)
            assert bad.status_code == 422, bad.text
            assert says in bad.json()["error"]["message"]
    async with client(labyard, "learner") as learner:
        r = await learner.get("/api/admin/analytics", params=query)
        assert r.status_code == 403, r.text
        r = await learner.get("/api/admin/analytics/top_playgrounds.csv", params=query)
        assert r.status_code == 403, r.text
    async with client(labyard, None) as nobody:
        assert (await nobody.get("/api/admin/analytics", params=query)).status_code == 401


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


async def test_each_table_exports_as_csv(labyard: Labyard) -> None:
    query = {"from": FROM, "to": TO}
    tables: dict[str, list[list[str]]] = {}
    async with client(labyard, "admin") as admin:
        for table in ("top_playgrounds", "top_content", "revenue_by_month", "country_tiers"):
            r = await admin.get(f"/api/admin/analytics/{table}.csv", params=query)
            assert r.status_code == 200, r.text
            assert r.headers["content-type"].startswith("text/csv")
            disposition = r.headers["content-disposition"]
            assert f'filename="labyard-{table}-{FROM}-{TO}.csv"' in disposition
            tables[table] = rows(r.text)
        missing = await admin.get("/api/admin/analytics/nothing.csv", params=query)
        assert missing.status_code == 404, missing.text
    assert tables["top_playgrounds"] == [
        ["name", "launches", "machine_minutes"],
        ["linux", "5", "371.0"],
        ["docker", "2", "90.0"],
        ["linux-cluster", "1", "60.0"],
    ]
    assert tables["top_content"] == [
        ["key", "started", "solved"],
        ["challenges/a", "2", "1"],
        ["tutorials/t", "1", "1"],
        ["challenges/b", "0", "1"],
    ]
    assert tables["revenue_by_month"] == [
        ["month", "currency", "amount"],
        ["2025-03", "EUR", "1200"],
        ["2025-03", "USD", "36000"],
    ]
    assert tables["country_tiers"] == [
        ["tier", "accounts", "currency", "revenue"],
        ["t1", "1", "USD", "1500"],
        ["t2", "2", "EUR", "1200"],
        ["t2", "2", "USD", "30000"],
        ["", "1", "USD", "4500"],
    ]


def run_cli(labyard: Labyard, *args: str) -> subprocess.CompletedProcess[str]:
    settings = labyard.settings
    env = {
        **os.environ,
        "LABYARD_DATA_DIR": str(settings.data_dir),
        "LABYARD_IMAGES_DIR": str(settings.images_dir),
        "LABYARD_DATABASE_URL": settings.database_url,
        "COLUMNS": "120",
    }
    return subprocess.run(
        [str(REPO / ".venv/bin/labyard"), "admin", "analytics", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_the_cli_prints_the_report(labyard: Labyard) -> None:
    result = run_cli(labyard, "--from", FROM, "--to", TO, "--json")
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    for key, expected in EXPECTED.items():
        assert report[key] == expected, key

    table = run_cli(labyard, "--from", FROM, "--to", TO)
    assert table.returncode == 0, table.stderr
    text = table.stdout
    for line in ("launches", "free-play share", "paid usage share", "linux-cluster", "MRR"):
        assert line in text, text
    assert "62.5 %" in text and "+5" in text, text  # 5/8 of launches; 8 against 3
    assert "70.00 USD" in text, text  # MRR, in major units

    bad = run_cli(labyard, "--from", TO, "--to", FROM)
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.startswith("labyard: from (2025-03-10) is after to (2025-03-01)")
    assert "Traceback" not in bad.stderr
    usage = run_cli(labyard, "--from", FROM)
    assert usage.returncode == 2 and "Missing option '--to'" in usage.stderr, usage.stderr
