"""`labyard content test`: prove each challenge solvable, and not solved by doing nothing.

For one challenge, two fresh playgrounds side by side:
- with the solution: init tasks, then `solution.sh` in the first machine (and each
  `solution.<machine>.sh` in its machine); every task must complete within its
  `timeout_seconds` of running (counted from when the solution ended or the task got
  unblocked, whichever is later), and all of them within max(60 s, the sum of the timeouts);
- without it: init tasks and `UNSOLVED_TICKS` check ticks; then at least one task must still
  be unfinished, or the checks check nothing.
Both playgrounds are destroyed afterwards and their attempts forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from labyard.content import layout
from labyard.content.loader import Item, load_item, load_tree
from labyard.content.playgrounds import load_playgrounds
from labyard.errors import InvalidInput, LabyardError, NotFound
from labyard.manifest import Manifest
from labyard.services.tasks.engine import Attempts
from labyard.services.tasks.records import AttemptRecord
from labyard.types import AttemptState, TaskState

OWNER = "content-test"
UNSOLVED_TICKS = 5
MIN_DEADLINE_S = 60.0


class SolutionFailed(InvalidInput):
    reason = "solution_failed"


@dataclass
class Verdict:
    name: str
    passed: bool = False
    seconds: float = 0.0
    tasks: dict[str, str] = field(default_factory=dict)
    message: str = ""

    def to_json(self) -> dict[str, object]:
        return self.__dict__.copy()


@dataclass
class Challenges:
    items: list[Item]
    playgrounds: dict[str, Manifest]
    """The content folder's own playgrounds, which items may name."""
    problems: list[str]


def collect(path: Path, only: str | None = None) -> Challenges:
    """The challenges in a content folder, or the one challenge folder `path` is."""
    if (path / "index.md").is_file() or path.name == "index.md":
        item = load_item(path)
        _, _, root = layout.locate(item.path)
        problems: list[str] = []
        own = load_playgrounds(root, problems) if root else {}
        found = Challenges([item], own, problems)
    else:
        tree = load_tree(path)
        found = Challenges(tree.of_kind("challenge"), tree.playgrounds, tree.problems)
    if only is not None:
        found.items = [i for i in found.items if only in (i.slug, i.key)]
    if not found.items:
        raise NotFound(f"no challenge{f' {only!r}' if only else ''} under {path}")
    return found


def deadline_for(record: AttemptRecord) -> float:
    return max(MIN_DEADLINE_S, float(sum(t.timeout_seconds for t in record.spec.tasks.values())))


async def test_challenge(
    attempts: Attempts, item: Item, own: Mapping[str, Manifest] | None = None
) -> Verdict:
    verdict = Verdict(item.key)
    started = time.monotonic()
    try:
        manifest = attempts.manifest_for(item, own)
        # A task group: when one run fails, the other is cancelled and cleans up first.
        async with asyncio.TaskGroup() as group:
            with_solution = group.create_task(_with_solution(attempts, item, manifest))
            without = group.create_task(_without_solution(attempts, item, manifest))
        solved = with_solution.result()
        verdict.tasks = {name: t.state for name, t in solved.tasks.items()}
        verdict.message = _judge(solved, without.result())
        verdict.passed = not verdict.message
    except* LabyardError as failures:
        verdict.message = "; ".join(str(e) for e in failures.exceptions)
    verdict.seconds = round(time.monotonic() - started, 1)
    return verdict


def _judge(solved: AttemptRecord, unsolved: AttemptRecord) -> str:
    if solved.state != AttemptState.SOLVED:
        open_tasks = [n for n, t in solved.tasks.items() if t.state != TaskState.COMPLETED]
        why = f" ({solved.message})" if solved.message else ""
        return f"with the solution, not completed: {', '.join(open_tasks)}{why}"
    if unsolved.state == AttemptState.SOLVED:
        return (
            f"without the solution every task completed within {UNSOLVED_TICKS} checks: "
            "the checks do not check the learner's work"
        )
    return ""


