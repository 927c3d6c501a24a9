"""The instructor board and the exports: a class's stored results, read, never checked.

Everything here comes from the database: the attempts members started in the class
(class_attempts) with their task results, and the class's usage sessions. Reading runs no
check and keeps none running (checks run because learners work: services/tasks/audience.py),
so an instructor watching the board costs the machines nothing.

- Board: a learner x task grid (each task's state and first completion), the share of
  members done per task, each learner's last progress (an attempt started or a task
  completed) with `stuck` past STUCK_S while an attempt is under way, and who is online.
- Export (CSV and JSON): per learner, each task's first-completed time, attempts, hints
  seen and total active time (how long their class playgrounds ran).

Hints seen: a task result keeps only its latest hint, cleared once the task completes, so
every read notes which tasks showed one (class_attempts.hints); the board reads each
second while open, which catches hints that stay up for more than a moment.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from labyard.errors import LabyardError
from labyard.services.accounts import User
from labyard.services.class_room import ClassRoom, members_of
from labyard.services.classes import CONTENT_KEY, now
from labyard.services.playgrounds import aware
from labyard.store import AttemptRow, UsageSessionRow
from labyard.store.models import ClassAttemptRow, ClassRow
from labyard.types import AttemptState, TaskState

STUCK_S = 600
COLUMNS_TTL_S = 30.0
"""How long a class's task columns are kept before the content is read again."""


@dataclass(frozen=True)
class Column:
    content: str
    title: str
    task: str

    @property
    def key(self) -> str:
        return f"{self.content}#{self.task}"

    def to_json(self) -> dict[str, str]:
        return {"key": self.key, "content": self.content, "title": self.title, "task": self.task}


@dataclass
class _Learner:
    account_id: int
    name: str
    guest: bool
    removed: bool
    cells: dict[str, dict[str, Any]]
    attempts: int = 0
    hints: int = 0
    active_s: float = 0.0
    last_progress: datetime | None = None
    working: bool = False
    """Has an attempt under way."""
    watched: bool = False
    """Has an attempt page (its terminal) open."""


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


