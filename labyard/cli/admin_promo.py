"""`labyard admin promo create|list|show|disable`: promo codes, made and read on the server's
host against its data directory and database (like `labyard admin create-user`). Results on
stdout (`--json` for scripts), messages on stderr. The rules are services/billing/promos.py's.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from labyard.cli._common import err, out, print_json

promo = typer.Typer(help="Make, list and disable promo codes.", no_args_is_help=True)


@promo.command("create")
def create(
    code: str = typer.Argument(..., help="3 to 40 letters, digits, - or _ (any case)."),
    percent: int = typer.Option(None, "--percent", min=1, max=99, help="Percent off."),
    amount: str = typer.Option(None, "--amount", help="Or an amount off each unit: 5.00."),
    currency: str = typer.Option(None, "--currency", help="The amount's currency (USD)."),
    max_redemptions: int = typer.Option(
        None, "--max", min=1, help="How many orders may use it (default: no limit)."
    ),
    expires: str = typer.Option(
        None, "--expires", help="Good through this day (YYYY-MM-DD, UTC), or an ISO date-time."
    ),
    first_purchase: bool = typer.Option(
        False, "--first-purchase", help="Only for accounts that never bought before."
    ),
    plans: list[str] = typer.Option(
        [], "--plan", help="Only for this plan (repeat for more; default: every plan)."
    ),
    note: str = typer.Option("", "--note", help="What it is for, for the record."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Make a promo code."""
    from labyard.cli._common import local

    with local() as labyard:  # imports the services: promos.py only after that
        from labyard.services.billing.promos import NewPromo, parse_expiry

        new = NewPromo(
            code=code,
            percent=percent,
            amount=amount,
            currency=currency,
            max_redemptions=max_redemptions,
            expires_at=parse_expiry(expires) if expires else None,
            first_purchase_only=first_purchase,
            plans=tuple(plans),
            note=note,
        )
        made = labyard.billing.promos.create(None, new)
    if as_json:
        print_json(made.to_json())
        return
    out.print(made.code)
    err.print(f"created promo code {made.code}: {made.off} off")


@promo.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every promo code, newest first."""
    from labyard.cli._common import local

    with local() as labyard:
        found = [p.to_json() for p in labyard.billing.promos.list(None)]
    if as_json:
        print_json(found)
        return
    table = Table("code", "off", "used", "expires", "rules", "state")
    for p in found:
        table.add_row(
            p["code"],
            p["off"],
            f"{p['used']}" + (f" / {p['max_redemptions']}" if p["max_redemptions"] else ""),
            (p["expires_at"] or "never")[:16],
            _rules(p),
            p["state"],
        )
    out.print(table)


def _rules(p: dict[str, Any]) -> str:
    rules = ["first purchase"] if p["first_purchase_only"] else []
    if p["plans"]:
        rules.append("plans: " + ", ".join(p["plans"]))
    return "; ".join(rules) or "-"


@promo.command("show")
def show(
    code: str = typer.Argument(..., help="The promo code."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """One promo code and every order that used it."""
    from labyard.cli._common import local

    with local() as labyard:
        found, uses = labyard.billing.promos.get(None, code)
    data = {**found.to_json(), "redemptions": [use.to_json() for use in uses]}
    if as_json:
        print_json(data)
        return
    table = Table("order", "account", "status", "discount", "reserved")
    for use in data["redemptions"]:
        off = f"{use['discount'] / 100:.2f} {use['currency']}"
        table.add_row(
            use["order_id"], str(use["account_id"]), use["status"], off, use["reserved_at"][:16]
        )
    err.print(f"{found.code}: {found.off} off, used {found.used}, {data['state']}")
    out.print(table)


@promo.command("disable")
def disable(
    code: str = typer.Argument(..., help="The promo code."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Stop a promo code: no new checkout takes it (orders holding it keep their discount)."""
    from labyard.cli._common import local

    with local() as labyard:
        done = labyard.billing.promos.disable(None, code)
    if as_json:
        print_json(done.to_json())
        return
    out.print(done.code)
    err.print(f"disabled promo code {done.code}")
