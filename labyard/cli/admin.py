"""`labyard admin ...`: the operator's commands, run on the server's host against its data
directory and database (like `labyard serve`), for people and scripts (`--json`)."""

from __future__ import annotations

import getpass
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from labyard.cli import admin_analytics
from labyard.cli._common import err, local, out, print_json
from labyard.cli.admin_lti import lti
from labyard.cli.admin_promo import promo
from labyard.errors import InvalidInput, ManifestError, SettingsFileError
from labyard.settings import Settings

if TYPE_CHECKING:
    from labyard.services.billing.orders import Order


admin = typer.Typer(
    help="Administer accounts, plans, orders and the business.", no_args_is_help=True
)
admin.add_typer(promo, name="promo")
admin.add_typer(lti, name="lti")
admin.command("analytics")(admin_analytics.analytics)


def _password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise InvalidInput("the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\n")


@admin.command("create-user")
def create_user(
    email: str,
    role: str = typer.Option("learner", help="learner, author, instructor or admin."),
    plan: str = typer.Option("free", help="free or premium."),
) -> None:
    """Create an account; the password is read from stdin when it is not a terminal."""
    with local() as labyard:
        user = labyard.accounts.create_user(email, _password(), role=role, plan=plan)
    out.print(user.id)
    err.print(f"created {user.email} ({user.role}, {user.plan})")


# -- plans and grants ---------------------------------------------------------------------


def _day(value: str, option: str) -> datetime:
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidInput(f"{option} {value!r} is not a date (YYYY-MM-DD)") from None


