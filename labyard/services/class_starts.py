"""A member's start of class content: through the warm pools (services/pools.py), so a
join claims a pre-started playground when the class's pool has one and otherwise queues
(at most 20 cold starts at a time, the rest wait with a visible position, never a bare
error). A challenge, tutorial or lesson then becomes an attempt in that playground, so its
tasks are checked and the board sees them.

The class's pool of a content key is `pool_key(class_id, key, region)`; the launch names the
class (`Launch.class_id`), so admission checks the class's seats, not the member's plan
(class_admission.py), and the usage record says `class`. A class pinned to a region runs
every start there (`Launch.region`, whatever the learner's country); its pool's key names
the region, so a claim never hands over a playground warmed in another (the class's region
changed meanwhile). `_playground` is the one place that decides between the pools and a
plain start (no pools: the playgrounds service).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from labyard.content.loader import Item
from labyard.manifest import Manifest
from labyard.services.accounts import User
from labyard.services.class_admission import live_playgrounds
from labyard.services.cluster.regions import Regions
from labyard.services.playgrounds import Playgrounds
from labyard.services.pools import Pools, scoped_key
from labyard.services.pools import Queued as PoolQueued
from labyard.services.tasks import AttemptRecord, Attempts
from labyard.services.usage import Launch
from labyard.store import AttemptRow, PlaygroundRow, UsageSessionRow
from labyard.store.models import ClassAttemptRow, ClassRow
from labyard.types import LaunchedBy, Playground

START_WAIT_S = 120.0
"""How long a start that got a boot slot at once is waited for (then 201); one waiting for
a slot answers at once (202 with its position)."""
JobKey = tuple[str, int]


CLASS_SCOPE = "class-"
"""Every class pool's key starts with it: `class-<class id>:<content key>`, or
`class-<class id>@<region>:<content key>` for a class pinned to a region."""


def pool_key(class_id: str, content_key: str, region: str = "") -> str:
    """The warm pool that serves a class's content key (services/pools.py), in the class's
    region when it is pinned to one."""
    scope = f"{CLASS_SCOPE}{class_id}" + (f"@{region}" if region else "")
    return scoped_key(scope, content_key)


def region_in_force(region: str, regions: Regions) -> str:
    """Where a class pinned to `region` runs its starts: there while the regions file has
    it; once the operator removed it, "" (each learner's own region) until the instructor
    picks another."""
    return region if region in regions.regions else ""


def class_of_pool(key: str) -> str | None:
    """The class whose pool `key` is (whatever its region); None: not a class's pool."""
    scope = key.split(":", 1)[0]
    if ":" not in key or not scope.startswith(CLASS_SCOPE):
        return None
    return scope.removeprefix(CLASS_SCOPE).split("@", 1)[0]


@dataclass(frozen=True)
class Started:
    playground: Playground
    attempt: AttemptRecord | None
    """The attempt when the content is a challenge, tutorial or lesson; None: a bare
    playground."""
    content_key: str


@dataclass(frozen=True)
class Queued:
    position: int
    """1 for the next to start, 2 after it, ...; 0: being started now."""
    content_key: str
    message: str = ""


class ClassStarts:
    def __init__(self, playgrounds: Playgrounds, attempts: Attempts, pools: Pools | None) -> None:
        self.playgrounds = playgrounds
        self.attempts = attempts
        self.pools = pools
        self.db = playgrounds.db
        self._tickets: dict[JobKey, tuple[str, str]] = {}
        """(class, account) -> (pool ticket, content key) of a start still queued."""
        self._locks: dict[JobKey, asyncio.Lock] = {}

    def _lock(self, job: JobKey) -> asyncio.Lock:
        return self._locks.setdefault(job, asyncio.Lock())

    def launch(self, user: User, class_id: str, key: str, country: str | None = None) -> Launch:
        """A member's start of the class's content `key`: on the class's seats, in the
        class's region when it is pinned to one, else in the region of `country` (where
        the learner is, if known)."""
        with self.db.session() as session:
            row = session.get(ClassRow, class_id)
            region = row.region if row is not None else ""
        region = region_in_force(region, self.playgrounds.regions)
        return Launch(
            account_id=user.id,
            role=user.role,
            by=LaunchedBy.CLASS,
            content_key=key,
            class_id=class_id,
            country=country,
            region=region,
        )

    async def start(
        self,
        user: User,
        class_id: str,
        key: str,
        item: Item | None,
        manifest: Manifest,
        country: str | None = None,
    ) -> Started | Queued:
        """Start (claim, or queue) the member's class content, from `country` if known."""
        launch = self.launch(user, class_id, key, country)
        job = (class_id, user.id)
        async with self._lock(job):
            got = await self._playground(user, class_id, key, manifest, launch)
            if isinstance(got, PoolQueued):
                self._tickets[job] = (got.ticket, key)
                return Queued(got.position, key, got.message)
            return await self._adopt(user, class_id, key, item, got, launch)

    async def _playground(
        self, user: User, class_id: str, key: str, manifest: Manifest, launch: Launch
    ) -> Playground | PoolQueued:
        """The one seam between class starts and the warm pools."""
        if self.pools is None:
            return await self.playgrounds.start(manifest, owner=user.owner, launch=launch)
        pool = pool_key(class_id, key, launch.region)
        found = await self.pools.start(user, pool, launch=launch)
        if isinstance(found, PoolQueued) and found.state == "starting":
            # It got a boot slot at once: worth waiting for rather than a 202.
            found = await self.pools.start(user, pool, launch=launch, wait_s=START_WAIT_S)
        return found

    async def _adopt(
        self,
        user: User,
        class_id: str,
        key: str,
        item: Item | None,
        playground: Playground,
        launch: Launch,
    ) -> Started:
        """A class playground that runs: a challenge's becomes an attempt in it."""
        if item is None:
            return Started(playground, None, key)
        record = await self.attempts.start(item, user.owner, launch=launch, playground=playground)
        with self.db.session() as session:
            session.add(
                ClassAttemptRow(
                    attempt_id=record.id,
                    class_id=class_id,
                    account_id=user.id,
                    hints=[],
                    created_at=record.started_at,
                )
            )
        return Started(playground, record, key)

    async def current(
        self, user: User, class_id: str, item_of: Callable[[str], Item | None]
    ) -> Started | Queued | None:
        """The member's class start: still queued, running, or None. A playground whose
        attempt was not made yet (its queued start finished meanwhile) gets it now."""
        job = (class_id, user.id)
        async with self._lock(job):
            ticket = self._tickets.get(job)
            if ticket is not None and self.pools is not None:
                try:
                    polled = await self.pools.poll(ticket[0], user)
                except BaseException:
                    del self._tickets[job]  # its error, once, for whoever asks next
                    raise
                if isinstance(polled, PoolQueued):
                    return Queued(polled.position, ticket[1], polled.message)
                del self._tickets[job]
            with self.db.session() as session:
                ids = live_playgrounds(session, class_id, user.id)
                if not ids or session.get(PlaygroundRow, ids[0]) is None:
                    return None
                attempt_id = session.scalar(
                    select(AttemptRow.id)
                    .join(ClassAttemptRow, ClassAttemptRow.attempt_id == AttemptRow.id)
                    .where(AttemptRow.playground_id == ids[0])
                )
                key = _key_of(session, ids[0])
            playground = await self.playgrounds.get(ids[0])
            if attempt_id is not None:
                return Started(playground, self.attempts.get(attempt_id), key)
            item = item_of(key)
            if item is None:
                return Started(playground, None, key)
            launch = self.launch(user, class_id, key)
            return await self._adopt(user, class_id, key, item, playground, launch)

    async def end_class(self, class_id: str) -> None:
        """The class ended: its queued starts are nobody's to wait for any more (their
        admission refuses them now), and its warm pools go with their unclaimed machines."""
        for job in [j for j in self._tickets if j[0] == class_id]:
            del self._tickets[job]
        if self.pools is None:
            return
        for state in self.pools.pools():
            if class_of_pool(state.key) == class_id:
                await self.pools.release(state.key)


def _key_of(session: Session, playground_id: str) -> str:
    """The content key a class playground was started for (its first usage session's)."""
    key = session.scalar(
        select(UsageSessionRow.content_key)
        .where(UsageSessionRow.playground_id == playground_id)
        .order_by(UsageSessionRow.id)
        .limit(1)
    )
    return str(key or "")
