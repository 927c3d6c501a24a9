"""The check loop of one attempt: about once a second, every due check, one exec per machine.

Each tick builds one batch script per machine holding the checks of every running task
there (see script.py), runs the machines' batches side by side over their open SSH
connections, and applies the results. Changes are written to the database first, then
published, so a subscriber that (re)loads the state never sees less than it was told.

A tick starts `interval_s` after the previous one started, or right after it ended when
the checks took longer; `wake()` (an answer arrived) starts the next one at once. The loop
pauses while nobody watches (see audience.py) and stops when the attempt is finished (its
playground gone ends it). While the playground is stopped it tries every few seconds, so
checks resume by themselves once it runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from labyard.errors import CommandTimeout, LabyardError
from labyard.services.tasks import events
from labyard.services.tasks.audience import Audience
from labyard.services.tasks.pool import MachinePool
from labyard.services.tasks.records import AttemptRecord, AttemptStore, TaskRecord
from labyard.services.tasks.runs import RunLog
from labyard.services.tasks.script import (
    RUNNER_MISSING,
    Check,
    CheckResult,
    batch_script,
    batch_timeout,
    parse_results,
)
from labyard.services.tasks.states import advance, apply, checks_of, due_checks, solved
from labyard.types import AttemptState, PlaygroundState, TaskState

log = logging.getLogger(__name__)

STOPPED_RETRY_S = 5.0
"""Time between tries while the playground is stopped (its machines cannot answer)."""

PlaygroundStateOf = Callable[[], str | None]
"""The state of the attempt's playground now (None: it is gone)."""


@dataclass
class CheckerStats:
    ticks: int = 0
    """Ticks that had checks to run."""
    execs: int = 0
    """SSH execs those ticks made: one per machine with due checks, whatever their number."""
    paused: bool = False


class Checker:
    def __init__(
        self,
        record: AttemptRecord,
        pool: MachinePool,
        store: AttemptStore,
        audience: Audience,
        playground_state: PlaygroundStateOf,
        interval_s: float = 1.0,
    ) -> None:
        self.record = record
        self.pool = pool
        self.store = store
        self.audience = audience
        self.playground_state = playground_state
        self.interval_s = interval_s
        self.stats = CheckerStats()
        self._wake = asyncio.Event()
        self._ticked = asyncio.Condition()
        self._failures = 0
        """Ticks in a row on which a machine did not answer."""
        self._next_tick_after = interval_s
        self.runs = RunLog()
        """Each task's last check output, for authors (runs.py); in memory only."""

    def wake(self) -> None:
        self._wake.set()

    async def wait_ticks(self, count: int, timeout: float) -> None:
        """Wait until `count` ticks have run checks, or the attempt is finished; raises
        TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout), self._ticked:
            await self._ticked.wait_for(lambda: self.stats.ticks >= count or self.record.finished)

    def set_input(self, task: str, value: str) -> None:
        self.record = replace(self.record, inputs={**self.record.inputs, task: value})
        self.wake()

    async def run(self) -> None:
        try:
            self.commit(advance(self.record))
            self._finish_if_solved()
            while not self.record.finished:
                await self._while_absent()
                started = asyncio.get_running_loop().time()
                self._next_tick_after = self.interval_s
                await self.tick()
                async with self._ticked:
                    self._ticked.notify_all()
                await self._rest(started + self._next_tick_after)
        finally:
            self.pool.close()

    async def _while_absent(self) -> None:
        if self.audience.present(self.record.id):
            return
        self.stats.paused = True
        self.pool.close()  # a learner who left may be gone for days
        await self.audience.wait_present(self.record.id)
        self.stats.paused = False

    async def _rest(self, until: float) -> None:
        remaining = until - asyncio.get_running_loop().time()
        if remaining > 0 and not self._wake.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)
        self._wake.clear()

    async def tick(self) -> None:
        """One round of checks."""
        batches = due_checks(self.record)
        if not batches:
            return
        self.stats.ticks += 1
        done = await asyncio.gather(
            *(self._batch(m, checks) for m, checks in batches.items()), return_exceptions=True
        )
        results: list[tuple[Check, CheckResult]] = []
        failures: list[LabyardError] = []
        for outcome in done:
            if isinstance(outcome, LabyardError):
                failures.append(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                results += outcome
        self.runs.record(results)
        self._apply(results)
        if failures and not self.record.finished:
            self._unreachable(failures[0])
        elif not failures:
            self._failures = 0

    def reset(self, tasks: list[str]) -> None:
        """Put `tasks` back to created (then blocked or running), their answers and last
        outputs dropped, and check them at once."""
        inputs = {k: v for k, v in self.record.inputs.items() if k not in tasks}
        self.record = replace(self.record, inputs=inputs)
        self.store.reopen(self.record.id, inputs)
        self.commit({name: TaskRecord(TaskState.CREATED) for name in tasks})
        self.commit(advance(self.record))
        self.runs.forget(tasks)
        self.wake()

    async def run_now(self, task: str) -> None:
        """Run one task's checks at once, whatever its state (an author's "re-run"); the
        results count only while the task is running, as on a tick."""
        checks = checks_of(self.record, task)
        if not checks:
            return
        results = await self._batch(self.record.spec.machine_of(task), checks)
        self.runs.record(results)
        if self.record.tasks[task].state == TaskState.RUNNING and not self.record.finished:
            self._apply(results)

    def _apply(self, results: list[tuple[Check, CheckResult]]) -> None:
        outcome = apply(self.record, results)
        self.commit(outcome.changes)
        self.commit(advance(self.record))
        if outcome.failure is not None:
            self.finish(AttemptState.FAILED, outcome.failure)
        else:
            self._finish_if_solved()

    async def _batch(self, machine: str, checks: list[Check]) -> list[tuple[Check, CheckResult]]:
        self.stats.execs += 1
        try:
            result = await self.pool.run(machine, batch_script(checks), batch_timeout(checks))
        except CommandTimeout:
            return []  # nothing learned this tick; the next one tries again
        if result.exit_code == RUNNER_MISSING:
            self.pool.drop(machine)  # reconnecting installs it again
            return []
        parsed = parse_results(result.stdout, len(checks))
        return [(checks[i], found) for i, found in parsed.items()]

    def _unreachable(self, error: LabyardError) -> None:
        """A machine did not answer: fine while its playground runs (a reboot, a blip), the
        end if the playground is gone, a slower pace while it is stopped or starting."""
        self._failures += 1
        state = self.playground_state()
        if state is None:
            self.finish(AttemptState.ENDED, "its playground ended (destroyed or expired)")
            return
        if self._failures == 1:  # once per outage, not once a second
            log.info("checks of %s: %s", self.record.id, error.detail or error.message)
        if state != PlaygroundState.RUNNING:
            self._next_tick_after = STOPPED_RETRY_S

    def commit(self, changes: dict[str, TaskRecord]) -> None:
        if not changes:
            return
        self.record = self.record.with_tasks(changes)
        self.store.save_tasks(self.record.id, changes)
        for name in changes:
            self.audience.publish(self.record.id, events.task_event(self.record, name))

    def _finish_if_solved(self) -> None:
        if not self.record.finished and solved(self.record):
            self.finish(AttemptState.SOLVED, "")

    def finish(self, state: AttemptState, message: str) -> None:
        finished_at = self.store.finish(self.record.id, state, message)
        self.record = replace(self.record, state=state, message=message, finished_at=finished_at)
        self.audience.publish(self.record.id, events.attempt_event(self.record))
