"""Orders: a learner buys a plan (monthly, yearly, lifetime, or seats), the provider takes
the payment, and a paid order grants the plan as an entitlement whose once key is the
order's id (so a replayed event or a double click grants it once).

Learners see their own orders only: another account's order is NotFound, exactly like one
that does not exist. Admins see every order and mark manual ones paid.
"""

from __future__ import annotations

import builtins
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labyard.errors import Conflict, Forbidden, InvalidInput, NotFound
from labyard.services.accounts import User
from labyard.services.billing import promos
from labyard.services.billing.periods import add_interval
from labyard.services.billing.provider import CheckoutRequest, Provider
from labyard.services.billing.quotes import Quote, quote
from labyard.services.entitlements import Entitlements
from labyard.services.plans import Plan, PlanBook
from labyard.services.pricing import Pricing
from labyard.services.teams import check_buyer, seats_paid, seats_refunded
from labyard.store import Database, EntitlementRow, OrderRow
from labyard.types import EntitlementKind, OrderKind, OrderStatus, Role

if TYPE_CHECKING:
    from labyard.services.billing.invoices import Invoices

INTERVALS = ("monthly", "yearly", "lifetime")
COUNTRY_FLAG = "card country differs"
MAX_SEATS = 10_000


def _now() -> datetime:
    return datetime.now(UTC)


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
    team_id: str | None = None
    """A seats order's team (services/teams.py)."""
    price_tier: str | None = None
    """The country tier it was priced in (None: not country-priced)."""
    promo_code: str | None = None
    discount: int = 0
    """What discounts (promo code, group discount) took off `amount`."""

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
            team_id=self.team_id,
            promo_code=self.promo_code,
            discount=self.discount,
        )
        if admin:
            data.update(
                account_id=self.account_id,
                price_tier=self.price_tier,
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
        row.team_id,
        price_tier=row.price_tier,
        promo_code=row.promo_code,
        discount=row.discount,
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
    the caller's transaction. Seats go to a team (teams.py), not to the buyer as a grant.
    A refunded or cancelled order stays so."""
    if order.status in (OrderStatus.REFUNDED, OrderStatus.CANCELLED):
        return f"ignored: order {order.status} already"
    if order.status != OrderStatus.PAID:
        order.status, order.paid_at = OrderStatus.PAID, at
        promos.redeemed(session, order.id, at)
    order.updated_at = _now()
    if order.kind == OrderKind.SEATS:
        return seats_paid(session, order, at, ends_at)
    if order.entitlement_id is not None:
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


def card_country(order: OrderRow, country: object, *, from_card: bool) -> None:
    """Record the country the provider reports for the payment: the card's own (`from_card`)
    over the billing address's, which only fills a gap. An order priced for its country
    (`price_tier`) whose card is from another is flagged for the operator; it keeps its
    grant. Idempotent."""
    if not (isinstance(country, str) and len(country) == 2 and country.isalpha()):
        return
    if order.card_country is not None and not from_card:
        return
    order.card_country = country.upper()
    mismatch = order.price_tier is not None and order.quoted_country not in (
        None,
        order.card_country,
    )
    if mismatch:
        order.flagged = True
        order.flag_reason = (
            f"{COUNTRY_FLAG}: priced for {order.quoted_country} (tier {order.price_tier}), "
            f"paid with a card from {order.card_country}; the plan was granted all the same"
        )
    elif order.flag_reason.startswith(COUNTRY_FLAG):
        order.flagged, order.flag_reason = False, ""


def revoke_order(session: Session, order: OrderRow, at: datetime) -> None:
    """A refund: the order is refunded and its grant ends now (kept, revoked, for history);
    a seats order's seats end now, and their holders' grants."""
    order.status, order.updated_at = OrderStatus.REFUNDED, _now()
    if order.kind == OrderKind.SEATS:
        seats_refunded(session, order, at)
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
        pricing: Pricing,
        invoices: Invoices,
    ) -> None:
        self.db = db
        self.plans = plans
        self.pricing = pricing
        self.invoices = invoices
        self.entitlements = entitlements
        self.providers = providers
        self.checkout_provider = checkout_provider
        """Which provider new checkouts go through (`stripe` when configured, else `manual`)."""

    # -- learners -------------------------------------------------------------------------

    def checkout(
        self,
        user: User,
        plan_name: str,
        interval: str,
        base_url: str,
        seats: int | None = None,
        team_id: str | None = None,
        country: str | None = None,
        promo_code: str | None = None,
    ) -> tuple[Order, str]:
        """Create a pending order and start paying for it: (the order, where to send the
        buyer). A provider that fails leaves the order `failed`. Seats go to a new team of
        the buyer's, or to `team_id` if given (its admins buy more).

        The price is the quote (quotes.py) for the buyer's `country` (None: not known) and
        `promo_code`, whose use is reserved with the order (promos.py); the provider is
        sent exactly the quoted unit amount and quantity."""
        plan = self.plans.get(plan_name)
        kind, _ = _kind(interval, seats)
        self._check_team(user, team_id, seats)
        provider = self.providers[self.checkout_provider]
        row, priced = self._new_order(user, plan, kind, interval, seats, country, promo_code)
        account = f"{base_url.rstrip('/')}/account"
        request = CheckoutRequest(
            row.id,
            plan.name,
            plan.title,
            kind,
            interval,
            priced.quantity,
            priced.currency,
            priced.unit_amount,
            user.id,
            user.email,
            f"{account}?order={row.id}#billing",
            f"{account}#billing",
            provider_promotions=priced.full_price,
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
                found.team_id = team_id
                row = found
        return order_of(row), started.url

    def _check_team(self, user: User, team_id: str | None, seats: int | None) -> None:
        if team_id is None:
            return
        if seats is None:
            raise InvalidInput("team_id names the team to buy seats for: give seats too")
        with self.db.session() as session:
            check_buyer(session, user.id, team_id)

    def _new_order(
        self,
        user: User,
        plan: Plan,
        kind: str,
        interval: str,
        seats: int | None,
        country: str | None,
        promo_code: str | None,
    ) -> tuple[OrderRow, Quote]:
        """The pending order at its quoted price, and the promo code's use reserved, in one
        transaction (a refused code creates no order)."""
        now = _now()
        with self.db.session() as session:
            terms = (
                promos.check(session, promo_code, user.id, plan.name, now) if promo_code else None
            )
            priced = quote(self.pricing, plan, interval, country, seats, terms)
            row = OrderRow(
                id=f"ord_{secrets.token_hex(8)}",
                account_id=user.id,
                plan=plan.name,
                kind=kind,
                interval=interval,
                quantity=priced.quantity,
                currency=priced.currency,
                amount=priced.total,
                status=OrderStatus.PENDING,
                provider=self.checkout_provider,
                quoted_country=country,
                price_tier=str(priced.tier) if priced.tier is not None else None,
                promo_code=priced.promo_code,
                discount=priced.discount,
                flagged=False,
                flag_reason="",
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            if terms is not None and priced.promo_code is not None:
                session.flush()  # the redemption refers to the order
                promos.reserve(session, row, terms, priced.discount, now)
        return row, priced

    def quote(
        self,
        plan_name: str,
        interval: str,
        country: str | None,
        seats: int | None = None,
    ) -> Quote:
        """What the plan costs a buyer in `country` (the pricing page), without a code."""
        _kind(interval, seats)
        return quote(self.pricing, self.plans.get(plan_name), interval, country, seats)

    def price_list(self, country: str | None, seats: int | None = None) -> builtins.list[Quote]:
        """Every plan for sale, every interval it is sold at (seats: monthly and yearly),
        priced for `country`."""
        return [
            self.quote(plan.name, interval, country, seats)
            for plan in self.plans.plans.values()
            if plan.paid
            for interval in INTERVALS
            if (getattr(plan.prices, interval) or 0) > 0
            and not (seats is not None and interval == "lifetime")
        ]

    def _set_status(self, order_id: str, status: str) -> None:
        with self.db.session() as session:
            row = session.get(OrderRow, order_id)
            if row is not None:
                row.status, row.updated_at = status, _now()
                if status in (OrderStatus.FAILED, OrderStatus.CANCELLED):
                    promos.release(session, order_id, row.updated_at)

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
        """An admin says a manual order was paid: it is paid now, grants its plan and gets
        its invoice."""
        require_admin(actor)
        now = _now()
        with self.db.session() as session:
            row = _manual_order(session, order_id, OrderStatus.PENDING, "mark it paid")
            fulfil(session, self.entitlements, row, now, add_interval(now, row.interval))
            self.invoices.order_paid(session, row)
            return order_of(row)

    def refund_manual(self, actor: User, order_id: str) -> Order:
        """An admin says a paid manual order was refunded by hand: it is refunded now, its
        grant (or its team's seats) ends now, and its invoice gets a credit note. Orders
        paid through a provider are refunded there; its webhook does the same."""
        require_admin(actor)
        with self.db.session() as session:
            row = _manual_order(session, order_id, OrderStatus.PAID, "refund it")
            revoke_order(session, row, _now())
            self.invoices.refunded(session, row)
            return order_of(row)


def _manual_order(session: Session, order_id: str, status: str, action: str) -> OrderRow:
    """The manual order `order_id`, locked, if it is in `status`; what an admin does by
    hand (`action`) to a provider's order is done at the provider."""
    row = session.get(OrderRow, order_id, with_for_update=True)
    if row is None:
        raise NotFound(f"no order {order_id}")
    if row.provider != "manual":
        raise Conflict(f"order {order_id} is paid through {row.provider}: {action} there")
    if row.status != status:
        raise Conflict(f"order {order_id} is {row.status}, not {status}")
    return row


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


def provisional_end(order: OrderRow, at: datetime) -> datetime | None:
    """A subscription's end before the provider has said its period end: one interval on."""
    return add_interval(at, order.interval)
