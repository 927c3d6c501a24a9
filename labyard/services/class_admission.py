"""Admission of a class member's start: the class's seats pay for it, not the member's plan.

Runs in the transaction that records the start (admission.py calls it after taking the
owner's start lock), and bumps the class's `changes` first: that row lock (the write lock
on SQLite) makes every start of one class take turns, so two members cannot both take the
last seat and one member cannot start twice (no count-then-start race). A class's running
playgrounds are its usage sessions (`class_id`) whose playground still exists.

A start is admitted while the class runs (starts_at <= now < ends_at, not ended), for a
member not removed, for content the class uses, while the member has no other class
playground and the class has a seat free; it lives at most until the class ends.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from labyard.errors import Conflict, Forbidden, NotFound
from labyard.manifest import Manifest
from labyard.store.models import ClassMemberRow, ClassRow, PlaygroundRow, UsageSessionRow

COURSES = "courses/"


def covers(content: list[str], key: str) -> bool:
    """Whether a class using `content` uses `key` (a course covers its lessons)."""
    return key in content or any(c.startswith(COURSES) and key.startswith(c + "/") for c in content)


def running(row: ClassRow, at: datetime) -> bool:
    return row.ended_at is None and row.starts_at <= at < row.ends_at


def not_running_message(row: ClassRow, at: datetime) -> str:
    if row.ended_at is not None:
        return f"class {row.title!r} has ended"
    if at < row.starts_at:
        return f"class {row.title!r} starts at {row.starts_at:%Y-%m-%d %H:%M} UTC"
    return f"class {row.title!r} ended at {row.ends_at:%Y-%m-%d %H:%M} UTC"


def live_playgrounds(session: Session, class_id: str, account_id: int | None = None) -> list[str]:
    """Ids of the class's playgrounds that exist (of one member, with `account_id`)."""
    query = (
        select(UsageSessionRow.playground_id)
        .distinct()
        .join(PlaygroundRow, PlaygroundRow.id == UsageSessionRow.playground_id)
        .where(UsageSessionRow.class_id == class_id)
    )
    if account_id is not None:
        query = query.where(UsageSessionRow.account_id == account_id)
    return list(session.scalars(query))


def admit_class(
    session: Session,
    class_id: str,
    account_id: int,
    content_key: str,
    manifest: Manifest,
    lifetime_s: int | None,
    at: datetime,
) -> int:
    """The lifetime of the member's new class playground, or the error that refuses it."""
    bumped = session.execute(
        update(ClassRow).where(ClassRow.id == class_id).values(changes=ClassRow.changes + 1)
    )
    if not getattr(bumped, "rowcount", 0):
        raise NotFound(f"no class {class_id!r}")
    row = session.get(ClassRow, class_id)
    assert row is not None  # updated just above, in this transaction
    session.refresh(row)
    if not running(row, at):
        raise Conflict(not_running_message(row, at) + "; its content cannot be started now")
    member = session.scalar(
        select(ClassMemberRow).where(
            ClassMemberRow.class_id == class_id, ClassMemberRow.account_id == account_id
        )
    )
    if member is None or member.removed_at is not None:
        raise Forbidden(f"you are not a member of class {row.title!r}")
    if not covers(list(row.content), content_key):
        raise Forbidden(f"class {row.title!r} does not use {content_key!r}")
    if live_playgrounds(session, class_id, account_id):
        raise Conflict(
            f"you have a playground of class {row.title!r} running already; end it first"
        )
    if len(live_playgrounds(session, class_id)) >= row.seats:
        raise Conflict(f"all {row.seats} seats of class {row.title!r} are in use; try again soon")
    left = int((row.ends_at - at).total_seconds())
    return max(1, min(lifetime_s or manifest.lifetime, left))
