"""The task state machine, as pure functions of an attempt's tasks and results.

    created -> blocked    a task it `needs` is not completed
    created|blocked -> running    everything it needs is completed: its checks are looped
    running -> completed  `run` exited 0 (its stdout is kept for tasks that need it)
    running -> failed     `failcheck` exited non-zero: the attempt cannot succeed any more

`hintcheck` output is the task's live hint while it runs. When `run` succeeds and the
failcheck fails in the same tick, the work is done: completed wins.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace

from labyard.manifest.env import expand_env
from labyard.services.tasks.records import AttemptRecord, TaskRecord, now
from labyard.services.tasks.script import Check, CheckResult
from labyard.types import TaskState

FINAL = frozenset({TaskState.COMPLETED, TaskState.FAILED})


def advance(record: AttemptRecord) -> dict[str, TaskRecord]:
    """Unfinished tasks become blocked or running, by whether their needs are completed."""
    changes: dict[str, TaskRecord] = {}
    for name, task in record.spec.looped_tasks.items():
        current = record.tasks[name]
        if current.state in FINAL:
            continue
        ready = all(_completed(record, need) for need in task.needs)
        state = TaskState.RUNNING if ready else TaskState.BLOCKED
        if current.state != state:
            changes[name] = replace(current, state=state, updated_at=now())
    return changes


def _completed(record: AttemptRecord, task: str) -> bool:
    found = record.tasks.get(task)
    return found is not None and found.state == TaskState.COMPLETED


def due_checks(record: AttemptRecord) -> dict[str, list[Check]]:
    """The checks to run this tick, by machine: those of every running task, except tasks
    still waiting for the learner's answer."""
    by_machine: dict[str, list[Check]] = defaultdict(list)
    for name in record.spec.looped_tasks:
        if record.tasks[name].state != TaskState.RUNNING:
            continue
        if record.spec.wants_input(name) and name not in record.inputs:
            continue
        by_machine[record.spec.machine_of(name)] += checks_of(record, name)
    return dict(by_machine)


def checks_of(record: AttemptRecord, name: str) -> list[Check]:
    """A looped task's checks (run, hint, fail), `env` rendered as of now."""
    task = record.spec.looped_tasks[name]
    stdouts = {n: t.stdout for n, t in record.tasks.items() if t.state == TaskState.COMPLETED}
    env = expand_env(task.env, stdouts, record.inputs.get(name))
    scripts = (("run", task.run), ("hint", task.hintcheck), ("fail", task.failcheck))
    return [
        Check(name, kind, script, task.user, env, task.timeout_seconds)  # type: ignore[arg-type]
        for kind, script in scripts
        if script
    ]


@dataclass
class Outcome:
    changes: dict[str, TaskRecord] = field(default_factory=dict)
    failure: str | None = None
    """Why the attempt cannot succeed any more, when a failcheck said so."""


def apply(record: AttemptRecord, results: list[tuple[Check, CheckResult]]) -> Outcome:
    """New task records from one tick's check results."""
    outcome = Outcome()
    by_task: dict[str, dict[str, CheckResult]] = defaultdict(dict)
    for check, result in results:
        by_task[check.task][check.kind] = result
    for name, kinds in by_task.items():
        current = record.tasks[name]
        updated = _next(current, kinds)
        if updated.state == TaskState.FAILED:
            fail = kinds["fail"]
            reason = (fail.stdout or fail.stderr).strip()[-500:]
            outcome.failure = f"task {name!r} can no longer be completed" + (
                f": {reason}" if reason else ""
            )
        if updated != current:
            outcome.changes[name] = replace(updated, updated_at=now())
    return outcome


def _next(current: TaskRecord, kinds: dict[str, CheckResult]) -> TaskRecord:
    run = kinds.get("run")
    if run is not None and run.exit_code == 0:
        return replace(
            current, state=TaskState.COMPLETED, stdout=run.stdout, hint="", completed_at=now()
        )
    fail = kinds.get("fail")
    if fail is not None and fail.exit_code != 0 and not fail.timed_out:
        return replace(current, state=TaskState.FAILED)
    hint = kinds.get("hint")
    if hint is not None and not hint.timed_out:
        return replace(current, hint=hint.stdout.strip())
    return current


def solved(record: AttemptRecord) -> bool:
    return all(record.tasks[n].state == TaskState.COMPLETED for n in record.spec.check_tasks)
