"""Admission: whether an account's plan lets a playground start, restart or live longer.

Every check runs inside the transaction that records the start (playgrounds.py), after
taking the owner's start lock (a `start_locks` row updated first: a row lock on
PostgreSQL, the database's write lock on SQLite). So two starts of one owner, in one
process or several, take turns: the second counts the first's playground, and the
concurrent limit holds (no count-then-start race).

Checks, in this order, each with a message that says what to do: own manifests (403
unless the role or the plan allows them), concurrent playgrounds, machines per playground,
CPUs and memory per machine, lifetime, the daily machine-minute allowance. A start with no
account (the operator's local CLI) is not checked. A class member's start of the class's
content (`Launch.class_id`) is checked against the class instead of the plan
(class_admission.py): the class's seats pay for it. Guest accounts start nothing else.

The daily allowance counts machine-minutes since 00:00 UTC, open sessions up to now. Once
it is used up, new starts, restarts and extensions are refused until midnight UTC;
playgrounds already running go on to the end of their lifetime.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from labyard.errors import Forbidden, LimitExceeded
from labyard.manifest import Manifest
from labyard.services.class_admission import admit_class
from labyard.services.entitlements import effective_plan
from labyard.services.plans import Plan, PlanBook
from labyard.services.usage import DAY, Launch, day_start, used_minutes
from labyard.store import PlaygroundRow, StartLockRow
from labyard.types import Role

MAY_USE_OWN_MANIFESTS = (Role.AUTHOR, Role.ADMIN)


@dataclass(frozen=True)
class Admitted:
    plan: Plan | None
    """None: no plan applied (no account)."""
    lifetime_s: int

    @property
    def plan_name(self) -> str:
        return self.plan.name if self.plan else ""


class Admission:
    def __init__(self, plans: PlanBook) -> None:
        self.plans = plans

    def admit(
        self,
        session: Session,
        owner: str,
        manifest: Manifest,
        launch: Launch,
        lifetime_s: int | None,
        at: datetime,
    ) -> Admitted:
        """The plan and lifetime of a new playground, or the error that refuses it. A
        manifest's own lifetime is cut to the plan's; an explicit one over it is refused."""
        if launch.account_id is None:
            return Admitted(None, lifetime_s or manifest.lifetime)
        lock_owner(session, owner)
        if launch.class_id is not None:
            lifetime = admit_class(
                session,
                launch.class_id,
                launch.account_id,
                launch.content_key,
                manifest,
                lifetime_s,
                at,
            )
            return Admitted(None, lifetime)
        if launch.role == Role.GUEST:
            raise Forbidden("a guest account starts only its class's content, from the class page")
        plan = effective_plan(session, self.plans, launch.account_id, at)
        if launch.own_manifest:
            _own_manifest(plan, launch.role)
        _concurrent(plan, _playgrounds_of(session, owner))
        _size(plan, manifest)
        lifetime = lifetime_s or min(manifest.lifetime, plan.max_lifetime_s)
        if lifetime > plan.max_lifetime_s:
            raise LimitExceeded(
                f"a lifetime of {lifetime} s is over the {plan.title} plan's "
                f"{plan.max_lifetime_s} s"
            )
        self._allowance(session, plan, launch.account_id, at)
        return Admitted(plan, lifetime)

    def admit_restart(
        self, session: Session, owner: str, account_id: int | None, at: datetime
    ) -> Plan | None:
        """A restart opens a new session: refused once the daily allowance is used up."""
        if account_id is None:
            return None
        lock_owner(session, owner)
        plan = effective_plan(session, self.plans, account_id, at)
        self._allowance(session, plan, account_id, at)
        return plan

    def check_extend(
        self, session: Session, row: PlaygroundRow, seconds: int, account_id: int, at: datetime
    ) -> None:
        plan = effective_plan(session, self.plans, account_id, at)
        lived = (row.expires_at - row.created_at).total_seconds()
        if lived + seconds > plan.max_lifetime_s:
            raise LimitExceeded(f"the {plan.title} plan allows {plan.max_lifetime_s} s in all")
        self._allowance(session, plan, account_id, at)

    def _allowance(self, session: Session, plan: Plan, account_id: int, at: datetime) -> None:
        allowance = plan.limits.daily_machine_minutes
        if allowance is None:
            return
        since = day_start(at)
        used = used_minutes(session, account_id, since, at)
        if used >= allowance:
            raise LimitExceeded(
                f"you have used today's {allowance} machine-minutes of the {plan.title} plan "
                f"({used:.0f} used); the allowance resets at 00:00 UTC, "
                f"in {_duration(since + DAY - at)}",
                reason="allowance_exceeded",
            )


def lock_owner(session: Session, owner: str) -> None:
    """Take the owner's start lock for the rest of the transaction. Must be the first
    statement of it: on SQLite, a write as first statement takes the write lock before
    anything is read, so what follows sees every start that committed before."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(StartLockRow).values(owner=owner, starts=1)
    statement = statement.on_conflict_do_update(
        index_elements=[StartLockRow.owner], set_={"starts": StartLockRow.starts + 1}
    )
    session.execute(statement)


def _playgrounds_of(session: Session, owner: str) -> int:
    query = select(func.count()).select_from(PlaygroundRow).where(PlaygroundRow.owner == owner)
    return int(session.scalar(query) or 0)


def _own_manifest(plan: Plan, role: str) -> None:
    if role not in MAY_USE_OWN_MANIFESTS and not plan.limits.custom_playgrounds:
        raise Forbidden(
            "only authors (or plans with custom playgrounds) may start playgrounds from "
            f"their own manifests; the {plan.title} plan has none"
        )


def _concurrent(plan: Plan, running: int) -> None:
    if running >= plan.concurrent_playgrounds:
        raise LimitExceeded(
            f"the {plan.title} plan runs {plan.concurrent_playgrounds} playground(s) at a time; "
            "destroy one first"
        )


def _size(plan: Plan, manifest: Manifest) -> None:
    if len(manifest.machines) > plan.machines_per_playground:
        raise LimitExceeded(
            f"{manifest.name!r} has {len(manifest.machines)} machines; the {plan.title} plan "
            f"allows {plan.machines_per_playground} per playground"
        )
    limits = plan.limits
    for machine in manifest.machines:
        if machine.cpus > limits.cpus_per_machine:
            raise LimitExceeded(
                f"machine {machine.name!r} asks for {machine.cpus:g} CPUs; the {plan.title} "
                f"plan allows {limits.cpus_per_machine:g} per machine"
            )
        if machine.memory > limits.memory_per_machine:
            raise LimitExceeded(
                f"machine {machine.name!r} asks for {_bytes(machine.memory)} of memory; the "
                f"{plan.title} plan allows {_bytes(limits.memory_per_machine)} per machine"
            )


def _bytes(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} bytes"


def _duration(left: timedelta) -> str:
    """`3 h 12 min`, `5 min`, `under a minute`."""
    hours, minutes = divmod(int(left.total_seconds()) // 60, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else "under a minute"
