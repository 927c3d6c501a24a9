"""The reconciler: makes the host match the database.

The database says what should exist; the driver says what does. One round:
1. playgrounds past their lifetime are destroyed;
2. playgrounds left `starting` by a process that died are rolled back;
3. `running` playgrounds whose machines are gone (host reboot, crash) become `stopped`, and
   those with a machine that `failed` become `failed` (the machine is left for its user to
   see why, then restart or destroy);
4. anything on the host that no playground owns is removed;
5. warm playgrounds (pools.py) whose pool is gone (released, or a release that died half
   way) or that no longer run (a host reboot stopped them) are destroyed: nobody can claim
   them. Warm ones that run, of a pool that exists, are left alone like any playground.
A playground that another process holds the lock of is left alone this round. One
playground that fails, whatever it raises, is logged and put in the report; the round goes on
with the others. A round fails as a whole only when the database or the driver's `list()`
does; the server's loop (`reconcile_forever`) logs that and tries again on the next tick,
and its `Heartbeat` tells /healthz when rounds stop succeeding.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from labyard.errors import LabyardError
from labyard.runtime import MachineState
from labyard.services.locks import try_lock
from labyard.services.playgrounds import Playgrounds, aware, now
from labyard.store import PlaygroundRow
from labyard.store.models import PoolRow
from labyard.types import PlaygroundState

log = logging.getLogger(__name__)

Action = Callable[[Playgrounds, str], Awaitable[None]]

MISSED_ROUNDS = 3
"""The reconciler counts as unhealthy once no round has succeeded for this many intervals."""


@dataclass
class Report:
    expired: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    marked_stopped: list[str] = field(default_factory=list)
    marked_failed: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    pool_leftovers: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(
            self.expired
            or self.abandoned
            or self.marked_stopped
            or self.marked_failed
            or self.orphans
            or self.pool_leftovers
        )


async def reconcile(playgrounds: Playgrounds) -> Report:
    report = Report()
    with playgrounds.db.session() as session:
        rows = [
            (r.id, r.state, aware(r.expires_at)) for r in session.scalars(select(PlaygroundRow))
        ]
        leftovers = set(session.scalars(_pool_leftovers()))
    known = {playground_id for playground_id, _, _ in rows}
    for playground_id, state, expires_at in rows:
        with _contained(report, playground_id):
            if playground_id in leftovers:
                await _locked(playgrounds, playground_id, report.pool_leftovers, _destroy)
            else:
                await _one(playgrounds, report, playground_id, state, expires_at)
    for playground_id in await playgrounds.driver.list():
        if playground_id not in known:
            with _contained(report, playground_id):
                await _locked(playgrounds, playground_id, report.orphans, _destroy_orphan)
    return report


def _pool_leftovers() -> Any:
    """Ids of unclaimed warm playgrounds whose pool is gone, or that are stopped or failed
    (a `starting` one is rule 2's)."""
    pools = select(PoolRow.key)
    return select(PlaygroundRow.id).where(
        PlaygroundRow.pool_key.is_not(None),
        PlaygroundRow.claimed_at.is_(None),
        PlaygroundRow.state != PlaygroundState.STARTING,
        (PlaygroundRow.pool_key.not_in(pools))
        | PlaygroundRow.state.in_((PlaygroundState.STOPPED, PlaygroundState.FAILED)),
    )


async def _one(
    playgrounds: Playgrounds, report: Report, playground_id: str, state: str, expires_at: datetime
) -> None:
    if expires_at <= now():
        await _locked(playgrounds, playground_id, report.expired, _destroy)
    elif state == PlaygroundState.STARTING:
        # Only a dead starter leaves the lock free while the row still says starting.
        await _locked(playgrounds, playground_id, report.abandoned, _destroy)
    elif state == PlaygroundState.RUNNING:
        playgrounds.adopt(playground_id)
        states = {s.state for s in (await playgrounds.driver.status(playground_id)).values()}
        if MachineState.FAILED in states:
            await _locked(playgrounds, playground_id, report.marked_failed, _mark_failed)
        elif not states or not states <= {MachineState.RUNNING, MachineState.PENDING}:
            await _locked(playgrounds, playground_id, report.marked_stopped, _mark_stopped)


async def _destroy(playgrounds: Playgrounds, playground_id: str) -> None:
    await playgrounds.driver.destroy(playground_id)
    playgrounds.forget(playground_id)


async def _destroy_orphan(playgrounds: Playgrounds, playground_id: str) -> None:
    await playgrounds.driver.destroy(playground_id)


async def _mark_failed(playgrounds: Playgrounds, playground_id: str) -> None:
    playgrounds.set_state(playground_id, PlaygroundState.FAILED)


async def _mark_stopped(playgrounds: Playgrounds, playground_id: str) -> None:
    await playgrounds.driver.stop(playground_id, now=True)
    playgrounds.set_state(playground_id, PlaygroundState.STOPPED)


async def _locked(
    playgrounds: Playgrounds, playground_id: str, bucket: list[str], action: Action
) -> None:
    fd = try_lock(playgrounds.settings.locks_dir, playground_id)
    if fd is None:
        return
    try:
        await action(playgrounds, playground_id)
        bucket.append(playground_id)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _contained(report: Report, playground_id: str) -> Iterator[None]:
    """One playground's failure goes to the log and the report, not up: the round goes on."""
    extra = {"playground": playground_id}
    try:
        yield
    except LabyardError as exc:  # foreseen (runc said no, a mount is busy): the detail says why
        report.errors.append(f"{playground_id}: {exc.message} {exc.detail}".strip())
        log.warning(
            "reconcile %s failed: %s", playground_id, exc.detail or exc.message, extra=extra
        )
    except Exception as exc:  # not foreseen: a bug or the host misbehaving; keep the traceback
        report.errors.append(f"{playground_id}: {_describe(exc)}")
        log.exception("reconcile %s failed: %s", playground_id, _describe(exc), extra=extra)


def _describe(exc: BaseException, limit: int = 300) -> str:
    """`Type: message`, cut short: a database error's message can run to many lines."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Heartbeat:
    """How the background reconciler keeps up; /healthz reports it. Times are monotonic."""

    interval_s: float
    """Pause between the end of one round and the start of the next."""
    started: float = field(default_factory=time.monotonic)
    last_success: float | None = None
    """When the last round that ran to its end finished."""
    round_started: float | None = None
    """When the round under way began (None between rounds)."""
    failures: int = 0
    """Rounds failed since the last one that succeeded."""
    last_error: str | None = None

    def age_s(self) -> float | None:
        """Seconds since the last successful round ended (None: none has yet)."""
        return None if self.last_success is None else time.monotonic() - self.last_success

    def problem(self) -> str | None:
        """Why the reconciler is unhealthy: no success for `MISSED_ROUNDS` intervals (counted
        from start-up until the first success). None while it keeps up."""
        since_s = self.started if self.last_success is None else self.last_success
        late = time.monotonic() - since_s
        if late <= MISSED_ROUNDS * self.interval_s:
            return None
        since = " since start-up" if self.last_success is None else ""
        if self.failures:
            why = f"the last {self.failures} failed, most recently with {self.last_error}"
        elif self.round_started is not None:
            why = f"a round has been running for {time.monotonic() - self.round_started:.0f} s"
        else:
            why = "the reconciler is not running"
        return f"no reconcile round has succeeded{since} for {late:.0f} s: {why}"

    def to_json(self) -> dict[str, Any]:
        age = self.age_s()
        return {
            "interval_s": self.interval_s,
            "last_success_age_s": None if age is None else round(age, 3),
            "failed_rounds": self.failures,
            "last_error": self.last_error,
        }


async def reconcile_forever(playgrounds: Playgrounds, heartbeat: Heartbeat) -> None:
    """Reconcile every `heartbeat.interval_s` seconds until cancelled (the server runs this).

    A round that raises, whatever it raises, is logged with its traceback and tried again
    on the next tick: only cancelling ends the loop.
    """
    heartbeat.started = time.monotonic()
    while True:
        await _round(playgrounds, heartbeat)
        await asyncio.sleep(heartbeat.interval_s)


async def _round(playgrounds: Playgrounds, heartbeat: Heartbeat) -> None:
    heartbeat.round_started = time.monotonic()
    try:
        report = await reconcile(playgrounds)
    except Exception as exc:
        heartbeat.failures += 1
        heartbeat.last_error = _describe(exc)
        log.exception(
            "reconcile round failed (%d in a row), next try in %g s: %s",
            heartbeat.failures,
            heartbeat.interval_s,
            heartbeat.last_error,
            extra={"failed_rounds": heartbeat.failures},
        )
        return
    finally:
        heartbeat.round_started = None
    heartbeat.last_success = time.monotonic()
    heartbeat.failures, heartbeat.last_error = 0, None
    if report.changed or report.errors:
        log.info("reconciled: %s", report)
