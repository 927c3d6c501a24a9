"""When a class's warm pool fills and empties: from WARM_LEAD before the class starts, its
first startable content key (a bare playground, a challenge or a tutorial; a course is
started lesson by lesson and left cold) is kept warm for WARM_SHARE of its seats plus a
reserve of RESERVE while seats remain (services/pools.py does the warming and topping up);
RELEASE_AFTER the start, or once the class ends (or is deleted), every pool of the class is
released and its unclaimed playgrounds are destroyed. A class pinned to a region has its
pool warmed in that region (the region is in the pool's key); when the instructor changes
the region, the next round releases the pool of the old one and warms one in the new.
`tend` is one round; the server runs `tend_forever` (api/classes.py's lifespan).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from labyard.services.class_admission import COURSES
from labyard.services.class_starts import class_of_pool, pool_key, region_in_force
from labyard.services.classes import now
from labyard.services.cluster.regions import Regions
from labyard.services.pools import Pools
from labyard.store import Database
from labyard.store.models import ClassRow

log = logging.getLogger(__name__)
WARM_LEAD = timedelta(minutes=10)
RELEASE_AFTER = timedelta(minutes=20)
WARM_SHARE = 0.75
RESERVE = 2
TEND_S = 30.0


@dataclass(frozen=True)
class Wanted:
    """The pool a class wants warm."""

    key: str
    count: int
    reserve: int
    region: str
    """Where its playgrounds run: the class's region ("": the default one)."""


def wanted(row: ClassRow, at: datetime, regions: Regions) -> Wanted | None:
    """The pool the class wants warm at `at` (in its region, while `regions` has it), or
    None."""
    if row.ended_at is not None or at >= row.ends_at:
        return None
    if not row.starts_at - WARM_LEAD <= at < row.starts_at + RELEASE_AFTER:
        return None
    first = next((key for key in row.content if not key.startswith(COURSES)), None)
    if first is None:
        return None
    count = min(row.seats, math.ceil(row.seats * WARM_SHARE))
    region = region_in_force(row.region, regions)
    return Wanted(pool_key(row.id, first, region), count, min(RESERVE, row.seats), region)


class ClassPools:
    def __init__(self, db: Database, pools: Pools) -> None:
        self.db = db
        self.pools = pools
        self._warming: dict[str, asyncio.Task[object]] = {}

    async def tend(self, at: datetime | None = None) -> dict[str, str]:
        """One round: pools of classes about to start (or just started) defined and warming,
        the others released. Returns what it did per pool key."""
        at = at or now()
        with self.db.session() as session:
            rows = session.scalars(
                select(ClassRow).where(
                    ClassRow.starts_at <= at + WARM_LEAD,
                    ClassRow.starts_at > at - RELEASE_AFTER,
                    ClassRow.ended_at.is_(None),
                )
            )
            regions = self.pools.playgrounds.regions
            want = {w.key: w for row in rows if (w := wanted(row, at, regions)) is not None}
        done: dict[str, str] = {}
        known = {state.key for state in self.pools.pools()}
        for key, pool in want.items():
            running = self._warming.get(key)
            if key not in known and (running is None or running.done()):
                warming = self.pools.warm(key, pool.count, pool.reserve, region=pool.region)
                task = asyncio.create_task(warming, name=f"warm-{key}")
                task.add_done_callback(_logged)
                self._warming[key] = task
                done[key] = "warming"
        # `class-<id>[@<region>]` of classes in window: a pool of a region the class is no
        # longer pinned to goes too.
        current = {key.split(":", 1)[0] for key in want}
        for key in known - set(want):
            if class_of_pool(key) is not None and key.split(":", 1)[0] not in current:
                await self._stop(key)
                done[key] = f"released ({await self.pools.release(key)} destroyed)"
        return done

    async def _stop(self, key: str) -> None:
        task = self._warming.pop(key, None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def tend_forever(self, interval_s: float = TEND_S) -> None:
        while True:
            try:
                await self.tend()
            except Exception:
                log.exception("tending class pools failed; next try in %g s", interval_s)
            await asyncio.sleep(interval_s)

    async def close(self) -> None:
        for key in list(self._warming):
            await self._stop(key)


def _logged(task: asyncio.Task[object]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("warming %s failed", task.get_name(), exc_info=error)