async def _with_solution(attempts: Attempts, item: Item, manifest: Manifest) -> AttemptRecord:
    record = await attempts.start(item, OWNER, manifest=manifest)
    try:
        deadline = time.monotonic() + deadline_for(record)
        await _run_solutions(attempts, record, item, deadline)
        return await _wait_finished(attempts, record.id, deadline)
    finally:
        await _discard(attempts, record.id)


async def _without_solution(attempts: Attempts, item: Item, manifest: Manifest) -> AttemptRecord:
    record = await attempts.start(item, OWNER, manifest=manifest)
    try:
        checker = attempts.checker(record.id)
        if checker is not None:
            slowest = max(t.timeout_seconds for t in record.spec.tasks.values())
            timeout = UNSOLVED_TICKS * (attempts.interval_s + slowest) + 10
            await checker.wait_ticks(UNSOLVED_TICKS, timeout)
        return attempts.store.load(record.id)
    finally:
        await _discard(attempts, record.id)


def _solutions(item: Item, default_machine: str) -> list[tuple[str, Path]]:
    """(machine, script): `solution.sh` in the first machine, then `solution.<m>.sh` in m."""
    found = [(default_machine, item.solution_sh)] if item.solution_sh else []
    for path in sorted(item.dir.glob("solution.*.sh")):
        found.append((path.name.removeprefix("solution.").removesuffix(".sh"), path))
    if not found:
        raise NotFound(f"{item.key} has no solution.sh to test it with")
    return found


async def _run_solutions(
    attempts: Attempts, record: AttemptRecord, item: Item, deadline: float
) -> None:
    for machine, path in _solutions(item, record.spec.default_machine):
        script = path.read_text()
        connection = await attempts.playgrounds.connect(record.playground_id or "", machine)
        async with connection:
            result = await connection.run(
                f"bash -c {shlex.quote(script)}", timeout=max(1.0, deadline - time.monotonic())
            )
        if result.exit_code != 0:
            output = (result.stderr or result.stdout).strip()[-300:]
            raise SolutionFailed(f"{path.name} exited with {result.exit_code}: {output}")


async def _wait_finished(attempts: Attempts, attempt_id: str, deadline: float) -> AttemptRecord:
    """Wait until the attempt is finished, the deadline passes, or a task has been running
    (unblocked, after the solution ran) for longer than its `timeout_seconds`."""
    first, queue = attempts.subscribe(attempt_id, None)
    try:
        if first["attempt"]["state"] == AttemptState.ACTIVE:
            clock = _TaskClock(attempts.store.load(attempt_id), deadline)
            with contextlib.suppress(TimeoutError):
                while True:
                    event = await asyncio.wait_for(queue.get(), clock.remaining())
                    if event["type"] == "attempt":
                        break
                    if event["type"] == "task":
                        clock.saw(event["task"]["name"], event["task"]["state"])
    finally:
        attempts.unsubscribe(attempt_id, queue)
    return attempts.store.load(attempt_id)


class _TaskClock:
    """When each running task's time is up: its timeout counts from when it started
    running, or from now (the solution has just run) for tasks running already."""

    def __init__(self, record: AttemptRecord, deadline: float) -> None:
        self.timeouts = {n: t.timeout_seconds for n, t in record.spec.looped_tasks.items()}
        self.deadline = deadline
        self.since = {n: time.monotonic() for n in self.timeouts if _running(record, n)}

    def saw(self, task: str, state: str) -> None:
        if state == TaskState.RUNNING:
            self.since.setdefault(task, time.monotonic())
        elif state == TaskState.COMPLETED:
            self.since.pop(task, None)

    def remaining(self) -> float:
        ends = [self.deadline, *(t + self.timeouts[n] for n, t in self.since.items())]
        return max(0.0, min(ends) - time.monotonic())


def _running(record: AttemptRecord, task: str) -> bool:
    return record.tasks[task].state == TaskState.RUNNING


async def _discard(attempts: Attempts, attempt_id: str) -> None:
    await attempts.end(attempt_id)
    attempts.forget(attempt_id)