class ClassResults:
    def __init__(self, room: ClassRoom) -> None:
        self.room = room
        self.classes = room.classes
        self.db = room.db
        self._columns: dict[str, tuple[float, list[Column]]] = {}

    # -- columns -------------------------------------------------------------------------

    def columns(self, row: ClassRow) -> list[Column]:
        """One column per checked task of each content item (a course: of each lesson)."""
        cached = self._columns.get(row.id)
        if cached is not None and time.monotonic() - cached[0] < COLUMNS_TTL_S:
            return cached[1]
        found: list[Column] = []
        for key in row.content:
            for item_key in self._items(key):
                found += self._tasks_of(item_key)
        self._columns[row.id] = (time.monotonic(), found)
        return found

    def _items(self, key: str) -> list[str]:
        if not CONTENT_KEY.match(key):
            return []  # a bare playground has no tasks
        try:
            item = self.room.attempts.item(key)
        except LabyardError:
            return []  # removed from the content folder since: its attempts still show
        modules = getattr(item.front, "modules", None)
        if item.kind == "course" and modules is not None:
            return [f"{key}/{slug}" for module in modules for slug in module.lessons]
        return [key]

    def _tasks_of(self, key: str) -> list[Column]:
        try:
            item = self.room.attempts.item(key)
        except LabyardError:
            return []
        tasks = getattr(item.front, "tasks", {}) or {}
        title = item.front.title
        return [Column(key, title, name) for name, task in tasks.items() if not task.init]

    # -- reading -------------------------------------------------------------------------

    def _learners(self, session: Session, row: ClassRow) -> dict[int, _Learner]:
        learners = {
            m.account_id: _Learner(
                m.account_id, m.display_name, m.guest, m.removed_at is not None, {}
            )
            for m in members_of(session, row.id)
        }
        query = (
            select(ClassAttemptRow, AttemptRow)
            .join(AttemptRow, AttemptRow.id == ClassAttemptRow.attempt_id)
            .where(ClassAttemptRow.class_id == row.id)
            .options(selectinload(AttemptRow.tasks))
            .order_by(AttemptRow.started_at)
        )
        audience = self.room.attempts.audience
        for link, attempt in session.execute(query):
            learner = learners.get(link.account_id)
            if learner is None:
                continue
            learner.attempts += 1
            _progress(learner, aware(attempt.started_at))
            if attempt.state == AttemptState.ACTIVE:
                learner.working = True
                learner.watched |= audience.subscribers(attempt.id) > 0
            hinted = set(link.hints or [])
            for task in attempt.tasks:
                if task.hint and task.task not in hinted:
                    hinted.add(task.task)
                cell = learner.cells.setdefault(
                    f"{attempt.content_key}#{task.task}", {"state": None, "completed_at": None}
                )
                cell["state"] = task.state
                if task.completed_at is not None:
                    done = aware(task.completed_at)
                    _progress(learner, done)
                    first = cell["completed_at"]
                    cell["completed_at"] = min(first, done) if first else done
            for cell in learner.cells.values():
                if cell["completed_at"] is not None:
                    cell["state"] = TaskState.COMPLETED
            if hinted != set(link.hints or []):
                link.hints = sorted(hinted)  # a new list: JSON columns are not mutable
            learner.hints += len(hinted)
        self._active_time(session, row, learners)
        return learners

    @staticmethod
    def _active_time(session: Session, row: ClassRow, learners: dict[int, _Learner]) -> None:
        at = now()
        query = select(
            UsageSessionRow.account_id, UsageSessionRow.started_at, UsageSessionRow.ended_at
        ).where(UsageSessionRow.class_id == row.id)
        for account_id, started, ended in session.execute(query):
            learner = learners.get(account_id) if account_id is not None else None
            if learner is not None:
                learner.active_s += max(0.0, ((ended or at) - started).total_seconds())

    # -- the board -----------------------------------------------------------------------

    def board(self, user: User, class_id: str) -> dict[str, Any]:
        """The instructor's board (Forbidden for a member, NotFound for anyone else)."""
        with self.db.session() as session:
            row = self.classes.instructed(session, user, class_id)
            view = self.classes.view_of(session, row, user)
            columns = self.columns(row)
            learners = self._learners(session, row)
        at = now()
        present = [x for x in learners.values() if not x.removed]
        share = {
            c.key: (
                sum(1 for x in present if (x.cells.get(c.key) or {}).get("completed_at"))
                / len(present)
                if present
                else 0.0
            )
            for c in columns
        }
        rows = []
        for x in learners.values():
            idle = (at - x.last_progress).total_seconds() if x.last_progress else None
            rows.append(
                {
                    "account_id": x.account_id,
                    "name": x.name,
                    "guest": x.guest,
                    "removed": x.removed,
                    "online": x.watched or self.room.presence.online(class_id, x.account_id),
                    "working": x.working,
                    "last_progress_at": _iso(x.last_progress),
                    "idle_s": int(idle) if idle is not None else None,
                    "stuck": x.working and idle is not None and idle > STUCK_S,
                    "done": sum(
                        1 for c in columns if (x.cells.get(c.key) or {}).get("completed_at")
                    ),
                    "cells": {
                        c.key: {
                            "state": (x.cells.get(c.key) or {}).get("state"),
                            "completed_at": _iso((x.cells.get(c.key) or {}).get("completed_at")),
                        }
                        for c in columns
                    },
                }
            )
        return {
            "class": view.to_json(""),
            "columns": [c.to_json() for c in columns],
            "learners": rows,
            "share_done": {k: round(v, 3) for k, v in share.items()},
            "stuck_after_s": STUCK_S,
            "at": at.isoformat(),
        }

    # -- exports -------------------------------------------------------------------------

    def results(self, user: User, class_id: str) -> dict[str, Any]:
        """The export as JSON (instructor and admins; at any time, after the end too)."""
        with self.db.session() as session:
            row = self.classes.instructed(session, user, class_id)
            columns = self.columns(row)
            learners = self._learners(session, row)
            summary = {
                "id": row.id,
                "title": row.title,
                "starts_at": _iso(row.starts_at),
                "ends_at": _iso(row.ends_at),
                "ended_at": _iso(row.ended_at),
            }
        return {
            "class": summary,
            "tasks": [c.to_json() for c in columns],
            "learners": [
                {
                    "learner": x.name,
                    "account_id": x.account_id,
                    "guest": x.guest,
                    "removed": x.removed,
                    "tasks": {
                        c.key: _iso((x.cells.get(c.key) or {}).get("completed_at")) for c in columns
                    },
                    "attempts": x.attempts,
                    "hints_seen": x.hints,
                    "active_s": int(x.active_s),
                }
                for x in learners.values()
            ],
        }

    def results_csv(self, user: User, class_id: str) -> str:
        """The export as CSV: one row per learner, one column per task (first completed,
        ISO 8601 UTC, empty if never), then attempts, hints seen, active seconds."""
        data = self.results(user, class_id)
        out = io.StringIO()
        writer = csv.writer(out)
        keys = [t["key"] for t in data["tasks"]]
        writer.writerow(["learner", "guest", *keys, "attempts", "hints_seen", "active_s"])
        for x in data["learners"]:
            completed = [x["tasks"][k] or "" for k in keys]
            counts = [x["attempts"], x["hints_seen"], x["active_s"]]
            writer.writerow(
                [_cell(x["learner"]), "yes" if x["guest"] else "no", *completed, *counts]
            )
        return out.getvalue()


def _progress(learner: _Learner, moment: datetime) -> None:
    if learner.last_progress is None or moment > learner.last_progress:
        learner.last_progress = moment


def _cell(text: str) -> str:
    """A name as a spreadsheet shows it, not runs it (CSV formula injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
