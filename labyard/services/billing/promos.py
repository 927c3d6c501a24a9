"""Promo codes: made by admins (API, web page, `labyard admin promo`), redeemed at checkout.

A code takes a percentage (1-99) or a fixed amount in one currency off each unit of an
order (each seat); it may have a number of redemptions, an expiry, a list of plans, and be
for first purchases only. Each account may use a code once.

Counting, with no count-then-insert race: a checkout with a code *reserves* one use with a
single conditional UPDATE (`used = used + 1 WHERE used < max_redemptions`, also checking it
is neither disabled nor expired), in the transaction that creates the order. PostgreSQL
re-checks that WHERE on the row a concurrent checkout just committed, and SQLite's write
lock makes the updates take turns, so the last use goes to one checkout only. The
reservation becomes a redemption when the order is paid, and is given back (`used - 1`)
when the order is cancelled (a Stripe checkout expires after 24 hours) or its checkout
fails. A refunded order keeps its use: a refund does not hand the code out again.

Every use is a row in `promo_redemptions` (code, order, account, when, what it took off).
"""

from __future__ import annotations

import builtins
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from labyard.errors import Conflict, Forbidden, InvalidInput, NotFound, PromoRefused
from labyard.services.accounts import User
from labyard.services.billing.money import major, parse_amount
from labyard.services.plans import PlanBook
from labyard.store import Database, OrderRow, PromoCodeRow, PromoRedemptionRow
from labyard.types import OrderStatus, RedemptionStatus, Role

CODE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{2,39}$")
"""3 to 40 letters, digits, `-` or `_` (matched case-insensitively)."""


def _now() -> datetime:
    return datetime.now(UTC)


def normal(code: str) -> str:
    return code.strip().upper()


@dataclass(frozen=True)
class PromoTerms:
    """What a valid code takes off: what the quote needs."""

    code: str
    percent: int | None
    amount_off: int | None
    """Minor units of `currency` off each unit."""
    currency: str | None


@dataclass(frozen=True)
class Redemption:
    order_id: str
    account_id: int
    status: str
    discount: int
    currency: str
    reserved_at: datetime
    settled_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "account_id": self.account_id,
            "status": self.status,
            "discount": self.discount,
            "currency": self.currency,
            "reserved_at": self.reserved_at.isoformat(),
            "settled_at": self.settled_at.isoformat() if self.settled_at else None,
        }


@dataclass(frozen=True)
class Promo:
    code: str
    percent: int | None
    amount_off: int | None
    currency: str | None
    max_redemptions: int | None
    used: int
    """Reserved or redeemed uses (what counts against `max_redemptions`)."""
    expires_at: datetime | None
    first_purchase_only: bool
    plans: tuple[str, ...]
    note: str
    disabled_at: datetime | None
    created_at: datetime

    @property
    def off(self) -> str:
        """`20 %` or `5.00 USD`, for people."""
        if self.percent is not None:
            return f"{self.percent} %"
        return major(self.amount_off or 0, self.currency or "")

    def state(self, at: datetime) -> str:
        if self.disabled_at is not None:
            return "disabled"
        if self.expires_at is not None and self.expires_at <= at:
            return "expired"
        if self.max_redemptions is not None and self.used >= self.max_redemptions:
            return "used up"
        return "active"

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "percent": self.percent,
            "amount_off": self.amount_off,
            "currency": self.currency,
            "off": self.off,
            "max_redemptions": self.max_redemptions,
            "used": self.used,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "first_purchase_only": self.first_purchase_only,
            "plans": list(self.plans),
            "note": self.note,
            "state": self.state(_now()),
            "disabled_at": self.disabled_at.isoformat() if self.disabled_at else None,
            "created_at": self.created_at.isoformat(),
        }


def promo_of(row: PromoCodeRow) -> Promo:
    return Promo(
        row.code,
        row.percent,
        row.amount_off,
        row.currency,
        row.max_redemptions,
        row.used,
        row.expires_at,
        row.first_purchase_only,
        tuple(row.plans or ()),
        row.note,
        row.disabled_at,
        row.created_at,
    )


def _admin(actor: User | None) -> None:
    """None is the operator's local CLI (`labyard admin promo`)."""
    if actor is not None and actor.role != Role.ADMIN:
        raise Forbidden("only admins may see or change promo codes")


@dataclass(frozen=True)
class NewPromo:
    """What an admin asks for; `amount` is in major units (`5.00`)."""

    code: str
    percent: int | None = None
    amount: str | None = None
    currency: str | None = None
    max_redemptions: int | None = None
    expires_at: datetime | None = None
    first_purchase_only: bool = False
    plans: tuple[str, ...] = ()
    note: str = ""


