"""Attempts and their task results in the database, as plain snapshots."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from labyard.errors import NotFound
from labyard.services.tasks.spec import AttemptSpec
from labyard.store import AttemptRow, Database, TaskResultRow
from labyard.types import AttemptState, TaskState

_ID = re.compile(r"^a[0-9a-f]{14}$")


def new_attempt_id() -> str:
    return "a" + secrets.token_hex(7)


def now() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite hands datetimes back without a zone; they were stored as UTC.
    if moment is None or moment.tzinfo:
        return moment
    return moment.replace(tzinfo=UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


@dataclass(frozen=True)
class TaskRecord:
    state: str
    stdout: str = ""
    hint: str = ""
    updated_at: datetime = field(default_factory=now)
    completed_at: datetime | None = None

    def to_json(self, name: str, spec: AttemptSpec) -> dict[str, Any]:
        task = spec.tasks[name]
        return {
            "name": name,
            "state": self.state,
            "init": task.init,
            "needs": list(task.needs),
            "hint": self.hint,
            "input": name in spec.inputs,
            "updated_at": _iso(self.updated_at),
            "completed_at": _iso(self.completed_at),
        }


@dataclass(frozen=True)
class AttemptRecord:
    id: str
    owner: str
    content_key: str
    playground_id: str | None
    state: str
    message: str
    spec: AttemptSpec
    inputs: dict[str, str]
    started_at: datetime
    finished_at: datetime | None
    tasks: dict[str, TaskRecord]
    notice: str = ""
    """Said once, by the start that made it: where its playground runs when that is not
    the learner's region (`Playground.notice`). Not stored."""

    @property
    def finished(self) -> bool:
        return self.state != AttemptState.ACTIVE

    def with_tasks(self, changes: dict[str, TaskRecord]) -> AttemptRecord:
        return replace(self, tasks={**self.tasks, **changes})

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "content": self.content_key,
            "title": self.spec.title,
            "playground_id": self.playground_id,
            "state": self.state,
            "message": self.message,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "tasks": [t.to_json(name, self.spec) for name, t in self.tasks.items()],
            **({"notice": self.notice} if self.notice else {}),
        }


def _record(row: AttemptRow) -> AttemptRecord:
    spec = AttemptSpec.from_json(row.spec)
    by_name = {t.task: t for t in row.tasks}
    tasks = {
        name: TaskRecord(
            r.state, r.stdout, r.hint, _aware(r.updated_at) or now(), _aware(r.completed_at)
        )
        for name in spec.tasks
        if (r := by_name.get(name)) is not None
    }
    return AttemptRecord(
        row.id,
        row.owner,
        row.content_key,
        row.playground_id,
        row.state,
        row.message,
        spec,
        dict(row.inputs or {}),
        _aware(row.started_at) or now(),
        _aware(row.finished_at),
        tasks,
    )


class AttemptStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def insert(self, record: AttemptRecord) -> None:
        with self.db.session() as session:
            row = AttemptRow(
                id=record.id,
                owner=record.owner,
                content_key=record.content_key,
                playground_id=record.playground_id,
                state=record.state,
                message=record.message,
                spec=record.spec.to_json(),
                inputs=record.inputs,
                started_at=record.started_at,
                finished_at=record.finished_at,
            )
            row.tasks = [_task_row(record.id, name, t) for name, t in record.tasks.items()]
            session.add(row)

    def load(self, attempt_id: str, owner: str | None = None) -> AttemptRecord:
        """The attempt; NotFound when it does not exist or belongs to someone else."""
        with self.db.session() as session:
            # An id that cannot be one is not looked up (PostgreSQL rejects NUL characters).
            row = session.get(AttemptRow, attempt_id) if _ID.match(attempt_id) else None
            if row is None or (owner is not None and row.owner != owner):
                raise NotFound(f"no attempt {attempt_id!r}")
            return _record(row)

    def list(self, owner: str | None = None, state: str | None = None) -> list[AttemptRecord]:
        query = select(AttemptRow).order_by(AttemptRow.started_at)
        if owner is not None:
            query = query.where(AttemptRow.owner == owner)
        if state is not None:
            query = query.where(AttemptRow.state == state)
        with self.db.session() as session:
            return [_record(row) for row in session.scalars(query)]

    def save_tasks(self, attempt_id: str, changes: dict[str, TaskRecord]) -> None:
        with self.db.session() as session:
            for name, task in changes.items():
                session.merge(_task_row(attempt_id, name, task))

    def finish(self, attempt_id: str, state: AttemptState, message: str) -> datetime:
        finished = now()
        with self.db.session() as session:
            row = session.get(AttemptRow, attempt_id)
            if row is not None and row.state == AttemptState.ACTIVE:
                row.state, row.message, row.finished_at = state, message, finished
        return finished

    def reopen(self, attempt_id: str, inputs: dict[str, str]) -> None:
        """Active again, with these answers (an author's reset of a finished attempt)."""
        with self.db.session() as session:
            row = session.get(AttemptRow, attempt_id)
            if row is None:
                raise NotFound(f"no attempt {attempt_id!r}")
            row.state, row.message, row.finished_at = AttemptState.ACTIVE, "", None
            row.inputs = dict(inputs)

    def set_input(self, attempt_id: str, task: str, value: str) -> None:
        with self.db.session() as session:
            row = session.get(AttemptRow, attempt_id)
            if row is None:
                raise NotFound(f"no attempt {attempt_id!r}")
            row.inputs = {**(row.inputs or {}), task: value}  # a new dict: JSON is not mutable

    def delete(self, attempt_id: str) -> None:
        with self.db.session() as session:
            row = session.get(AttemptRow, attempt_id)
            if row is not None:
                session.delete(row)


def _task_row(attempt_id: str, name: str, task: TaskRecord) -> TaskResultRow:
    return TaskResultRow(
        attempt_id=attempt_id,
        task=name,
        state=task.state,
        stdout=task.stdout,
        hint=task.hint,
        updated_at=task.updated_at,
        completed_at=task.completed_at,
    )


def initial_tasks(spec: AttemptSpec) -> dict[str, TaskRecord]:
    return {name: TaskRecord(TaskState.CREATED) for name in spec.tasks}
