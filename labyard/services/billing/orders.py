"""Orders: a learner buys a plan (monthly, yearly, lifetime, or seats), the provider takes
the payment, and a paid order grants the plan as an entitlement whose once key is the
order's id (so a replayed event or a double click grants it once).

Learners see their own orders only: another account's order is NotFound, exactly like one
that does not exist. Admins see every order and mark manual ones paid.
"""

from __future__ import annotations

import builtins
import calendar
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labyard.errors import Conflict, Forbidden, InvalidInput, NotFound
from labyard.services.accounts import User
from labyard.services.billing.provider import CheckoutRequest, Provider
from labyard.services.entitlements import Entitlements
from labyard.services.plans import Plan, PlanBook
from labyard.store import (
    Database,
    EntitlementKind,
    EntitlementRow,
    OrderKind,
    OrderRow,
    OrderStatus,
    Role,
)

INTERVALS = ("monthly", "yearly", "lifetime")
MAX_SEATS = 10_000


def _now() -> datetime:
    return datetime.now(UTC)


def add_interval(start: datetime, interval: str) -> datetime | None:
    """When a period that starts at `start` ends: a calendar month or year on (the 31st
    becomes the month's last day), or None for lifetime."""
    if interval == "lifetime":
        return None
    months = 1 if interval == "monthly" else 12
    month0 = start.month - 1 + months
    year, month = start.year + month0 // 12, month0 % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)


def minor_units(amount: Decimal) -> int:
    """15.00 -> 1500 (plans.yaml prices have at most two decimals)."""
    return int((amount * 100).to_integral_value())


@dataclass(frozen=True)
class Order:
    id: str
    account_id: int
    plan: str
    kind: str
    interval: str
    quantity: int
    currency: str
    amount: int
    status: str
    provider: str
    created_at: datetime
    paid_at: datetime | None
    flagged: bool
    flag_reason: str
    refs: dict[str, str | None]
    """The provider's ids (checkout session, subscription, customer, invoice, charge)."""

    @property
    def awaiting_payment(self) -> bool:
        return self.status == OrderStatus.PENDING and self.provider == "manual"

    def to_json(self, *, admin: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            key: getattr(self, key)
            for key in ("id", "plan", "kind", "interval", "quantity", "currency", "amount")
        }
        data.update(
            status=self.status,
            provider=self.provider,
            awaiting_payment=self.awaiting_payment,
            created_at=self.created_at.isoformat(),
            paid_at=self.paid_at.isoformat() if self.paid_at else None,
        )
        if admin:
            data.update(
                account_id=self.account_id,
                flagged=self.flagged,
                flag_reason=self.flag_reason,
                **self.refs,
            )
        return data


def order_of(row: OrderRow) -> Order:
    refs = {
        "checkout_session_id": row.checkout_session_id,
        "subscription_id": row.subscription_id,
        "customer_id": row.customer_id,
        "invoice_id": row.invoice_id,
        "charge_id": row.charge_id,
        "quoted_country": row.quoted_country,
        "card_country": row.card_country,
    }
    return Order(
        row.id,
        row.account_id,
        row.plan,
        row.kind,
        row.interval,
        row.quantity,
        row.currency,
        row.amount,
        row.status,
        row.provider,
        row.created_at,
        row.paid_at,
        row.flagged,
        row.flag_reason,
        refs,
    )


def require_admin(user: User) -> None:
    if user.role != Role.ADMIN:
        raise Forbidden("only admins may see or change other accounts' orders")


def fulfil(
    session: Session,
    entitlements: Entitlements,
    order: OrderRow,
    at: datetime,
    ends_at: datetime | None,
) -> str:
    """Mark `order` paid at `at` and grant its plan until `ends_at` (lifetime: no end), in
    the caller's transaction. Seats are paid here and handed out by teams (not a grant to
    the buyer). A refunded or cancelled order stays so."""
    if order.status in (OrderStatus.REFUNDED, OrderStatus.CANCELLED):
        return f"ignored: order {order.status} already"
    if order.status != OrderStatus.PAID:
        order.status, order.paid_at = OrderStatus.PAID, at
    order.updated_at = _now()
    if order.kind == OrderKind.SEATS or order.entitlement_id is not None:
        return "paid"
    kind = (
        EntitlementKind.LIFETIME
        if order.kind == OrderKind.LIFETIME
        else EntitlementKind.SUBSCRIPTION
    )
    if ends_at is not None and ends_at <= at:
        return "paid; its period is over already, nothing granted"
    grant = entitlements.grant_in(
        session,
        order.account_id,
        order.plan,
        kind,
        source=f"order {order.id} ({order.provider})",
        starts_at=at,
        ends_at=ends_at,
        once_key=order.id,
    )
    order.entitlement_id = grant.id
    return "paid; granted"


def revoke_order(session: Session, order: OrderRow, at: datetime) -> None:
    """A refund: the order is refunded and its grant ends now (kept, revoked, for history)."""
    order.status, order.updated_at = OrderStatus.REFUNDED, _now()
    if order.entitlement_id is not None:
        grant = session.get(EntitlementRow, order.entitlement_id)
        if grant is not None and grant.revoked_at is None:
            grant.revoked_at = at


