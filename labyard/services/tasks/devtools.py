"""Task dev tools: what an author sees and does while working through their own content.

For the attempt in a playground (the newest one there), an author or admin who owns it
gets every task live: state, why a blocked one waits, the last run of each check (exit
code, stdout, stderr, duration), how often it ran and the `env` it ran with; and can
re-run a task's checks now, reset a task or the whole attempt, and run the solution script
one step at a time. Anyone else's playground is NotFound, as everywhere; a learner's own
is Forbidden: learners never see check output, only hints.

Solution steps: `solution.sh` (in the first machine) and each `solution.<machine>.sh`, cut
at blank lines. A paragraph of only comments and `set` lines (e.g. `set -euo pipefail`) is
not a step of its own: it is run before each later step of that script, as the whole
script would have. Step results, like check output (runs.py), live in memory only.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labyard.errors import Conflict, Forbidden, LabyardError, NotFound
from labyard.services.accounts import User
from labyard.services.tasks.checker import CheckerStats
from labyard.services.tasks.engine import Attempts
from labyard.services.tasks.pool import MachinePool
from labyard.services.tasks.records import AttemptRecord, now
from labyard.services.tasks.runs import RunLog, TaskRuns
from labyard.services.tasks.script import batch_script, batch_timeout, parse_results
from labyard.services.tasks.states import FINAL, due_checks
from labyard.types import Role, TaskState

AUTHOR_ROLES = frozenset({Role.AUTHOR, Role.ADMIN})
STEP_TIMEOUT_S = 300.0
_PRELUDE_LINE = re.compile(r"^\s*(#.*|set\s.*)?$")


@dataclass(frozen=True)
class Step:
    machine: str
    file: str
    script: str
    """The step's own lines, as shown."""
    prelude: str = ""
    """Comment and `set` lines of the script before it, run first."""


def solution_steps(folder: Path, default_machine: str) -> list[Step]:
    """The solution scripts of an item folder, cut into steps (see the module docstring)."""
    scripts = [(default_machine, folder / "solution.sh")]
    for path in sorted(folder.glob("solution.*.sh")):
        scripts.append((path.name.removeprefix("solution.").removesuffix(".sh"), path))
    steps: list[Step] = []
    for machine, path in scripts:
        if path.is_file():
            steps += _cut(machine, path.name, path.read_text(encoding="utf-8", errors="replace"))
    return steps


def _cut(machine: str, file: str, text: str) -> list[Step]:
    lines = text.splitlines()
    if lines and lines[0].startswith("#!"):
        lines = lines[1:]
    paragraphs = [p.strip("\n") for p in "\n".join(lines).split("\n\n") if p.strip()]
    steps: list[Step] = []
    prelude: list[str] = []
    for paragraph in paragraphs:
        if all(_PRELUDE_LINE.match(line) for line in paragraph.splitlines()):
            prelude.append(paragraph)
        else:
            steps.append(Step(machine, file, paragraph, "\n".join(prelude)))
    return steps


