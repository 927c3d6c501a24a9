"""The operator's analytics: how labyard is used and what it earns, for a period of days.

A period is [from, to], whole UTC days, both included. Every figure is defined in
docs/analytics.md; in short:

- usage comes from the usage sessions (usage.py): a session counts as a launch on the day
  it started (a restart is no launch), and its machine-minutes count
  where they fall: a session running across the period's edge counts only its minutes inside
  (an open one up to now). "Paid" usage is a session whose plan at start was not the
  default plan.
- money comes from the orders: paid orders only (refunded ones are not revenue), in integer
  minor units per currency, never added across currencies. MRR is the monthly-normalised
  amount of the recurring orders in force at an instant; churn compares who pays at the
  period's start with who pays at its end.

Each headline figure also has its value for the previous period of the same length.

Speed: a period's launches and machine-minutes are sums over its days in the daily roll-ups
(usage_days, playground_days; usage.py adds each session as it closes), corrected by the few
sessions at its edges (still open, or across its start or end), which are read one by one.
The rest are aggregate queries answered from covering indexes (migration 0009), the orders'
half on a second connection at the same time; so a period over a million sessions takes a
few hundred milliseconds on SQLite and PostgreSQL alike (bench/analytics.py). SQLite's
planner has no statistics: for a period that covers much of the data the `started_at` terms
are written `+started_at` (`_unindexed`) where another index holds fewer rows; PostgreSQL
plans with its statistics and gets the plain terms. On both, such a period's accounts are
found one index seek per account rather than by grouping most of the sessions.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    case,
    exists,
    func,
    or_,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from labyard.errors import Forbidden, InvalidInput, NotFound
from labyard.services.accounts import User
from labyard.services.billing.periods import add_months
from labyard.services.plans import PlanBook
from labyard.store import (
    AttemptRow,
    Database,
    EntitlementRow,
    OrderRow,
    PlaygroundDayRow,
    SubscriptionRow,
    UsageDayRow,
    UsageSessionRow,
    UserRow,
)
from labyard.store.models import UTCDateTime
from labyard.types import AttemptState, LaunchedBy, OrderKind, OrderStatus, Role

MAX_DAYS = 3660
"""The longest period one report covers (about ten years)."""
EARLIEST = date(2000, 1, 1)
LATEST = date(2099, 12, 31)
TOP = 10
"""Rows in the top_playgrounds and top_content tables."""
MAX_POINTS = 120
"""The charts' series have at most this many points: a long period gets buckets of days."""
HEADLINE = (
    "launches",
    "free_play_share",
    "machine_minutes",
    "paid_machine_minutes",
    "paid_usage_share",
    "active_accounts",
    "paid_accounts",
    "paid_accounts_share",
    "new_paid",
    "churned",
)
"""Headline numbers (plain numbers); `mrr` and `revenue` are headline too, per currency."""
MONEY_HEADLINE = ("mrr", "revenue")
TABLES = {
    "top_playgrounds": ("name", "launches", "machine_minutes"),
    "top_content": ("key", "started", "solved"),
    "revenue_by_month": ("month", "currency", "amount"),
    "country_tiers": ("tier", "accounts", "currency", "revenue"),
}
"""The report's tables, with the columns of their CSV export."""
SCAN_SHARE = 0.25
"""Above this share of the sessions' time span, SQLite reads a period by a full ordered index
scan rather than a range of `started_at` (see the module docstring)."""

S = UsageSessionRow.__table__.c
D = UsageDayRow.__table__.c
PD = PlaygroundDayRow.__table__.c
U = UserRow.__table__.c
ORDERS = OrderRow.__table__
O = ORDERS.c  # noqa: E741
E = EntitlementRow.__table__.c
SUB = SubscriptionRow.__table__.c
A = AttemptRow.__table__.c