class Promos:
    def __init__(self, db: Database, plans: PlanBook) -> None:
        self.db = db
        self.plans = plans

    # -- admins ---------------------------------------------------------------------------

    def create(self, actor: User | None, new: NewPromo) -> Promo:
        _admin(actor)
        row = self._row(new, actor)
        with self.db.session() as session:
            taken = session.scalar(select(PromoCodeRow.id).where(PromoCodeRow.code == row.code))
            if taken is not None:
                raise Conflict(f"promo code {row.code} exists already")
            session.add(row)
        return promo_of(row)

    def _row(self, new: NewPromo, actor: User | None) -> PromoCodeRow:
        code = normal(new.code)
        if not CODE.match(code):
            raise InvalidInput(
                f"{new.code!r} is not a promo code: 3 to 40 letters, digits, '-' or '_'"
            )
        percent, amount, currency = _off(new)
        if new.max_redemptions is not None and new.max_redemptions < 1:
            raise InvalidInput("max redemptions must be at least 1 (leave it out for no limit)")
        for plan in new.plans:
            if not self.plans.get(plan).paid:
                raise InvalidInput(f"the {self.plans.get(plan).title} plan is not sold")
        if new.expires_at is not None and new.expires_at.tzinfo is None:
            raise InvalidInput("give the expiry with a time zone (or as a date, in UTC)")
        return PromoCodeRow(
            code=code,
            percent=percent,
            amount_off=amount,
            currency=currency,
            max_redemptions=new.max_redemptions,
            used=0,
            expires_at=new.expires_at,
            first_purchase_only=new.first_purchase_only,
            plans=sorted(set(new.plans)),
            note=new.note[:200],
            created_by=actor.id if actor is not None else None,
            created_at=_now(),
        )

    def list(self, actor: User | None) -> builtins.list[Promo]:
        """Every code, newest first."""
        _admin(actor)
        query = select(PromoCodeRow).order_by(PromoCodeRow.created_at.desc(), PromoCodeRow.id)
        with self.db.session() as session:
            return [promo_of(row) for row in session.scalars(query)]

    def get(self, actor: User | None, code: str) -> tuple[Promo, builtins.list[Redemption]]:
        """One code and its redemptions, newest first."""
        _admin(actor)
        with self.db.session() as session:
            row = _find(session, code)
            if row is None:
                raise NotFound(f"no promo code {normal(code)}")
            query = (
                select(PromoRedemptionRow)
                .where(PromoRedemptionRow.promo_id == row.id)
                .order_by(PromoRedemptionRow.reserved_at.desc(), PromoRedemptionRow.id.desc())
            )
            uses = [_redemption(r) for r in session.scalars(query)]
            return promo_of(row), uses

    def disable(self, actor: User | None, code: str) -> Promo:
        """No checkout takes it from now on; orders that hold it keep their discount."""
        _admin(actor)
        with self.db.session() as session:
            row = _find(session, code, lock=True)
            if row is None:
                raise NotFound(f"no promo code {normal(code)}")
            row.disabled_at = row.disabled_at or _now()
            return promo_of(row)


def parse_expiry(text: str) -> datetime:
    """`2026-12-31` (good through that day, UTC: it expires at the next midnight) or an ISO
    date-time (`2026-12-31T18:00:00+01:00`; without an offset, UTC)."""
    value = text.strip()
    try:
        if len(value) == 10:
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
            return day + timedelta(days=1)
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{text!r} is not an expiry: give a date (2026-12-31) or a date and time"
        ) from None
    if not 2000 <= when.year <= 9998:
        raise InvalidInput(f"{text!r} is not an expiry: give a date between 2000 and 9998")
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _off(new: NewPromo) -> tuple[int | None, int | None, str | None]:
    """(percent, amount in minor units, currency): exactly one kind of discount."""
    if (new.percent is None) == (new.amount is None):
        raise InvalidInput("a promo code takes off either a percentage or an amount: give one")
    if new.percent is not None:
        if not 1 <= new.percent <= 99:
            raise InvalidInput("percent must be between 1 and 99 (grant a plan to give it away)")
        return new.percent, None, None
    currency = (new.currency or "").strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise InvalidInput("an amount off needs its currency, an ISO 4217 code such as USD")
    return None, parse_amount(new.amount or ""), currency


def _find(session: Session, code: str, lock: bool = False) -> PromoCodeRow | None:
    query = select(PromoCodeRow).where(PromoCodeRow.code == normal(code)[:40])
    return session.scalar(query.with_for_update() if lock else query)


