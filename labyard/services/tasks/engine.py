"""Attempts: start one (playground, init tasks, checks), follow it, answer, end it.

One `Attempts` per labyard instance owns the running checkers (one asyncio task per active
attempt) and the SSH pools they use. Everything an attempt has reached is in the database,
so `resume()` after a restart picks the checks up where they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from labyard.content.loader import Item
from labyard.errors import Conflict, NotFound
from labyard.manifest import Manifest
from labyard.services.catalog import Catalog
from labyard.services.playgrounds import Playgrounds
from labyard.services.tasks import answers, events
from labyard.services.tasks.audience import Audience, Event
from labyard.services.tasks.checker import Checker
from labyard.services.tasks.content import find_item, manifest_for
from labyard.services.tasks.pool import MachinePool
from labyard.services.tasks.progress import summarize
from labyard.services.tasks.records import (
    AttemptRecord,
    AttemptStore,
    TaskRecord,
    initial_tasks,
    new_attempt_id,
    now,
)
from labyard.services.tasks.setup import run_init
from labyard.services.tasks.spec import spec_of
from labyard.services.tasks.states import advance
from labyard.services.usage import Launch
from labyard.store import PlaygroundRow
from labyard.types import AttemptState, LaunchedBy, Playground, PlaygroundState, TaskState

log = logging.getLogger(__name__)
PLAYGROUND_GONE = "its playground ended (destroyed or expired)"
LAUNCHED_BY = {"challenge": LaunchedBy.CHALLENGE, "tutorial": LaunchedBy.TUTORIAL}
"""What the usage record says launched a content item's playground; lessons: `course`."""

Solved = Callable[[AttemptRecord], None]


