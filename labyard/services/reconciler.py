"""The reconciler: makes the host match the database.

The database says what should exist; the driver says what does. One round:
1. playgrounds past their lifetime are destroyed;
2. playgrounds left `starting` by a process that died are rolled back;
3. `running` playgrounds whose machines are gone (host reboot, crash) become `stopped`;
4. anything on the host that no playground owns is removed.
A playground that another process holds the lock of is left alone this round.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from labyard.errors import LabyardError
from labyard.runtime import MachineState
from labyard.services.locks import try_lock
from labyard.services.playgrounds import Playgrounds, aware, now
from labyard.store import PlaygroundRow, PlaygroundState

log = logging.getLogger(__name__)

Action = Callable[[Playgrounds, str], Awaitable[None]]


@dataclass
class Report:
    expired: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    marked_stopped: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.expired or self.abandoned or self.marked_stopped or self.orphans)


async def reconcile(playgrounds: Playgrounds) -> Report:
    report = Report()
    with playgrounds.db.session() as session:
        rows = [
            (r.id, r.state, aware(r.expires_at)) for r in session.scalars(select(PlaygroundRow))
        ]
    known = {playground_id for playground_id, _, _ in rows}
    for playground_id, state, expires_at in rows:
        await _one(playgrounds, report, playground_id, state, expires_at)
    for playground_id in await playgrounds.driver.list():
        if playground_id not in known:
            await _locked(playgrounds, report, playground_id, report.orphans, _destroy_orphan)
    return report


async def _one(
    playgrounds: Playgrounds, report: Report, playground_id: str, state: str, expires_at: datetime
) -> None:
    if expires_at <= now():
        await _locked(playgrounds, report, playground_id, report.expired, _destroy)
    elif state == PlaygroundState.STARTING:
        # Only a dead starter leaves the lock free while the row still says starting.
        await _locked(playgrounds, report, playground_id, report.abandoned, _destroy)
    elif state == PlaygroundState.RUNNING:
        machines = await playgrounds.driver.status(playground_id)
        if not machines or any(s != MachineState.RUNNING for s in machines.values()):
            await _locked(playgrounds, report, playground_id, report.marked_stopped, _mark_stopped)


async def _destroy(playgrounds: Playgrounds, playground_id: str) -> None:
    await playgrounds.driver.destroy(playground_id)
    playgrounds.forget(playground_id)


async def _destroy_orphan(playgrounds: Playgrounds, playground_id: str) -> None:
    await playgrounds.driver.destroy(playground_id)


async def _mark_stopped(playgrounds: Playgrounds, playground_id: str) -> None:
    await playgrounds.driver.stop(playground_id, now=True)
    playgrounds.set_state(playground_id, PlaygroundState.STOPPED)


async def _locked(
    playgrounds: Playgrounds, report: Report, playground_id: str, bucket: list[str], action: Action
) -> None:
    fd = try_lock(playgrounds.settings.locks_dir, playground_id)
    if fd is None:
        return
    try:
        await action(playgrounds, playground_id)
        bucket.append(playground_id)
    except LabyardError as exc:
        report.errors.append(f"{playground_id}: {exc.message} {exc.detail}".strip())
        log.warning("reconcile %s failed: %s", playground_id, exc.detail or exc.message)
    finally:
        os.close(fd)


async def reconcile_forever(playgrounds: Playgrounds, interval_s: float = 15.0) -> None:
    """Reconcile every `interval_s` seconds until cancelled (the server runs this)."""
    while True:
        report = await reconcile(playgrounds)
        if report.changed or report.errors:
            log.info("reconciled: %s", report)
        await asyncio.sleep(interval_s)
