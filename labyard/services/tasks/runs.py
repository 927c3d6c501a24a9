"""The last run of every check of an attempt, for the authors' task panel (devtools.py).

Kept in memory by the attempt's checker, never in the database: it is what a check printed
(which learners never see, and which may be large), and it is only worth having live. A
server restart forgets it; the next tick fills it in again. The database keeps what the
attempt needs: task states, hints, and the stdout of completed tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from labyard.services.tasks.records import now
from labyard.services.tasks.script import Check, CheckResult


@dataclass(frozen=True)
class CheckRun:
    """One check's last run: `run` (check), `hint` (hintcheck) or `fail` (failcheck)."""

    exit_code: int
    stdout: str
    stderr: str
    duration_s: float | None
    timed_out: bool
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "duration_s": self.duration_s,
            "timed_out": self.timed_out,
            "at": self.at.isoformat(),
        }


@dataclass
class TaskRuns:
    runs: int = 0
    """Ticks (or re-runs) that ran this task's checks."""
    env: dict[str, str] = field(default_factory=dict)
    """The rendered `env` its checks last ran with."""
    last: dict[str, CheckRun] = field(default_factory=dict)
    """By check kind: `run`, `hint`, `fail`."""


class RunLog:
    def __init__(self) -> None:
        self.tasks: dict[str, TaskRuns] = {}

    def record(self, results: list[tuple[Check, CheckResult]]) -> None:
        """One tick's results (a task counts once per tick, whatever its checks)."""
        at = now()
        counted: set[str] = set()
        for check, result in results:
            runs = self.tasks.setdefault(check.task, TaskRuns())
            if check.task not in counted:
                counted.add(check.task)
                runs.runs += 1
            runs.env = dict(check.env)
            runs.last[check.kind] = CheckRun(
                result.exit_code,
                result.stdout,
                result.stderr,
                result.duration_s,
                result.timed_out,
                at,
            )

    def of(self, task: str) -> TaskRuns:
        return self.tasks.get(task) or TaskRuns()

    def forget(self, tasks: list[str]) -> None:
        """A reset task starts over: no runs, no output."""
        for task in tasks:
            self.tasks.pop(task, None)