class Attempts:
    def __init__(
        self,
        playgrounds: Playgrounds,
        catalog: Catalog,
        *,
        interval_s: float = 1.0,
        idle_pause_s: float | None = 60.0,
        on_solved: Solved | None = None,
    ) -> None:
        self.playgrounds = playgrounds
        self.catalog = catalog
        self.on_solved = on_solved
        """Called once an attempt is solved (earned premium counts solved challenges)."""
        self.interval_s = interval_s
        """Time between the starts of two check ticks."""
        self.store = AttemptStore(playgrounds.db)
        self.audience = Audience(idle_pause_s)
        self._checkers: dict[str, Checker] = {}
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._pools: dict[str, MachinePool] = {}

    # -- starting ------------------------------------------------------------------------

    def item(self, key: str) -> Item:
        """A challenge, tutorial or lesson of the content folder, by key."""
        return find_item(self.catalog.content_dir, key)

    def manifest_for(self, item: Item, own: Mapping[str, Manifest] | None = None) -> Manifest:
        return manifest_for(item, self.catalog, own)

    async def start(
        self,
        item: Item,
        owner: str,
        lifetime_s: int | None = None,
        manifest: Manifest | None = None,
        launch: Launch | None = None,
        playground: Playground | None = None,
    ) -> AttemptRecord:
        """Start the item's playground, run its init tasks, then loop its checks. Returns
        once the checks are running; on failure nothing is left behind. With a `launch`
        naming an account, its plan is checked (see Playgrounds.start). With `playground`
        (started or claimed from a warm pool for it already: a class's start), that one is
        used instead, and destroyed if its init tasks fail."""
        if playground is not None:
            manifest = self.playgrounds.manifest_of(playground.id)
        manifest = manifest or self.manifest_for(item)
        spec = spec_of(item, manifest)
        launch = launch or Launch()
        launch = replace(
            launch,
            # a class's start stays `class`: its seats paid for it (class_admission.py)
            by=launch.by
            if launch.class_id is not None
            else LAUNCHED_BY.get(item.kind, LaunchedBy.COURSE),
            content_key=item.key,
            own_manifest=False,
        )
        if playground is None:
            playground = await self.playgrounds.start(
                manifest, owner=owner, lifetime_s=lifetime_s, launch=launch
            )
        pool = MachinePool(self.playgrounds, playground.id)
        try:
            done = await run_init(spec, pool)
        except BaseException:
            pool.close()
            await asyncio.shield(self.playgrounds.destroy(playground.id))
            raise
        record = AttemptRecord(
            id=new_attempt_id(),
            owner=owner,
            content_key=item.key,
            playground_id=playground.id,
            state=AttemptState.ACTIVE,
            message="",
            spec=spec,
            inputs={},
            started_at=now(),
            finished_at=None,
            tasks={**initial_tasks(spec), **done},
        )
        record = record.with_tasks(advance(record))
        self.store.insert(record)
        self.audience.touch(record.id)
        self._launch(record, pool)
        return replace(record, notice=playground.notice)

    def _launch(self, record: AttemptRecord, pool: MachinePool | None = None) -> None:
        if record.id in self._runs or record.playground_id is None:
            return
        pool = pool or MachinePool(self.playgrounds, record.playground_id)
        self._pools[record.id] = pool
        checker = Checker(
            record,
            pool,
            self.store,
            self.audience,
            lambda: self._playground_state(record.playground_id),
            self.interval_s,
        )
        run = asyncio.create_task(checker.run(), name=f"checks-{record.id}")
        self._checkers[record.id], self._runs[record.id] = checker, run
        run.add_done_callback(lambda task: self._finished(record.id, task))

    def _finished(self, attempt_id: str, run: asyncio.Task[None]) -> None:
        if self._runs.get(attempt_id) is run:
            checker = self._checkers.pop(attempt_id)
            del self._runs[attempt_id]
            self._pools.pop(attempt_id).close()
            if checker.record.finished:
                self.audience.forget(attempt_id)
            if checker.record.state == AttemptState.SOLVED:
                self._solved(checker.record)
        if not run.cancelled() and (error := run.exception()) is not None:
            log.error("checks of attempt %s stopped", attempt_id, exc_info=error)

    def _solved(self, record: AttemptRecord) -> None:
        if self.on_solved is None:
            return
        try:
            self.on_solved(record)
        except Exception:  # a grant that failed is made at the next solve (it catches up)
            log.exception("after attempt %s was solved", record.id)

    def _playground_state(self, playground_id: str | None) -> str | None:
        if playground_id is None:
            return None
        with self.playgrounds.db.session() as session:
            row = session.get(PlaygroundRow, playground_id)
            return None if row is None else row.state

    # -- reading -------------------------------------------------------------------------

    def get(self, attempt_id: str, owner: str | None = None) -> AttemptRecord:
        """The attempt (NotFound for anyone but `owner`). Looking at an active attempt counts
        as the learner being there: its checks resume if they were paused."""
        record = self._settled(self.store.load(attempt_id, owner))
        if not record.finished:
            self.audience.touch(attempt_id)
            self._ensure_running(record)
        return record

    def of_owner(self, owner: str) -> list[AttemptRecord]:
        return [self._settled(r) for r in self.store.list(owner=owner)]

    def active_for(self, owner: str, content_key: str) -> AttemptRecord | None:
        for record in self.of_owner(owner):
            if record.content_key == content_key and not record.finished:
                return record
        return None

    def progress(self, owner: str) -> list[dict[str, Any]]:
        return summarize(self.of_owner(owner))

    def checker(self, attempt_id: str) -> Checker | None:
        """The running checker of an attempt (its stats show ticks, execs, pauses)."""
        return self._checkers.get(attempt_id)

    def _settled(self, record: AttemptRecord) -> AttemptRecord:
        """An active attempt whose playground is gone has ended; say so."""
        if record.finished or self._playground_state(record.playground_id) is not None:
            return record
        return self._finish(record, AttemptState.ENDED, PLAYGROUND_GONE)

    def _finish(self, record: AttemptRecord, state: AttemptState, message: str) -> AttemptRecord:
        finished_at = self.store.finish(record.id, state, message)
        record = replace(record, state=state, message=message, finished_at=finished_at)
        self.audience.publish(record.id, events.attempt_event(record))
        return record

    def _ensure_running(self, record: AttemptRecord) -> None:
        state = self._playground_state(record.playground_id)
        if state == PlaygroundState.RUNNING:
            self._launch(record)

    # -- following -----------------------------------------------------------------------

    def subscribe(self, attempt_id: str, owner: str | None) -> tuple[Event, asyncio.Queue[Event]]:
        """The attempt's full state as a first event, and a queue of every later one."""
        self.store.load(attempt_id, owner)  # NotFound before anything else
        queue = self.audience.subscribe(attempt_id)
        try:
            record = self.get(attempt_id, owner)  # after subscribing: nothing falls between
        except BaseException:
            self.audience.unsubscribe(attempt_id, queue)
            raise
        return events.state_event(record), queue

    def state_event(self, attempt_id: str, owner: str | None) -> Event:
        return events.state_event(self.get(attempt_id, owner))

    def unsubscribe(self, attempt_id: str, queue: asyncio.Queue[Event]) -> None:
        self.audience.unsubscribe(attempt_id, queue)

    # -- acting --------------------------------------------------------------------------

    async def answer(
        self, attempt_id: str, task: str, value: str, owner: str | None = None
    ) -> AttemptRecord:
        """Validate a user-input task's answer, write it to its destination, check it."""
        record = self.get(attempt_id, owner)
        block = answers.input_block(record.spec, task)
        if record.finished:
            raise Conflict(f"attempt {attempt_id} is {record.state}; start a new one")
        if record.tasks[task].state == TaskState.COMPLETED:
            raise Conflict(f"task {task!r} is completed already")
        answers.validate(block, task, value)
        pool, checker = self._pools.get(attempt_id), self._checkers.get(attempt_id)
        if pool is None or checker is None:  # get() started them if the playground runs
            raise Conflict(f"the playground of attempt {attempt_id} is not running")
        if block.destination:
            await answers.write_answer(pool, record.spec.machine_of(task), block.destination, value)
        self.store.set_input(attempt_id, task, value)
        checker.set_input(task, value)
        return self.store.load(attempt_id)

    async def end(self, attempt_id: str, owner: str | None = None) -> AttemptRecord:
        """Stop its checks, mark it ended (unless solved or failed), destroy its playground."""
        record = self.store.load(attempt_id, owner)
        await self._stop(attempt_id)
        if not record.finished:
            record = self._finish(record, AttemptState.ENDED, "ended by its owner")
        self.audience.forget(attempt_id)
        if record.playground_id is not None:
            with contextlib.suppress(NotFound):
                await self.playgrounds.destroy(record.playground_id)
        return self.store.load(attempt_id)

    async def reset(self, attempt_id: str, tasks: list[str]) -> AttemptRecord:
        """Put looped `tasks` back to created, reopening a solved or failed attempt, and
        check them at once (an author's reset: services/tasks/devtools.py). The machines
        are not touched, and start-up init tasks are not run again."""
        record = self._settled(self.store.load(attempt_id))
        if record.state == AttemptState.ENDED:
            raise Conflict(f"attempt {attempt_id} has ended: {record.message}")
        checker = self._checkers.get(attempt_id)
        if checker is not None and not checker.record.finished:
            checker.reset(tasks)
            return self.store.load(attempt_id)
        run = self._runs.get(attempt_id)
        if run is not None:  # a checker that solved it may still be resting before it ends
            await self._stop(attempt_id)
            if self._runs.get(attempt_id) is run:
                self._finished(attempt_id, run)
        inputs = {k: v for k, v in record.inputs.items() if k not in tasks}
        self.store.save_tasks(attempt_id, {n: TaskRecord(TaskState.CREATED) for n in tasks})
        self.store.reopen(attempt_id, inputs)
        self.audience.touch(attempt_id)
        self._ensure_running(self.store.load(attempt_id))
        return self.store.load(attempt_id)

    def forget(self, attempt_id: str) -> None:
        """Delete an attempt that has been ended (the CLI's `content test` keeps none)."""
        self.store.delete(attempt_id)
        self.audience.forget(attempt_id)

    # -- server life ---------------------------------------------------------------------

    async def resume(self) -> list[str]:
        """After a (re)start: run the checks of every active attempt whose playground runs;
        end those whose playground is gone. Returns the ids resumed."""
        resumed = []
        for record in self.store.list(state=AttemptState.ACTIVE):
            record = self._settled(record)
            if not record.finished and self._playground_state(record.playground_id) == (
                PlaygroundState.RUNNING
            ):
                self.audience.touch(record.id)  # pages reconnect within the pause grace
                self._launch(record)
                resumed.append(record.id)
        return resumed

    async def _stop(self, attempt_id: str) -> None:
        run = self._runs.get(attempt_id)
        if run is not None:
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run

    async def shutdown(self) -> None:
        """Stop every checker; the attempts stay active for the next `resume()`."""
        for attempt_id in list(self._runs):
            await self._stop(attempt_id)
