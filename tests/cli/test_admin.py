"""`labyard admin plans|grant|grants|revoke|orders|mark-paid|refund`: the installed command, run as
the operator would on the server's host, against a fresh SQLite or PostgreSQL database."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from labyard.services import Labyard
from labyard.settings import Settings
from tests.conftest import IMAGES_DIR, REPO
from tests.store.databases import KINDS, fresh_database_url

PASSWORD = "a long password"


@pytest.fixture(params=KINDS)
def data_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    with fresh_database_url(request.param, tmp_path) as url:
        path = tmp_path / "data"
        path.mkdir()
        (path / "url").write_text(url)
        yield path


def admin(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LABYARD_DATA_DIR": str(data_dir),
        "LABYARD_DATABASE_URL": (data_dir / "url").read_text(),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [str(REPO / ".venv/bin/labyard"), "admin", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], says: str) -> None:
    shown = f"exit {result.returncode}: {result.stderr}"
    assert result.returncode not in (0, 1), shown  # a labyard error's own code, not a crash
    assert "Traceback" not in result.stderr, shown
    assert result.stderr.startswith("labyard: "), shown
    assert says in result.stderr, shown


def open_instance(data_dir: Path) -> Labyard:
    url = (data_dir / "url").read_text()
    return Labyard(Settings(data_dir=data_dir, images_dir=IMAGES_DIR, database_url=url))


def test_plans_lists_the_plans_in_force_and_checks_a_file(data_dir: Path) -> None:
    plans = json.loads(ok(admin(data_dir, "plans", "--json")))
    assert [p["name"] for p in plans] == ["free", "premium"]
    assert plans[0]["default"] and not plans[1]["default"]
    assert plans[1]["prices"]["monthly"] == "15.00"
    assert plans[0]["limits"]["daily_machine_minutes"] == 120
    table = ok(admin(data_dir, "plans"))
    assert "premium" in table and "15.00 USD" in table

    bad = data_dir / "candidate.yaml"
    bad.write_text("default: free\nplans:\n  free:\n    title: Free\n    rank: zero\n")
    result = admin(data_dir, "plans", "--check", str(bad))
    refused(result, "invalid plans file")
    assert f"{bad}:5: plans.free.rank" in result.stderr
    assert f"{bad}:4: plans.free.limits: Field required" in result.stderr
    refused(admin(data_dir, "plans", "--check", str(data_dir / "nope.yaml")), "no such file")


def test_grant_grants_revoke_change_the_effective_plan(data_dir: Path) -> None:
    ok(admin(data_dir, "create-user", "ada@example.org", stdin=PASSWORD + "\n"))
    granted = json.loads(
        ok(admin(data_dir, "grant", "Ada@Example.org", "premium", "--days", "7", "--json"))
    )
    assert granted["plan"] == "premium" and granted["kind"] == "manual"
    ends = datetime.fromisoformat(granted["ends_at"])
    assert timedelta(days=6, hours=23) < ends - datetime.now(UTC) <= timedelta(days=7)

    listed = json.loads(ok(admin(data_dir, "grants", "ada@example.org", "--json")))
    assert listed["plan"] == "premium"
    assert [g["id"] for g in listed["grants"]] == [granted["id"]]

    labyard = open_instance(data_dir)
    try:
        user = labyard.accounts.by_email("ada@example.org")
        assert user.plan == "premium"
        revoked = json.loads(ok(admin(data_dir, "revoke", str(granted["id"]), "--json")))
        assert revoked["revoked_at"] is not None
        assert labyard.entitlements.effective(user.id).name == "free"
    finally:
        labyard.close()

    trial = admin(data_dir, "grant", "ada@example.org", "premium", "--until", "2099-01-31")
    assert ok(trial).strip().isdigit()
    assert "granted premium to ada@example.org" in trial.stderr
    listed = json.loads(ok(admin(data_dir, "grants", "ada@example.org", "--json")))
    assert listed["grants"][-1]["ends_at"].startswith("2099-02-01T00:00:00")


def test_grant_refuses_bad_input_and_changes_nothing(data_dir: Path) -> None:
    ok(admin(data_dir, "create-user", "bob@example.org", stdin=PASSWORD + "\n"))
    refused(admin(data_dir, "grant", "nobody@example.org", "premium"), "no account for nobody")
    refused(admin(data_dir, "grant", "bob@example.org", "gold"), "unknown plan 'gold'")
    refused(admin(data_dir, "grant", "bob@example.org", "premium", "--until", "soon"), "--until")
    refused(
        admin(
            data_dir, "grant", "bob@example.org", "premium", "--days", "3", "--until", "2099-01-01"
        ),
        "not both",
    )
    refused(admin(data_dir, "grant", "bob@example.org", "premium", "--kind", "seat"), "--kind")
    refused(admin(data_dir, "revoke", "999"), "no entitlement 999")
    guest = admin(data_dir, "create-user", "g@example.org", "--role", "guest", stdin=PASSWORD)
    refused(guest, "guests join a class")
    listed = json.loads(ok(admin(data_dir, "grants", "bob@example.org", "--json")))
    assert listed == {"email": "bob@example.org", "plan": "free", "grants": []}


def test_orders_and_mark_paid(data_dir: Path) -> None:
    ok(admin(data_dir, "create-user", "cy@example.org", stdin=PASSWORD + "\n"))
    labyard = open_instance(data_dir)
    try:
        user = labyard.accounts.by_email("cy@example.org")
        order, _ = labyard.billing.orders.checkout(user, "premium", "yearly", "http://x/")
    finally:
        labyard.close()

    pending = json.loads(ok(admin(data_dir, "orders", "--status", "pending", "--json")))
    assert [(o["id"], o["amount"], o["account_id"]) for o in pending] == [
        (order.id, 12000, user.id)
    ]
    assert json.loads(ok(admin(data_dir, "orders", "--flagged", "--json"))) == []
    assert order.id in ok(admin(data_dir, "orders"))

    paid = json.loads(ok(admin(data_dir, "mark-paid", order.id, "--json")))
    assert paid["status"] == "paid"
    refused(admin(data_dir, "mark-paid", order.id), "not pending")
    refused(admin(data_dir, "mark-paid", "ord_nothing"), "no order ord_nothing")
    listed = json.loads(ok(admin(data_dir, "grants", "cy@example.org", "--json")))
    assert listed["plan"] == "premium"
    assert listed["grants"][0]["source"].startswith(f"order {order.id}")

    refunded = json.loads(ok(admin(data_dir, "refund", order.id, "--json")))
    assert refunded["status"] == "refunded"
    refused(admin(data_dir, "refund", order.id), "is refunded, not paid")
    refused(admin(data_dir, "refund", "ord_nothing"), "no order ord_nothing")
    after = json.loads(ok(admin(data_dir, "grants", "cy@example.org", "--json")))
    assert after["plan"] == "free"
