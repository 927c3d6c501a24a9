"""Usage metering: one session per stretch a playground runs, from its start (or restart) to
its stop, destroy, expiry, crash or rollback.

A session is opened in the transaction that records the start (playgrounds.py), so there is
never a playground without its session or the other way round, and closed by
`UPDATE ... WHERE ended_at IS NULL`: whichever path (or process) closes it first sets its
end and machine-minutes, every later one changes nothing. A restarted server finds open
sessions as they were and closes them when their playground ends; nothing counts twice.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from labyard.store import Database, EndReason, LaunchedBy, Role, UsageSessionRow

DAY = timedelta(days=1)


@dataclass(frozen=True)
class Launch:
    """Who starts a playground and why: what the plan check and the usage record need."""

    account_id: int | None = None
    """The account whose plan applies; None: no plan does (the operator's local CLI)."""
    role: str = Role.LEARNER
    by: LaunchedBy = LaunchedBy.FREE_PLAY
    content_key: str = ""
    """The challenge, tutorial or lesson started (`challenges/<slug>`), or ''."""
    own_manifest: bool = False
    """The playground comes from the account's own manifest, not the catalog or content."""
    class_id: str | None = None
    """A class member's start of the class's content: the class's seats pay for it, not the
    account's plan (admission.py, classes_admission.py)."""


@dataclass(frozen=True)
class UsageSession:
    id: int
    account_id: int | None
    plan: str
    launched_by: str
    content_key: str
    playground_id: str
    playground_name: str
    machines: int
    restart: bool
    started_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    machine_minutes: float | None

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        for key in ("started_at", "ended_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


def _session(row: UsageSessionRow) -> UsageSession:
    return UsageSession(
        row.id,
        row.account_id,
        row.plan,
        row.launched_by,
        row.content_key,
        row.playground_id,
        row.playground_name,
        row.machines,
        row.restart,
        row.started_at,
        row.ended_at,
        row.end_reason,
        row.machine_minutes,
    )


def machine_minutes(machines: int, start: datetime, end: datetime) -> float:
    return machines * max(0.0, (end - start).total_seconds()) / 60


def day_start(at: datetime) -> datetime:
    """Midnight UTC of `at`'s day: the daily allowance counts from here."""
    return at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def open_session(session: Session, launch: Launch, **fields: Any) -> None:
    """Record a session starting, in the caller's transaction. `fields`: owner, plan,
    playground_id, playground_name, machines, started_at and (for a restart) restart."""
    session.add(
        UsageSessionRow(
            account_id=launch.account_id,
            launched_by=launch.by,
            content_key=launch.content_key,
            class_id=launch.class_id,
            **fields,
        )
    )


def last_launch(session: Session, playground_id: str) -> Launch:
    """How the playground's latest session was launched (a restart carries it on)."""
    row = session.scalar(
        select(UsageSessionRow)
        .where(UsageSessionRow.playground_id == playground_id)
        .order_by(UsageSessionRow.started_at.desc(), UsageSessionRow.id.desc())
        .limit(1)
    )
    if row is None:
        return Launch()
    return Launch(
        row.account_id,
        by=LaunchedBy(row.launched_by),
        content_key=row.content_key,
        class_id=row.class_id,
    )


def close_sessions(session: Session, playground_id: str, reason: EndReason, at: datetime) -> int:
    """End the playground's open session(s) at `at`; returns how many this call ended."""
    open_rows = session.execute(
        select(UsageSessionRow.id, UsageSessionRow.machines, UsageSessionRow.started_at).where(
            UsageSessionRow.playground_id == playground_id, UsageSessionRow.ended_at.is_(None)
        )
    ).all()
    closed = 0
    for session_id, machines, started in open_rows:
        result = session.execute(
            update(UsageSessionRow)
            .where(UsageSessionRow.id == session_id, UsageSessionRow.ended_at.is_(None))
            .values(
                ended_at=at,
                end_reason=reason,
                machine_minutes=machine_minutes(machines, started, at),
            )
        )
        closed += int(getattr(result, "rowcount", 0) or 0)
    return closed


def used_minutes(session: Session, account_id: int, since: datetime, until: datetime) -> float:
    """Machine-minutes the account used between `since` and `until`, open sessions counted
    up to `until` and sessions that began before `since` only from `since`."""
    rows = session.execute(
        select(UsageSessionRow.machines, UsageSessionRow.started_at, UsageSessionRow.ended_at)
        .where(UsageSessionRow.account_id == account_id)
        .where(UsageSessionRow.started_at < until)
        .where((UsageSessionRow.ended_at.is_(None)) | (UsageSessionRow.ended_at > since))
    ).all()
    return sum(
        machine_minutes(machines, max(started, since), min(ended or until, until))
        for machines, started, ended in rows
    )


class Usage:
    """Reading the usage record (analytics and the account page build on this)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def sessions(
        self, account_id: int | None = None, playground_id: str | None = None
    ) -> builtins.list[UsageSession]:
        query = select(UsageSessionRow).order_by(UsageSessionRow.started_at, UsageSessionRow.id)
        if account_id is not None:
            query = query.where(UsageSessionRow.account_id == account_id)
        if playground_id is not None:
            query = query.where(UsageSessionRow.playground_id == playground_id)
        with self.db.session() as session:
            return [_session(row) for row in session.scalars(query)]

    def used_today(self, account_id: int, at: datetime | None = None) -> float:
        now = at or datetime.now(UTC)
        with self.db.session() as session:
            return used_minutes(session, account_id, day_start(now), now)