class TaskDevTools:
    def __init__(self, attempts: Attempts) -> None:
        self.attempts = attempts
        self._steps: dict[str, dict[int, dict[str, Any]]] = {}
        """Attempt id -> step index -> its last run."""
        self._logs: dict[str, RunLog] = {}
        """Attempt id -> its checker's output, as last seen (outlives the checker)."""

    def attempt_in(self, playground_id: str, user: User) -> AttemptRecord:
        """The newest of `user`'s attempts in the playground, if they may debug it."""
        found = [
            r
            for r in self.attempts.store.list(owner=user.owner)
            if r.playground_id == playground_id
        ]
        if not found:
            raise NotFound(f"no challenge or tutorial attempt in playground {playground_id!r}")
        if user.role not in AUTHOR_ROLES:
            raise Forbidden(
                "task details are for content authors: sign in with the author or admin role",
                reason="authors_only",
            )
        return self.attempts.get(found[-1].id, user.owner)  # counts as being there

    def view(self, playground_id: str, user: User) -> dict[str, Any]:
        """Everything the panel and `labyard content debug` show."""
        record = self.attempt_in(playground_id, user)
        checker = self.attempts.checker(record.id)
        if checker is not None and not record.finished:
            record = checker.record  # the newest: written to the database before it changes
        if checker is not None:
            self._logs[record.id] = checker.runs
        # A solved or failed attempt's checker is gone; what it printed last is still shown.
        runs = self._logs.get(record.id) or RunLog()
        stats = None if checker is None else checker.stats
        return describe(record, runs, stats, self._solution(record))

    def newest_in(self, playground_id: str) -> AttemptRecord:
        """The newest attempt in a playground, whoever's (the local CLI: the host's root)."""
        found = [r for r in self.attempts.store.list() if r.playground_id == playground_id]
        if not found:
            raise NotFound(f"no challenge or tutorial attempt in playground {playground_id!r}")
        return found[-1]

    async def observe(self, playground_id: str, log: RunLog, pool: MachinePool) -> dict[str, Any]:
        """The view without the server's checker, for `labyard content debug` on this host:
        states come from the database (the server's checker writes them), and the running
        tasks' checks are run once more here into `log`, their results applied nowhere."""
        record = self.newest_in(playground_id)
        if not record.finished:
            for machine, checks in due_checks(record).items():
                with contextlib.suppress(LabyardError):
                    result = await pool.run(machine, batch_script(checks), batch_timeout(checks))
                    parsed = parse_results(result.stdout, len(checks))
                    log.record([(checks[i], found) for i, found in parsed.items()])
        return describe(record, log, None, self._solution(record))

    def _solution(self, record: AttemptRecord) -> list[dict[str, Any]]:
        done = self._steps.get(record.id, {})
        return [
            {
                "index": i,
                "machine": step.machine,
                "file": step.file,
                "script": step.script,
                "last": done.get(i),
            }
            for i, step in enumerate(self._solution_steps(record))
        ]

    def _solution_steps(self, record: AttemptRecord) -> list[Step]:
        try:
            item = self.attempts.item(record.content_key)
        except NotFound:  # the item left the content folder since
            return []
        return solution_steps(item.dir, record.spec.default_machine)

    async def rerun(self, playground_id: str, task: str, user: User) -> dict[str, Any]:
        """Run one task's checks now (its results count if it is running)."""
        record = self.attempt_in(playground_id, user)
        self._looped(record, task)
        checker = self.attempts.checker(record.id)
        if checker is None or checker.record.finished:
            raise Conflict(
                f"the checks of attempt {record.id} are not running ({record.state}); "
                "reset the attempt to check it again"
            )
        await checker.run_now(task)
        return self.view(playground_id, user)

    async def reset(self, playground_id: str, task: str | None, user: User) -> dict[str, Any]:
        """One task (and the tasks that need it), or every task of the attempt, back to
        the start; a solved or failed attempt is active again."""
        record = self.attempt_in(playground_id, user)
        looped = record.spec.looped_tasks
        if task is None:
            names = list(looped)
            self._steps.pop(record.id, None)
        else:
            self._looped(record, task)
            names = _with_dependents(record, task)
        await self.attempts.reset(record.id, names)
        return self.view(playground_id, user)

    def _looped(self, record: AttemptRecord, task: str) -> None:
        if task not in record.spec.tasks:
            raise NotFound(f"attempt {record.id} has no task {task!r}")
        if task not in record.spec.looped_tasks:
            raise Conflict(f"task {task!r} is an init task: it ran once, when the attempt started")

    async def run_step(self, playground_id: str, index: int, user: User) -> dict[str, Any]:
        """Run solution step `index` in its machine (as root, like the solution script)."""
        record = self.attempt_in(playground_id, user)
        steps = self._solution_steps(record)
        if not 0 <= index < len(steps):
            raise NotFound(f"{record.content_key} has no solution step {index} ({len(steps)})")
        step = steps[index]
        playgrounds = self.attempts.playgrounds
        started = time.monotonic()
        async with await playgrounds.connect(playground_id, step.machine, user.owner) as conn:
            script = f"{step.prelude}\n{step.script}\n" if step.prelude else f"{step.script}\n"
            result = await conn.run("bash -s", input=script, timeout=STEP_TIMEOUT_S)
        last = {
            "exit_code": result.exit_code,
            "stdout": result.stdout,
            "stderr": result.stderr,
            "duration_s": round(time.monotonic() - started, 3),
            "at": now().isoformat(),
        }
        self._steps.setdefault(record.id, {})[index] = last
        checker = self.attempts.checker(record.id)
        if checker is not None:
            checker.wake()  # its tasks may be done now
        return {"index": index, **last}


def _with_dependents(record: AttemptRecord, task: str) -> list[str]:
    """`task` and every looped task that needs it, directly or not."""
    names = [task]
    looped = record.spec.looped_tasks
    changed = True
    while changed:
        changed = False
        for name, spec in looped.items():
            if name not in names and any(n in names for n in spec.needs):
                names.append(name)
                changed = True
    return names


def describe(
    record: AttemptRecord,
    runs: RunLog,
    stats: CheckerStats | None,
    solution: list[dict[str, Any]],
) -> dict[str, Any]:
    """The JSON of GET /api/playgrounds/{id}/devtools."""
    return {
        "attempt": {
            "id": record.id,
            "content": record.content_key,
            "title": record.spec.title,
            "state": record.state,
            "message": record.message,
            "playground_id": record.playground_id,
        },
        "checker": None if stats is None else {"ticks": stats.ticks, "paused": stats.paused},
        "tasks": [_task(record, name, runs.of(name)) for name in record.tasks],
        "solution": solution,
        "at": now().isoformat(),
    }


def _task(record: AttemptRecord, name: str, runs: TaskRuns) -> dict[str, Any]:
    task, spec = record.tasks[name], record.spec.tasks[name]
    waiting = [n for n in spec.needs if record.tasks[n].state != TaskState.COMPLETED]
    scripts = (("run", spec.run), ("hint", spec.hintcheck), ("fail", spec.failcheck))
    return {
        "name": name,
        "state": task.state,
        "final": task.state in FINAL,
        "init": spec.init,
        "looped": name in record.spec.looped_tasks,
        "machine": record.spec.machine_of(name),
        "user": spec.user,
        "needs": list(spec.needs),
        "waiting_for": waiting if task.state == TaskState.BLOCKED else [],
        "hint": task.hint,
        "runs": runs.runs,
        "env": runs.env,
        "checks": {
            kind: runs.last[kind].to_json() if kind in runs.last else None
            for kind, script in scripts
            if script
        },
    }
