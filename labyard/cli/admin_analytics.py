"""`labyard admin analytics --from DAY --to DAY [--json]`: the analytics report, read on the
server's host against its data directory and database (like `labyard admin create-user`).
`--json` prints exactly what `GET /api/admin/analytics` answers; without it, rich tables.
The figures are services/analytics.py's (docs/analytics.md defines each)."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from labyard.cli._common import out, print_json

SHARES = {"free_play_share", "paid_usage_share", "paid_accounts_share"}
LABELS = {
    "launches": "launches",
    "free_play_share": "free-play share",
    "machine_minutes": "machine-minutes",
    "paid_machine_minutes": "paid machine-minutes",
    "paid_usage_share": "paid usage share",
    "active_accounts": "active accounts",
    "paid_accounts": "paid accounts",
    "paid_accounts_share": "paid accounts share",
    "new_paid": "new paid accounts",
    "churned": "churned accounts",
    "mrr": "MRR",
    "revenue": "revenue",
}


def analytics(
    first: str = typer.Option(..., "--from", help="First day, YYYY-MM-DD (UTC)."),
    last: str = typer.Option(..., "--to", help="Last day, YYYY-MM-DD (included)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Usage and revenue for a period, each headline figure against the previous period."""
    from labyard.cli._common import local
    from labyard.services.analytics import period

    found = period(first, last)  # a bad period fails before the database is opened
    with local() as labyard:
        report = labyard.analytics.report(found)
    if as_json:
        print_json(report)
        return
    _print(report)


def _money(amounts: dict[str, int]) -> str:
    """Minor units as major ones: {"USD": 7000} -> `70.00 USD`."""
    return ", ".join(f"{amount / 100:,.2f} {c}" for c, amount in amounts.items()) or "0"


def _value(key: str, value: Any) -> str:
    if isinstance(value, dict):
        return _money(value)
    if key in SHARES:
        return f"{value * 100:.1f} %"
    return f"{value:,g}" if isinstance(value, float) else f"{value:,}"


def _change(key: str, value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{amount / 100:+,.2f} {c}" for c, amount in value.items()) or "0"
    if key in SHARES:
        return f"{value * 100:+.1f} pts"
    return f"{value:+,g}" if isinstance(value, float) else f"{value:+,}"


def _cell(column: str, value: Any) -> str:
    if column == "amount":
        return f"{value / 100:,.2f}"
    return f"{value:,}" if isinstance(value, int | float) else str(value)


def _print(report: dict[str, Any]) -> None:
    days, before = report["period"], report["previous_period"]
    headline = Table(
        title=f"{days['from']} to {days['to']} ({days['days']} days), "
        f"against {before['from']} to {before['to']}",
        title_justify="left",
    )
    for column in ("", "value", "previous", "change"):
        headline.add_column(column, justify="left" if not column else "right")
    for key, label in LABELS.items():
        headline.add_row(
            label,
            _value(key, report[key]),
            _value(key, report["previous"][key]),
            _change(key, report["change"][key]),
        )
    out.print(headline)
    tables = (
        ("top playgrounds", ("name", "launches", "machine_minutes"), report["top_playgrounds"]),
        ("top content", ("key", "started", "solved"), report["top_content"]),
        ("revenue by month", ("month", "currency", "amount"), report["revenue_by_month"]),
    )
    for title, columns, rows in tables:
        table = Table(title=title, title_justify="left")
        for column in columns:
            right = column in ("launches", "machine_minutes", "started", "solved", "amount")
            table.add_column(column.replace("_", " "), justify="right" if right else "left")
        for row in rows:
            table.add_row(*(_cell(column, row[column]) for column in columns))
        out.print(table)
    tiers = Table(title="country tiers", title_justify="left")
    for column in ("tier", "accounts", "revenue"):
        tiers.add_column(column, justify="right" if column == "accounts" else "left")
    for row in report["country_tiers"]:
        tiers.add_row(row["tier"] or "untiered", str(row["accounts"]), _money(row["revenue"]))
    out.print(tiers)
