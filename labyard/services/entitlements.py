"""Entitlements: one record per grant of a plan to an account (a subscription, a lifetime
purchase, a trial, a team seat, earned by solving challenges, or set by an admin), each
with a source, a start and an end. An account's plan is the best-ranked plan of the
entitlements in force, and never below the default plan (plans.py).

Grants are revoked, never deleted, so the history stays. A grant with a `once_key` is made
once: granting it again returns the first (the database's unique key settles races).
"""

from __future__ import annotations

import builtins
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labyard.errors import InvalidInput, NotFound
from labyard.services.owners import account_of
from labyard.services.plans import Plan, PlanBook
from labyard.store import AttemptRow, Database, EntitlementRow, UserRow
from labyard.types import AttemptState, EntitlementKind

log = logging.getLogger(__name__)
CHALLENGES = "challenges/"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Entitlement:
    id: int
    account_id: int
    plan: str
    kind: str
    source: str
    starts_at: datetime
    ends_at: datetime | None
    revoked_at: datetime | None

    def in_force(self, at: datetime) -> bool:
        return (
            self.revoked_at is None
            and self.starts_at <= at
            and (self.ends_at is None or self.ends_at > at)
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.__dict__)
        for key in ("starts_at", "ends_at", "revoked_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return {**data, "in_force": self.in_force(_now())}


def _entitlement(row: EntitlementRow) -> Entitlement:
    return Entitlement(
        row.id,
        row.account_id,
        row.plan,
        row.kind,
        row.source,
        row.starts_at,
        row.ends_at,
        row.revoked_at,
    )


def _in_force(account_id: int, at: datetime) -> Any:
    return select(EntitlementRow).where(
        EntitlementRow.account_id == account_id,
        EntitlementRow.revoked_at.is_(None),
        EntitlementRow.starts_at <= at,
        or_(EntitlementRow.ends_at.is_(None), EntitlementRow.ends_at > at),
    )


def effective_plan(session: Session, plans: PlanBook, account_id: int, at: datetime) -> Plan:
    """The account's plan at `at`, read in the caller's transaction."""
    names = [row.plan for row in session.scalars(_in_force(account_id, at))]
    return plans.best(names)


class Entitlements:
    def __init__(self, db: Database, plans: PlanBook) -> None:
        self.db = db
        self.plans = plans

    def effective(self, account_id: int, at: datetime | None = None) -> Plan:
        with self.db.session() as session:
            return effective_plan(session, self.plans, account_id, at or _now())

    def list(self, account_id: int) -> builtins.list[Entitlement]:
        """Every grant the account ever had, revoked ones included, oldest first."""
        query = (
            select(EntitlementRow)
            .where(EntitlementRow.account_id == account_id)
            .order_by(EntitlementRow.starts_at, EntitlementRow.id)
        )
        with self.db.session() as session:
            return [_entitlement(row) for row in session.scalars(query)]

    def grant(
        self,
        account_id: int,
        plan: str,
        kind: str,
        *,
        source: str = "",
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
        once_key: str | None = None,
    ) -> Entitlement:
        """Grant `plan` from `starts_at` (now) to `ends_at` (None: no end)."""
        row = self._new_row(account_id, plan, kind, source, starts_at, ends_at, once_key)
        return self._grant(row)[0]

    def grant_in(
        self,
        session: Session,
        account_id: int,
        plan: str,
        kind: str,
        *,
        source: str,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
        once_key: str | None = None,
    ) -> EntitlementRow:
        """grant() in the caller's transaction, so a payment and its grant commit together.
        An existing grant of `once_key` is returned as it is (a concurrent twin makes the
        flush fail with IntegrityError and the caller's transaction roll back)."""
        if once_key is not None:
            done = session.scalar(select(EntitlementRow).where(EntitlementRow.once_key == once_key))
            if done is not None:
                return done
        row = self._new_row(account_id, plan, kind, source, starts_at, ends_at, once_key)
        session.add(row)
        session.flush()
        return row

    def _grant(self, row: EntitlementRow) -> tuple[Entitlement, bool]:
        """(the grant, whether it is new): an existing grant of the same once_key wins."""
        key = row.once_key
        try:
            with self.db.session() as session:
                if session.get(UserRow, row.account_id) is None:
                    raise NotFound(f"no user {row.account_id}")
                if key is not None and (done := self._by_key(session, key)):
                    return done, False
                session.add(row)
                session.flush()
                return _entitlement(row), True
        except IntegrityError:
            if key is None:
                raise
            with self.db.session() as session:  # another process granted it just now
                done = self._by_key(session, key)
            if done is None:
                raise
            return done, False

    def _new_row(
        self,
        account_id: int,
        plan: str,
        kind: str,
        source: str,
        starts_at: datetime | None,
        ends_at: datetime | None,
        once_key: str | None,
    ) -> EntitlementRow:
        self.plans.get(plan)  # InvalidInput for an unknown plan
        if kind not in set(EntitlementKind):
            raise InvalidInput(f"unknown kind {kind!r} (kinds: {', '.join(EntitlementKind)})")
        now = _now()
        start = starts_at or now
        if ends_at is not None and ends_at <= start:
            raise InvalidInput("an entitlement must end after it starts")
        return EntitlementRow(
            account_id=account_id,
            plan=plan,
            kind=kind,
            source=source,
            once_key=once_key,
            starts_at=start,
            ends_at=ends_at,
            created_at=now,
        )

    @staticmethod
    def _by_key(session: Session, once_key: str) -> Entitlement | None:
        row = session.scalar(select(EntitlementRow).where(EntitlementRow.once_key == once_key))
        return _entitlement(row) if row is not None else None

    def revoke(self, entitlement_id: int, at: datetime | None = None) -> Entitlement:
        """End a grant now (or at `at`); revoking a revoked one changes nothing."""
        with self.db.session() as session:
            row = session.get(EntitlementRow, entitlement_id)
            if row is None:
                raise NotFound(f"no entitlement {entitlement_id}")
            if row.revoked_at is None:
                row.revoked_at = at or _now()
            return _entitlement(row)

    def set_manual(self, session: Session, account_id: int, plan: str, source: str) -> None:
        """What an admin's "this account's plan is X" means: revoke the manual grants in
        force and, unless X is the default plan, grant X without end. Paid or earned grants
        are left alone (an admin revokes those one by one)."""
        self.plans.get(plan)
        now = _now()
        for row in session.scalars(_in_force(account_id, now)):
            if row.kind == EntitlementKind.MANUAL:
                row.revoked_at = now
        if plan != self.plans.default:
            row = self._new_row(account_id, plan, EntitlementKind.MANUAL, source, now, None, None)
            session.add(row)

    # -- earned premium ------------------------------------------------------------------

    def challenge_solved(self, owner: str, content_key: str) -> builtins.list[Entitlement]:
        """Grant what the owner's solved challenges have earned and not been granted yet
        (every threshold once, so a re-solve, a restart or a missed call grants nothing
        twice). Returns the new grants."""
        rule = self.plans.earned
        account_id = account_of(owner)
        if rule is None or account_id is None or not content_key.startswith(CHALLENGES):
            return []
        prefix = f"earned:{account_id}:"
        with self.db.session() as session:
            if session.get(UserRow, account_id) is None:
                return []
            solved = _solved_challenges(session, owner)
            done = set(
                session.scalars(
                    select(EntitlementRow.once_key).where(
                        EntitlementRow.once_key.startswith(prefix, autoescape=True)
                    )
                )
            )
        granted = []
        for threshold in range(rule.challenges, solved + 1, rule.challenges):
            key = f"{prefix}{threshold}"
            if key in done:
                continue
            start = self._earned_until(account_id)
            end = start + timedelta(days=rule.days)
            source = f"{threshold} challenges solved"
            row = self._new_row(
                account_id, rule.plan, EntitlementKind.EARNED, source, start, end, key
            )
            grant, new = self._grant(row)
            if new:
                granted.append(grant)
                log.info("account %s earned %s: %s", account_id, rule.plan, source)
        return granted

    def _earned_until(self, account_id: int) -> datetime:
        """When a new earned grant starts: now, or when the earned ones not over yet end."""
        now = _now()
        query = select(func.max(EntitlementRow.ends_at)).where(
            EntitlementRow.account_id == account_id,
            EntitlementRow.kind == EntitlementKind.EARNED,
            EntitlementRow.revoked_at.is_(None),
        )
        with self.db.session() as session:
            latest = session.scalar(query)
        if latest is not None and latest.tzinfo is None:
            latest = latest.replace(tzinfo=UTC)  # an aggregate skips the column's type
        return max(now, latest) if latest is not None else now


def _solved_challenges(session: Session, owner: str) -> int:
    query = select(func.count(func.distinct(AttemptRow.content_key))).where(
        AttemptRow.owner == owner,
        AttemptRow.state == AttemptState.SOLVED,
        AttemptRow.content_key.startswith(CHALLENGES),
    )
    return int(session.scalar(query) or 0)