@admin.command("plans")
def plans(
    check: Path = typer.Option(
        None, "--check", help="Validate this plans file instead (exit 1 with its problems)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The plans in force (<data dir>/plans.yaml or the built-in ones): prices and limits."""
    from labyard.manifest.source import read_yaml
    from labyard.services.plans import load_plans, plans_from_source

    if check is not None:
        if not check.is_file():
            raise InvalidInput(f"{check}: no such file")
        try:
            book = plans_from_source(read_yaml(check))
        except ManifestError as exc:  # every problem, as file:line: field: message
            raise SettingsFileError("plans file", exc.problems) from exc
    else:
        book = load_plans(Settings.from_env().data_dir)
    ranked = sorted(book.plans.values(), key=lambda p: p.rank)
    if as_json:
        print_json(
            [
                {
                    "name": plan.name,
                    "title": plan.title,
                    "rank": plan.rank,
                    "default": plan.name == book.default,
                    "prices": {
                        "currency": plan.prices.currency,
                        **{
                            interval: None if amount is None else f"{amount:.2f}"
                            for interval, amount in plan.prices
                            if interval != "currency"
                        },
                    },
                    "limits": plan.limits_json(),
                }
                for plan in ranked
            ]
        )
        return
    table = Table("plan", "title", "monthly", "yearly", "lifetime", "at once", "longest")
    table.add_column("minutes a day")
    for plan in ranked:
        prices = plan.prices
        table.add_row(
            plan.name + (" (default)" if plan.name == book.default else ""),
            plan.title,
            *(
                _price(amount, prices.currency)
                for amount in (prices.monthly, prices.yearly, prices.lifetime)
            ),
            str(plan.concurrent_playgrounds),
            f"{plan.max_lifetime_s // 60} min",
            str(plan.limits.daily_machine_minutes or "-"),
        )
    out.print(table)


def _price(amount: Decimal | None, currency: str) -> str:
    return f"{amount:.2f} {currency}" if amount is not None else "-"


@admin.command("grant")
def grant(
    email: str = typer.Argument(..., help="The account's email."),
    plan: str = typer.Argument(..., help="A plan from plans.yaml."),
    days: int = typer.Option(None, "--days", min=1, help="For this many days from now."),
    until: str = typer.Option(None, "--until", help="Until this day (YYYY-MM-DD, UTC)."),
    kind: str = typer.Option("manual", "--kind", help="manual or trial."),
    note: str = typer.Option("", "--note", help="Why, for the record (the grant's source)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Grant an account a plan (without end unless --days or --until)."""
    if kind not in ("manual", "trial"):
        raise InvalidInput(f"--kind {kind!r}: an admin grants manual or trial entitlements")
    if days is not None and until is not None:
        raise InvalidInput("give --days or --until, not both")
    ends_at = None
    if days is not None:
        ends_at = datetime.now(UTC) + timedelta(days=days)
    elif until is not None:
        ends_at = _day(until, "--until") + timedelta(days=1)  # to the end of that day
    with local() as labyard:
        user = labyard.accounts.by_email(email)
        source = f"admin CLI: {note}" if note else "admin CLI"
        granted = labyard.entitlements.grant(user.id, plan, kind, source=source, ends_at=ends_at)
    if as_json:
        print_json(granted.to_json())
        return
    out.print(granted.id)
    ends = granted.ends_at.isoformat() if granted.ends_at else "no end"
    err.print(f"granted {plan} to {user.email} ({kind}, {ends})")


@admin.command("grants")
def grants(
    email: str = typer.Argument(..., help="The account's email."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Every entitlement an account has had, and its effective plan now."""
    with local() as labyard:
        user = labyard.accounts.by_email(email)
        rows = labyard.entitlements.list(user.id)
    if as_json:
        print_json({"email": user.email, "plan": user.plan, "grants": [g.to_json() for g in rows]})
        return
    now = datetime.now(UTC)
    table = Table("id", "plan", "kind", "source", "starts", "ends", "in force")
    for g in rows:
        ends = "revoked" if g.revoked_at else (g.ends_at.date().isoformat() if g.ends_at else "-")
        table.add_row(
            str(g.id), g.plan, g.kind, g.source, g.starts_at.date().isoformat(), ends,
            "yes" if g.in_force(now) else "",
        )  # fmt: skip
    out.print(table)
    err.print(f"{user.email}: plan {user.plan} now")


@admin.command("revoke")
def revoke(
    entitlement_id: int = typer.Argument(..., help="The grant's id (see `labyard admin grants`)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """End an entitlement now (a paid one too: refund it with the provider as well)."""
    with local() as labyard:
        revoked = labyard.entitlements.revoke(entitlement_id)
    if as_json:
        print_json(revoked.to_json())
    else:
        err.print(f"revoked entitlement {revoked.id} ({revoked.plan}, {revoked.kind})")


# -- orders -------------------------------------------------------------------------------


@admin.command("orders")
def orders(
    status: str = typer.Option(None, "--status", help="pending, paid, failed, refunded..."),
    flagged: bool = typer.Option(False, "--flagged", help="Only orders flagged for a look."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Every order, newest first."""
    with local() as labyard:
        found = labyard.billing.orders.list_all(labyard.accounts.operator(), status)
    found = [o for o in found if o.flagged or not flagged]
    if as_json:
        print_json([o.to_json(admin=True) for o in found])
        return
    table = Table("order", "account", "plan", "interval", "qty", "amount", "status", "paid", "flag")
    for o in found:
        table.add_row(
            o.id, str(o.account_id), o.plan, o.interval, str(o.quantity),
            f"{o.amount / 100:.2f} {o.currency}", o.status,
            o.paid_at.date().isoformat() if o.paid_at else "", o.flag_reason,
        )  # fmt: skip
    out.print(table)


@admin.command("mark-paid")
def mark_paid(
    order_id: str = typer.Argument(..., help="A manual order awaiting payment."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Record that a manual order was paid: its plan is granted now."""
    with local() as labyard:
        order = labyard.billing.orders.mark_paid(labyard.accounts.operator(), order_id)
    _changed(order, as_json, f"order {order.id} paid: {order.plan} granted")


@admin.command("refund")
def refund(
    order_id: str = typer.Argument(..., help="A paid manual order."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Record that a paid manual order was refunded: its plan ends now, its invoice gets a
    credit note. (Provider orders are refunded at the provider.)"""
    with local() as labyard:
        order = labyard.billing.orders.refund_manual(labyard.accounts.operator(), order_id)
    _changed(order, as_json, f"order {order.id} refunded: {order.plan} ended, credit note issued")


def _changed(order: Order, as_json: bool, said: str) -> None:
    """An order an admin changed: as JSON, or one line on stderr."""
    if as_json:
        print_json(order.to_json(admin=True))
    else:
        err.print(said)