# -- periods -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """Whole UTC days, `first` to `last`, both included."""

    first: date
    last: date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def start(self) -> datetime:
        return datetime(self.first.year, self.first.month, self.first.day, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The first moment after the period (midnight after `last`)."""
        return self.start + timedelta(days=self.days)

    @property
    def previous(self) -> Period:
        """The period of the same length just before this one."""
        return Period(self.first - timedelta(days=self.days), self.first - timedelta(days=1))

    def to_json(self) -> dict[str, Any]:
        return {"from": self.first.isoformat(), "to": self.last.isoformat(), "days": self.days}


def _day(value: str | date, name: str) -> date:
    if isinstance(value, date):
        return value
    text = value.strip()
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{name}: {value!r} is not a date; write YYYY-MM-DD") from None


def period(first: str | date, last: str | date) -> Period:
    """The period from `first` to `last` (YYYY-MM-DD, both included), or InvalidInput
    saying what is wrong with it."""
    start, end = _day(first, "from"), _day(last, "to")
    for name, day in (("from", start), ("to", end)):
        if not EARLIEST <= day <= LATEST:
            raise InvalidInput(f"{name}: {day} is out of range ({EARLIEST} to {LATEST})")
    if start > end:
        raise InvalidInput(f"from ({start}) is after to ({end})")
    found = Period(start, end)
    if found.days > MAX_DAYS:
        raise InvalidInput(f"the period is {found.days} days; at most {MAX_DAYS} at once")
    return found


# -- SQL helpers -------------------------------------------------------------------------


class _unindexed(FunctionElement[datetime]):
    """A column that SQLite must not seek an index by (`+col`); itself elsewhere."""

    inherit_cache = True
    type = UTCDateTime()
    name = "unindexed"


@compiles(_unindexed)
def _unindexed_default(element: _unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(_unindexed, "sqlite")
def _unindexed_sqlite(element: _unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return "+" + str(compiler.process(element.clauses, **kw))


class _month(FunctionElement[str]):
    """`YYYY-MM` of a UTC moment."""

    inherit_cache = True
    name = "month"


@compiles(_month, "sqlite")
def _month_sqlite(element: _month, compiler: SQLCompiler, **kw: Any) -> str:
    # UTCDateTime stores UTC text, `YYYY-MM-DD HH:MM:SS.ffffff`, on SQLite.
    return f"substr({compiler.process(element.clauses, **kw)}, 1, 7)"


@compiles(_month, "postgresql")
def _month_postgresql(element: _month, compiler: SQLCompiler, **kw: Any) -> str:
    return f"to_char({compiler.process(element.clauses, **kw)} AT TIME ZONE 'UTC', 'YYYY-MM')"


def _ratio(part: float, whole: float) -> float:
    return round(part / whole, 4) if whole else 0.0


def _minutes(machines: int, start: datetime, end: datetime) -> float:
    return machines * max(0.0, (end - start).total_seconds()) / 60


# -- the usage side ----------------------------------------------------------------------


@dataclass
class _Group:
    launches: int = 0
    minutes: float = 0.0

    def add(self, launches: int, minutes: float) -> None:
        self.launches += launches
        self.minutes += minutes


@dataclass
class _Usage:
    """What the sessions say about one period: launches and machine-minutes inside it by
    (plan, launched_by) and by playground name, accounts, and the chart's series."""

    kinds: dict[tuple[str, str], _Group] = field(default_factory=lambda: defaultdict(_Group))
    playgrounds: dict[str, _Group] = field(default_factory=lambda: defaultdict(_Group))
    active: int = 0
    paid_active: int = 0
    series_launches: list[int] = field(default_factory=list)
    series_minutes: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class _Window:
    """A period as the queries see it, with how SQLite should read it (see the module
    docstring): `scan` reads the whole ordered indexes instead of a `started_at` range,
    the `*_by_end` flags read the edge sessions by `ended_at` rather than `started_at`."""

    start: datetime
    end: datetime
    asof: datetime
    """Open sessions count up to here: the period's end, or now if that is sooner."""
    wide: bool = False
    """It covers much of the sessions' time span: accounts are found account by account."""
    scan: bool = False
    start_edge_by_end: bool = False
    end_edge_by_end: bool = False

    def started(self, seek: bool = True) -> ColumnElement[datetime]:
        return S.started_at if seek else _unindexed(S.started_at)

    def ended(self, seek: bool = True) -> ColumnElement[datetime]:
        return S.ended_at if seek else _unindexed(S.ended_at)

    def in_period(self, seek: bool = True) -> ColumnElement[bool]:
        started = self.started(seek and not self.scan)
        return and_(started >= self.start, started < self.end)


@dataclass(frozen=True)
class _Edge:
    """A session across the period's start or end, or still open."""

    account_id: int | None
    group: tuple[str, str, str]
    paid: bool
    started_at: datetime
    before: bool
    """It started before the period."""
    launch: int
    """1 for an open session started in the period that is no restart: a launch the daily
    roll-ups do not have yet (they hold closed sessions)."""
    counted: float
    """Its machine-minutes the sums already counted (all of them, if it started inside)."""
    inside: float
    """Its machine-minutes inside the period."""


class _Sessions:
    """The usage queries for one report, on one connection."""

    def __init__(self, connection: Connection, default_plan: str, now: datetime) -> None:
        self.connection = connection
        self.paid_plans = [p for p in self._plans() if p not in (default_plan, "")]
        self.paid = S.plan.in_(self.paid_plans)
        """The session's plan at start was a paid one."""
        self.now = now
        self.sqlite = connection.dialect.name == "sqlite"
        # Two queries: SQLite reads one min() or max() off an index, not both at once.
        self.first = connection.execute(select(func.min(S.started_at))).scalar()
        self.last = connection.execute(select(func.max(S.started_at))).scalar()

    def _share(self, start: datetime | None, end: datetime | None) -> float:
        """How much of the sessions' time span [start, end) covers (0 to 1)."""
        if self.first is None or self.last is None or self.last <= self.first:
            return 1.0
        start, end = max(start or self.first, self.first), min(end or self.last, self.last)
        share: float = (end - start) / (self.last - self.first)
        return max(0.0, share)

    def _plans(self) -> list[str]:
        """Every plan a session started on, one index seek each (ix_usage_sessions_dims)."""
        plans: list[str] = []
        while True:
            query = select(func.min(S.plan))
            if plans:
                query = query.where(S.plan > plans[-1])
            found = self.connection.execute(query).scalar()
            if found is None:
                return plans
            plans.append(found)

    def window(self, start: datetime, end: datetime) -> _Window:
        asof = min(end, self.now)
        wide = self._share(start, end) > SCAN_SHARE
        if not self.sqlite:
            return _Window(start, end, asof, wide)
        return _Window(
            start,
            end,
            asof,
            wide,
            scan=wide,
            start_edge_by_end=self._share(start, None) < self._share(None, start),
            end_edge_by_end=self._share(end, None) < self._share(start, end),
        )

    def usage(self, window: _Window, series_days: int | None) -> _Usage:
        found = _Usage()
        for plan, by, launches, minutes in self.connection.execute(
            select(D.plan, D.launched_by, func.sum(D.launches), func.sum(D.machine_minutes))
            .where(_on_days(D.day, window))
            .group_by(D.plan, D.launched_by)
        ):
            found.kinds[(plan, by)].add(int(launches), float(minutes))
        for name, launches, minutes in self.connection.execute(
            select(PD.playground_name, func.sum(PD.launches), func.sum(PD.machine_minutes))
            .where(_on_days(PD.day, window))
            .group_by(PD.playground_name)
        ):
            found.playgrounds[name].add(int(launches), float(minutes))
        if series_days is not None:
            found.series_launches, found.series_minutes = self._series(window, series_days)
        edges = self._edges(window)
        for edge in edges:
            plan, by, name = edge.group
            minutes = edge.inside - edge.counted
            found.kinds[(plan, by)].add(edge.launch, minutes)
            found.playgrounds[name].add(edge.launch, minutes)
            if found.series_minutes:
                index = max(0, (edge.started_at - window.start).days // (series_days or 1))
                index = min(index, len(found.series_minutes) - 1)
                found.series_launches[index] += edge.launch
                found.series_minutes[index] += minutes
        found.active, found.paid_active = self._accounts(window, edges)
        return found

    def _series(self, window: _Window, days: int) -> tuple[list[int], list[float]]:
        """Launches and machine-minutes per bucket of `days` days, by start day (usage()
        then adds the edge sessions)."""
        count = math.ceil((window.end - window.start).days / days)
        launches, minutes = [0] * count, [0.0] * count
        first = window.start.date()
        for day, n, mm in self.connection.execute(
            select(D.day, func.sum(D.launches), func.sum(D.machine_minutes))
            .where(_on_days(D.day, window))
            .group_by(D.day)
        ):
            index = (day - first).days // days
            launches[index] += int(n)
            minutes[index] += float(mm)
        return launches, minutes

    def _edges(self, window: _Window) -> list[_Edge]:
        """The sessions across the period's start or its end, and the open ones."""
        columns = (
            S.account_id,
            S.plan,
            S.launched_by,
            S.playground_name,
            S.machines,
            S.started_at,
            S.ended_at,
            S.machine_minutes,
            S.restart,
            self.paid.label("paid"),
        )
        by_end = window.start_edge_by_end
        across_start = select(*columns).where(
            window.started(not by_end) < window.start, window.ended(by_end) > window.start
        )
        by_end, started = window.end_edge_by_end, window.started(not window.end_edge_by_end)
        across_end = select(*columns).where(
            started >= window.start, started < window.end, window.ended(by_end) > window.end
        )
        still_open = select(*columns).where(
            S.ended_at.is_(None), window.started(False) < window.end
        )
        edges = []
        for query in (across_start, across_end, still_open):
            for row in self.connection.execute(query):
                ended = min(row.ended_at or window.asof, window.end, window.asof)
                before = row.started_at < window.start
                launch = int(row.ended_at is None and not before and not row.restart)
                edges.append(
                    _Edge(
                        row.account_id,
                        (row.plan, row.launched_by, row.playground_name),
                        bool(row.paid),
                        row.started_at,
                        before,
                        launch,
                        0.0 if before else float(row.machine_minutes or 0),
                        _minutes(row.machines, max(row.started_at, window.start), ended),
                    )
                )
        return edges

    def _accounts(self, window: _Window, edges: Sequence[_Edge]) -> tuple[int, int]:
        """(accounts with a session in the period, those of them with a paid one)."""
        paid = func.max(case((self.paid, 1), else_=0))
        if window.wide:
            active, paid_active = self._accounts_one_by_one(window)
        else:
            inner = (
                select(S.account_id, paid.label("paid"))
                .where(window.in_period(), S.account_id.is_not(None))
                .group_by(S.account_id)
                .subquery()
            )
            active, paid_active = self.connection.execute(
                select(func.count(), func.coalesce(func.sum(inner.c.paid), 0))
            ).one()
        # Sessions from before the period that ran on into it: their accounts, unless the
        # query above counted them already.
        before: dict[int, bool] = {}
        for edge in edges:
            if edge.before and edge.account_id is not None and edge.inside > 0:
                before[edge.account_id] = before.get(edge.account_id, False) or edge.paid
        if before:
            counted = dict(
                self.connection.execute(
                    select(S.account_id, paid)
                    .where(S.account_id.in_(list(before)), window.in_period(seek=False))
                    .group_by(S.account_id)
                ).all()
            )
            for account, was_paid in before.items():
                if account not in counted:
                    active, paid_active = active + 1, paid_active + int(was_paid)
                elif was_paid and not counted[account]:
                    paid_active += 1
        return int(active), int(paid_active)

    def _accounts_one_by_one(self, window: _Window) -> tuple[int, int]:
        """For a long period, whether each account has a (paid) session in it: one seek per
        account in ix_usage_sessions_account_started (ix_usage_sessions_accounts), which is
        cheaper than grouping most of the sessions by account."""
        started = and_(S.started_at >= window.start, S.started_at < window.end)

        def having(*terms: ColumnElement[bool]) -> int:
            session_of = exists().where(S.account_id == U.id, *terms, started)
            query = select(func.count()).select_from(UserRow).where(session_of)
            return self.connection.execute(query).scalar() or 0

        return having(), having(self.paid) if self.paid_plans else 0


def _on_days(day: ColumnElement[date], window: _Window) -> ColumnElement[bool]:
    """A roll-up's `day` is one of the period's."""
    return and_(day >= window.start.date(), day < window.end.date())


# -- the money side ----------------------------------------------------------------------


SUBS = (
    select(
        SUB.order_id.label("order_id"),
        func.max(SUB.current_period_end).label("period_end"),
        func.max(SUB.ended_at).label("ended_at"),
        (func.count() - func.count(SUB.ended_at)).label("running"),
    )
    .where(SUB.order_id.is_not(None))
    .group_by(SUB.order_id)
    .subquery("subs")
)
"""Each order's provider subscription(s): the latest period end, and whether one still runs."""
RECURRING = (OrderKind.SUBSCRIPTION, OrderKind.SEATS)


def _covered(at: datetime) -> ColumnElement[bool]:
    """A paid recurring order still covers `at`: its grant is in force then; without a grant
    (seats), its provider subscription's period runs past `at`; with neither, one interval
    from its payment does."""
    month_ago, year_ago = add_months(at, -1), add_months(at, -12)
    return or_(
        and_(
            E.id.is_not(None),
            E.starts_at <= at,
            or_(E.ends_at.is_(None), E.ends_at > at),
            or_(E.revoked_at.is_(None), E.revoked_at > at),
        ),
        and_(
            E.id.is_(None),
            SUBS.c.period_end > at,
            or_(SUBS.c.running > 0, SUBS.c.ended_at > at),
        ),
        and_(
            E.id.is_(None),
            SUBS.c.period_end.is_(None),
            or_(
                and_(O.interval == "monthly", O.paid_at > month_ago),
                and_(O.interval == "yearly", O.paid_at > year_ago),
            ),
        ),
    )


def _paying(at: datetime) -> ColumnElement[int]:
    """1 for a paid order in force at `at`: recurring and still covering it, or lifetime
    and not revoked by then."""
    lifetime = and_(O.kind == OrderKind.LIFETIME, or_(E.revoked_at.is_(None), E.revoked_at > at))
    return case(
        (and_(O.paid_at <= at, or_(lifetime, and_(_recurring(), _covered(at)))), 1), else_=0
    )


def _recurring() -> ColumnElement[bool]:
    return and_(O.kind.in_(RECURRING), O.interval.in_(("monthly", "yearly")))


def _mrr(at: datetime) -> ColumnElement[float]:
    monthly = case((O.interval == "yearly", O.amount / 12.0), else_=O.amount)
    return func.sum(case((and_(O.paid_at <= at, _recurring(), _covered(at)), monthly), else_=0))


@dataclass
class _Standing:
    """Who pays at three moments (the previous period's start, this one's start, its end),
    the MRR at the last two, and whose first payment falls in each period."""

    paying: tuple[set[int], set[int], set[int]] = (set(), set(), set())
    mrr_start: dict[str, int] = field(default_factory=dict)
    mrr_end: dict[str, int] = field(default_factory=dict)
    new_before: int = 0
    new_now: int = 0


class _Money:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def standing(self, before: datetime, start: datetime, end: datetime) -> _Standing:
        """One pass over the paid orders up to `end`, grouped by account and currency."""
        first = func.min(O.paid_at)
        query = (
            select(
                O.account_id,
                O.currency,
                _mrr(start),
                _mrr(end),
                *(func.max(_paying(at)) for at in (before, start, end)),
                first < before,
                first < start,
                first < end,
            )
            .select_from(
                ORDERS.outerjoin(EntitlementRow.__table__, E.id == O.entitlement_id).outerjoin(
                    SUBS, SUBS.c.order_id == O.id
                )
            )
            .where(O.status == OrderStatus.PAID, O.paid_at <= end)
            .group_by(O.account_id, O.currency)
        )
        found = _Standing((set(), set(), set()))
        mrr_start: dict[str, float] = defaultdict(float)
        mrr_end: dict[str, float] = defaultdict(float)
        first_paid: dict[int, int] = {}
        """Per account: first paid before `before` (0), before `start` (1), before `end`
        (2), or at `end` (3)."""
        for row in self.connection.execute(query):
            account, currency, at_start, at_end, *paying, first_before, first_start, first_end = row
            mrr_start[currency] += float(at_start or 0)
            mrr_end[currency] += float(at_end or 0)
            for accounts, flag in zip(found.paying, paying, strict=True):  # a set each
                if flag:
                    accounts.add(account)
            when = 0 if first_before else 1 if first_start else 2 if first_end else 3
            first_paid[account] = min(first_paid.get(account, 3), when)
        found.mrr_start = {c: round(v) for c, v in sorted(mrr_start.items()) if round(v)}
        found.mrr_end = {c: round(v) for c, v in sorted(mrr_end.items()) if round(v)}
        found.new_before = sum(1 for when in first_paid.values() if when == 1)
        found.new_now = sum(1 for when in first_paid.values() if when == 2)
        return found

    def _paid_in(self, start: datetime, end: datetime) -> ColumnElement[bool]:
        return and_(O.status == OrderStatus.PAID, O.paid_at >= start, O.paid_at < end)

    def revenue_by_month(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        month = _month(O.paid_at)
        query = (
            select(month, O.currency, func.sum(O.amount))
            .where(self._paid_in(start, end))
            .group_by(month, O.currency)
            .order_by(month, O.currency)
        )
        return [
            {"month": m, "currency": c, "amount": int(a)}
            for m, c, a in self.connection.execute(query)
        ]

    def country_tiers(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        accounts: dict[str | None, int] = dict(
            self.connection.execute(
                select(O.price_tier, func.count(O.account_id.distinct()))
                .where(self._paid_in(start, end))
                .group_by(O.price_tier)
            ).all()
        )
        revenue: dict[str | None, dict[str, int]] = defaultdict(dict)
        for tier, currency, amount in self.connection.execute(
            select(O.price_tier, O.currency, func.sum(O.amount))
            .where(self._paid_in(start, end))
            .group_by(O.price_tier, O.currency)
        ):
            revenue[tier][currency] = int(amount)
        tiers = sorted(accounts, key=lambda t: (t is None, t or ""))
        return [
            {"tier": t, "accounts": int(accounts[t]), "revenue": dict(sorted(revenue[t].items()))}
            for t in tiers
        ]


def _top_content(connection: Connection, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Attempts started in the period, and attempts solved in it, by content key."""
    started = connection.execute(
        select(A.content_key, func.count())
        .where(A.started_at >= start, A.started_at < end)
        .group_by(A.content_key)
    ).all()
    solved = connection.execute(
        select(A.content_key, func.count())
        .where(A.state == AttemptState.SOLVED, A.finished_at >= start, A.finished_at < end)
        .group_by(A.content_key)
    ).all()
    table: dict[str, dict[str, Any]] = {}
    for key, n in started:
        table.setdefault(key, {"key": key, "started": 0, "solved": 0})["started"] = int(n)
    for key, n in solved:
        table.setdefault(key, {"key": key, "started": 0, "solved": 0})["solved"] = int(n)
    ranked = sorted(table.values(), key=lambda r: (-r["started"], -r["solved"], r["key"]))
    return ranked[:TOP]


# -- the report --------------------------------------------------------------------------


def _headline(usage: _Usage) -> dict[str, Any]:
    launches = sum(g.launches for g in usage.kinds.values())
    free_play = sum(g.launches for (_, by), g in usage.kinds.items() if by == LaunchedBy.FREE_PLAY)
    return {
        "launches": launches,
        "free_play_share": _ratio(free_play, launches),
        "active_accounts": usage.active,
        "paid_accounts": usage.paid_active,
        "paid_accounts_share": _ratio(usage.paid_active, usage.active),
    }


def _change(value: Any, previous: Any) -> Any:
    if isinstance(value, dict):
        currencies = sorted(set(value) | set(previous))
        return {c: value.get(c, 0) - previous.get(c, 0) for c in currencies}
    delta = value - previous
    return round(delta, 4) if isinstance(delta, float) else delta


def csv_table(report: dict[str, Any], table: str) -> str:
    """One of the report's tables as CSV (header row first); country_tiers has one row per
    tier and currency."""
    if table not in TABLES:
        raise NotFound(f"no table {table!r} (tables: {', '.join(TABLES)})")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(TABLES[table])
    for row in report[table]:
        if table == "country_tiers":
            for currency, amount in row["revenue"].items() or [("", 0)]:
                writer.writerow([row["tier"] or "", row["accounts"], currency, amount])
        else:
            writer.writerow([row[column] for column in TABLES[table]])
    return out.getvalue()


class Analytics:
    def __init__(self, db: Database, plans: PlanBook) -> None:
        self.db = db
        self.plans = plans

    def for_admin(self, actor: User, first: str | date, last: str | date) -> dict[str, Any]:
        """The report for the period `first` to `last`, if `actor` is an admin."""
        if actor.role != Role.ADMIN:
            raise Forbidden("only admins may see the analytics")
        return self.report(period(first, last))

    def csv_for_admin(
        self, actor: User, table: str, first: str | date, last: str | date
    ) -> tuple[str, str]:
        """(file name, CSV) of one of the report's tables, if `actor` is an admin."""
        if table not in TABLES:
            raise NotFound(f"no table {table!r} (tables: {', '.join(TABLES)})")
        report = self.for_admin(actor, first, last)
        days = report["period"]
        return f"labyard-{table}-{days['from']}-{days['to']}.csv", csv_table(report, table)

    def report(self, found: Period, now: datetime | None = None) -> dict[str, Any]:
        """Every figure for `found` and, for the headline ones, the previous period."""
        at = now or datetime.now(UTC)
        bucket = max(1, math.ceil(found.days / MAX_POINTS))
        before = found.previous
        asof = min(found.end, at)
        # The orders' half on a second connection, while this one reads the sessions': the
        # two halves share nothing, and each is mostly the database's own work.
        with ThreadPoolExecutor(max_workers=1) as pool, self.db.engine.connect() as connection:
            earnings = pool.submit(self._earnings, found, before, asof)
            sessions = _Sessions(connection, self.plans.default, at)
            usage = sessions.usage(sessions.window(found.start, found.end), bucket)
            earlier = sessions.usage(sessions.window(before.start, before.end), None)
            top_content = _top_content(connection, found.start, found.end)
            country_tiers = _Money(connection).country_tiers(found.start, found.end)
            standing, revenue, revenue_before = earnings.result()
        paying_before, paying_start, paying_end = standing.paying
        values = {
            **_headline(usage),
            **self._minutes(usage),
            "new_paid": standing.new_now,
            "churned": len(paying_start - paying_end),
            "mrr": standing.mrr_end,
            "revenue": _total(revenue),
        }
        previous = {
            **_headline(earlier),
            **self._minutes(earlier),
            "new_paid": standing.new_before,
            "churned": len(paying_before - paying_start),
            "mrr": standing.mrr_start,
            "revenue": _total(revenue_before),
        }
        tables = {
            "top_playgrounds": _top_playgrounds(usage),
            "top_content": top_content,
            "revenue_by_month": revenue,
            "country_tiers": country_tiers,
        }
        return {
            "period": found.to_json(),
            "previous_period": before.to_json(),
            "as_of": asof.isoformat(),
            **values,
            "previous": previous,
            "change": {key: _change(values[key], previous[key]) for key in values},
            **tables,
            "series": _series(found, bucket, usage),
        }

    def _earnings(
        self, found: Period, before: Period, asof: datetime
    ) -> tuple[_Standing, list[dict[str, Any]], list[dict[str, Any]]]:
        """Who pays when, and the revenue by month of both periods, on a connection of its
        own."""
        with self.db.engine.connect() as connection:
            money = _Money(connection)
            return (
                money.standing(before.start, found.start, asof),
                money.revenue_by_month(found.start, found.end),
                money.revenue_by_month(before.start, before.end),
            )

    def _minutes(self, usage: _Usage) -> dict[str, Any]:
        total = sum(g.minutes for g in usage.kinds.values())
        paid = sum(
            g.minutes
            for (plan, _), g in usage.kinds.items()
            if plan not in (self.plans.default, "")
        )
        return {
            "machine_minutes": round(total, 2),
            "paid_machine_minutes": round(paid, 2),
            "paid_usage_share": _ratio(paid, total),
        }


def _total(revenue: list[dict[str, Any]]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for row in revenue:
        totals[row["currency"]] += row["amount"]
    return dict(sorted(totals.items()))


def _top_playgrounds(usage: _Usage) -> list[dict[str, Any]]:
    ranked = sorted(
        usage.playgrounds.items(), key=lambda item: (-item[1].launches, -item[1].minutes, item[0])
    )
    return [
        {"name": name, "launches": g.launches, "machine_minutes": round(g.minutes, 2)}
        for name, g in ranked
        if g.launches or g.minutes > 0.005
    ][:TOP]


def _series(found: Period, bucket: int, usage: _Usage) -> dict[str, Any]:
    starts = [
        (found.first + timedelta(days=i * bucket)).isoformat()
        for i in range(len(usage.series_launches))
    ]
    return {
        "bucket_days": bucket,
        "start": starts,
        "launches": usage.series_launches,
        "machine_minutes": [round(m, 2) for m in usage.series_minutes],
    }