def _redemption(row: PromoRedemptionRow) -> Redemption:
    return Redemption(
        row.order_id,
        row.account_id,
        row.status,
        row.discount,
        row.currency,
        row.reserved_at,
        row.settled_at,
    )


# -- at checkout, in the order's transaction ---------------------------------------------


def check(session: Session, code: str, account_id: int, plan: str, at: datetime) -> PromoTerms:
    """The code's terms if `account_id` may use it for `plan` now; PromoRefused saying why
    not. (Whether a use is left is settled by `reserve`.)"""
    row = _find(session, code)
    name = normal(code)
    if row is None:
        raise PromoRefused(f"there is no promo code {name}", reason="promo_unknown")
    if row.disabled_at is not None:
        raise PromoRefused(f"promo code {name} is no longer valid", reason="promo_disabled")
    if row.expires_at is not None and row.expires_at <= at:
        when = row.expires_at.strftime("%Y-%m-%d %H:%M UTC")
        raise PromoRefused(f"promo code {name} expired on {when}", reason="promo_expired")
    if row.plans and plan not in row.plans:
        raise PromoRefused(
            f"promo code {name} is not for this plan (it is for: {', '.join(row.plans)})",
            reason="promo_not_for_plan",
        )
    if row.first_purchase_only and _bought_before(session, account_id):
        raise PromoRefused(
            f"promo code {name} is for a first purchase only, and this account has bought before",
            reason="promo_not_first_purchase",
        )
    if _used_by(session, row.id, account_id):
        raise PromoRefused(f"you have used promo code {name} already", reason="promo_used_already")
    if row.max_redemptions is not None and row.used >= row.max_redemptions:
        raise _used_up(name)
    return PromoTerms(row.code, row.percent, row.amount_off, row.currency)


def _used_up(name: str) -> PromoRefused:
    return PromoRefused(f"promo code {name} has been used up", reason="promo_used_up")


def _bought_before(session: Session, account_id: int) -> bool:
    query = select(OrderRow.id).where(
        OrderRow.account_id == account_id,
        OrderRow.status.in_((OrderStatus.PAID, OrderStatus.REFUNDED)),
    )
    return session.scalar(query.limit(1)) is not None


def _used_by(session: Session, promo_id: int, account_id: int) -> bool:
    query = select(PromoRedemptionRow.id).where(
        PromoRedemptionRow.promo_id == promo_id,
        PromoRedemptionRow.account_id == account_id,
        PromoRedemptionRow.status != RedemptionStatus.RELEASED,
    )
    return session.scalar(query.limit(1)) is not None


def reserve(
    session: Session, order: OrderRow, terms: PromoTerms, discount: int, at: datetime
) -> None:
    """Take one use of the code for `order` (added to the session already), or raise
    PromoRefused when none is left, it was disabled or it expired meanwhile."""
    statement = (
        update(PromoCodeRow)
        .where(
            PromoCodeRow.code == terms.code,
            PromoCodeRow.disabled_at.is_(None),
            or_(PromoCodeRow.expires_at.is_(None), PromoCodeRow.expires_at > at),
            or_(
                PromoCodeRow.max_redemptions.is_(None),
                PromoCodeRow.used < PromoCodeRow.max_redemptions,
            ),
        )
        .values(used=PromoCodeRow.used + 1)
        .returning(PromoCodeRow.id)
    )
    promo_id = session.scalar(statement)
    if promo_id is None:
        raise _used_up(terms.code)
    session.add(
        PromoRedemptionRow(
            promo_id=promo_id,
            code=terms.code,
            order_id=order.id,
            account_id=order.account_id,
            status=RedemptionStatus.RESERVED,
            discount=discount,
            currency=order.currency,
            reserved_at=at,
        )
    )


def _held(session: Session, order_id: str) -> PromoRedemptionRow | None:
    query = select(PromoRedemptionRow).where(
        PromoRedemptionRow.order_id == order_id,
        PromoRedemptionRow.status == RedemptionStatus.RESERVED,
    )
    return session.scalar(query.with_for_update())


def redeemed(session: Session, order_id: str, at: datetime) -> None:
    """The order was paid: its reservation is a redemption (idempotent)."""
    held = _held(session, order_id)
    if held is not None:
        held.status, held.settled_at = RedemptionStatus.REDEEMED, at


def release(session: Session, order_id: str, at: datetime) -> None:
    """The order was cancelled or failed unpaid: its use goes back to the code (once)."""
    held = _held(session, order_id)
    if held is None:
        return
    held.status, held.settled_at = RedemptionStatus.RELEASED, at
    session.execute(
        update(PromoCodeRow)
        .where(PromoCodeRow.id == held.promo_id, PromoCodeRow.used > 0)
        .values(used=PromoCodeRow.used - 1)
    )
