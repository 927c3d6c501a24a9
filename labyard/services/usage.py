"""Usage metering: one session per stretch a playground runs, from its start (or restart) to
its stop, destroy, expiry, crash or rollback.

A session is opened in the transaction that records the start (playgrounds.py), so there is
never a playground without its session or the other way round, and closed by
`UPDATE ... WHERE ended_at IS NULL`: whichever path (or process) closes it first sets its
end and machine-minutes, every later one changes nothing. A restarted server finds open
sessions as they were and closes them when their playground ends; nothing counts twice.

Closing a session also adds it to the daily roll-ups (`usage_days`, `playground_days`), in
the same transaction and only when this call closed it: the analytics sums a period's days
from those instead of reading every session.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Date, case, cast, delete, func, select, update
from sqlalchemy import insert as insert_into
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from labyard.store import Database, PlaygroundDayRow, UsageDayRow, UsageSessionRow
from labyard.types import EndReason, LaunchedBy, Role

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
    country: str | None = None
    """Where the learner is (ISO 3166-1 alpha-2, from their address), if known: their
    playground runs in that country's region (services/cluster/regions.py)."""
    region: str = ""
    """A region to run in whatever the country (a class pinned to one); "" for none."""


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
    """End the playground's open session(s) at `at`, and add each to the daily roll-ups;
    returns how many this call ended."""
    S = UsageSessionRow
    open_rows = session.execute(
        select(
            S.id, S.machines, S.started_at, S.plan, S.launched_by, S.playground_name, S.restart
        ).where(S.playground_id == playground_id, S.ended_at.is_(None))
    ).all()
    closed = 0
    for row in open_rows:
        minutes = machine_minutes(row.machines, row.started_at, at)
        result = session.execute(
            update(S)
            .where(S.id == row.id, S.ended_at.is_(None))
            .values(ended_at=at, end_reason=reason, machine_minutes=minutes)
        )
        if getattr(result, "rowcount", 0):  # another path closed it first: counted there
            closed += 1
            _add_to_days(session, row, minutes)
    return closed


def _add_to_days(session: Session, row: Any, minutes: float) -> None:
    """One closed session into usage_days and playground_days (an upsert each, so two
    processes closing sessions of one day add up)."""
    dialect = session.get_bind().dialect.name
    insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
    day = row.started_at.astimezone(UTC).date()
    launches = 0 if row.restart else 1
    rolls: tuple[tuple[type[UsageDayRow] | type[PlaygroundDayRow], dict[str, str]], ...] = (
        (UsageDayRow, {"plan": row.plan, "launched_by": row.launched_by}),
        (PlaygroundDayRow, {"playground_name": row.playground_name}),
    )
    for roll, keys in rolls:
        statement = insert(roll).values(day=day, **keys, launches=launches, machine_minutes=minutes)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["day", *keys],
                set_={
                    "launches": roll.launches + statement.excluded.launches,
                    "machine_minutes": roll.machine_minutes + statement.excluded.machine_minutes,
                },
            )
        )


def rebuild_days(session: Session) -> None:
    """usage_days and playground_days summed afresh from the closed sessions (what
    migration 0015 fills them with): for sessions written without close_sessions, such as a
    bulk load."""
    S = UsageSessionRow
    if session.get_bind().dialect.name == "sqlite":
        day: Any = func.date(S.started_at)
    else:
        day = cast(func.timezone("UTC", S.started_at), Date)
    launches = func.sum(case((S.restart, 0), else_=1))
    minutes = func.coalesce(func.sum(S.machine_minutes), 0)
    closed = S.ended_at.is_not(None)
    rolls: tuple[tuple[type[UsageDayRow] | type[PlaygroundDayRow], tuple[Any, ...]], ...] = (
        (UsageDayRow, (S.plan, S.launched_by)),
        (PlaygroundDayRow, (S.playground_name,)),
    )
    for roll, keys in rolls:
        session.execute(delete(roll))
        rows = select(day, *keys, launches, minutes).where(closed).group_by(day, *keys)
        names = ["day", *(key.name for key in keys), "launches", "machine_minutes"]
        session.execute(insert_into(roll).from_select(names, rows))


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