class Orders:
    def __init__(
        self,
        db: Database,
        plans: PlanBook,
        entitlements: Entitlements,
        providers: dict[str, Provider],
        checkout_provider: str,
    ) -> None:
        self.db = db
        self.plans = plans
        self.entitlements = entitlements
        self.providers = providers
        self.checkout_provider = checkout_provider
        """Which provider new checkouts go through (`stripe` when configured, else `manual`)."""

    # -- learners -------------------------------------------------------------------------

    def checkout(
        self, user: User, plan_name: str, interval: str, base_url: str, seats: int | None = None
    ) -> tuple[Order, str]:
        """Create a pending order and start paying for it: (the order, where to send the
        buyer). A provider that fails leaves the order `failed`."""
        plan = self.plans.get(plan_name)
        kind, quantity = _kind(interval, seats)
        unit = _price(plan, interval)
        provider = self.providers[self.checkout_provider]
        row = self._new_order(user, plan, kind, interval, quantity, unit, provider.name)
        account = f"{base_url.rstrip('/')}/account"
        request = CheckoutRequest(
            row.id,
            plan.name,
            plan.title,
            kind,
            interval,
            quantity,
            plan.prices.currency,
            unit,
            user.id,
            user.email,
            f"{account}?order={row.id}#billing",
            f"{account}#billing",
        )
        try:
            started = provider.checkout(request)
        except Exception:
            self._set_status(row.id, OrderStatus.FAILED)
            raise
        with self.db.session() as session:
            found = session.get(OrderRow, row.id)
            if found is not None:
                found.checkout_session_id = started.session_id
                row = found
        return order_of(row), started.url

    def _new_order(
        self,
        user: User,
        plan: Plan,
        kind: str,
        interval: str,
        quantity: int,
        unit: int,
        provider: str,
    ) -> OrderRow:
        now = _now()
        row = OrderRow(
            id=f"ord_{secrets.token_hex(8)}",
            account_id=user.id,
            plan=plan.name,
            kind=kind,
            interval=interval,
            quantity=quantity,
            currency=plan.prices.currency,
            amount=unit * quantity,
            status=OrderStatus.PENDING,
            provider=provider,
            flagged=False,
            flag_reason="",
            created_at=now,
            updated_at=now,
        )
        with self.db.session() as session:
            session.add(row)
        return row

    def _set_status(self, order_id: str, status: str) -> None:
        with self.db.session() as session:
            row = session.get(OrderRow, order_id)
            if row is not None:
                row.status, row.updated_at = status, _now()

    def list(self, user: User) -> builtins.list[Order]:
        """The user's own orders, newest first."""
        query = select(OrderRow).where(OrderRow.account_id == user.id)
        with self.db.session() as session:
            rows = session.scalars(query.order_by(OrderRow.created_at.desc(), OrderRow.id))
            return [order_of(row) for row in rows]

    def get(self, user: User, order_id: str) -> Order:
        """One of the user's own orders (an admin may read any)."""
        with self.db.session() as session:
            row = session.get(OrderRow, order_id)
            if row is None or (row.account_id != user.id and user.role != Role.ADMIN):
                raise NotFound(f"no order {order_id}")
            return order_of(row)

    def portal(self, user: User, return_url: str) -> str:
        """The provider's subscription portal for the user's latest customer id."""
        query = (
            select(OrderRow)
            .where(OrderRow.account_id == user.id, OrderRow.customer_id.is_not(None))
            .order_by(OrderRow.created_at.desc())
            .limit(1)
        )
        with self.db.session() as session:
            row = session.scalar(query)
        if row is None or row.customer_id is None or row.provider not in self.providers:
            raise NotFound("no subscription to manage: nothing was bought through a provider yet")
        return self.providers[row.provider].portal(row.customer_id, return_url)

    def has_portal(self, user: User) -> bool:
        query = select(OrderRow.id).where(
            OrderRow.account_id == user.id,
            OrderRow.customer_id.is_not(None),
            OrderRow.provider != "manual",
        )
        with self.db.session() as session:
            return session.scalar(query.limit(1)) is not None

    # -- admins ---------------------------------------------------------------------------

    def list_all(self, actor: User, status: str | None = None) -> builtins.list[Order]:
        require_admin(actor)
        query = select(OrderRow)
        if status is not None:
            query = query.where(OrderRow.status == status)
        with self.db.session() as session:
            rows = session.scalars(query.order_by(OrderRow.created_at.desc(), OrderRow.id))
            return [order_of(row) for row in rows]

    def mark_paid(self, actor: User, order_id: str) -> Order:
        """An admin says a manual order was paid: it is paid now and grants its plan."""
        require_admin(actor)
        now = _now()
        with self.db.session() as session:
            row = session.get(OrderRow, order_id, with_for_update=True)
            if row is None:
                raise NotFound(f"no order {order_id}")
            if row.provider != "manual":
                raise Conflict(f"order {order_id} is paid through {row.provider}, not by hand")
            if row.status != OrderStatus.PENDING:
                raise Conflict(f"order {order_id} is {row.status}, not pending")
            fulfil(session, self.entitlements, row, now, add_interval(now, row.interval))
            return order_of(row)


def _kind(interval: str, seats: int | None) -> tuple[str, int]:
    if interval not in INTERVALS:
        raise InvalidInput(f"unknown interval {interval!r} (intervals: {', '.join(INTERVALS)})")
    if seats is None:
        return (OrderKind.LIFETIME if interval == "lifetime" else OrderKind.SUBSCRIPTION), 1
    if interval == "lifetime":
        raise InvalidInput("seats are sold monthly or yearly, not for a lifetime")
    if not 1 <= seats <= MAX_SEATS:
        raise InvalidInput(f"seats must be between 1 and {MAX_SEATS}")
    return OrderKind.SEATS, seats


def _price(plan: Plan, interval: str) -> int:
    price: Decimal | None = getattr(plan.prices, interval)
    if price is None or price <= 0:
        raise InvalidInput(f"the {plan.title} plan is not sold {interval}")
    return minor_units(price)


def provisional_end(order: OrderRow, at: datetime) -> datetime | None:
    """A subscription's end before the provider has said its period end: one interval on."""
    return add_interval(at, order.interval)
