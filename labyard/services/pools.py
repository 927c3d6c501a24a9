"""Warm pools: playgrounds pre-started for a key, so that a start is a claim, not a boot.

A pool is named by its **key**: `[SCOPE:]WHAT`, where WHAT is a catalog entry (`linux`)
or a content item (`challenges/<slug>`, `tutorials/<slug>`, `courses/<course>/<lesson>`)
whose playground the pool runs, and the optional SCOPE (`class-12`, see `scoped_key`)
keeps two users of the same content apart: a class releasing its pool must not take the
operator's. The operator's pools (`LABYARD_POOLS`) are keyed by the catalog entry's name
and marked `operator`; only those serve ordinary starts (`claim_matching`, wired into
`Playgrounds.start`), and `keep_warm` releases them once the setting no longer names them.

The interface (what classes.py and the server call):

- `await warm(key, count, reserve=0, manifest=None, region="") -> PoolState`: keep
  `count + reserve` playgrounds warm before claims begin; claims use up `count` first, and
  once they have, `reserve` stays warm (topped up after every claim) until the pool is
  released. So the number kept warm is `max(count - claimed, 0) + reserve`: `warm(key, 30,
  2)` for a class of 40 (75 % of the seats plus a reserve of 2); `warm("linux", 0, 2)` for
  an operator pool of 2. They run in `region` (of the regions file: a class pinned to one;
  "": the default region). Returns once the missing ones have been started (failures are
  logged; the next round tries again). Calling it again changes count, reserve and region;
  the claims so far still count.
- `await release(key) -> int`: forget the pool and destroy its unclaimed playgrounds
  (claimed ones are their learners'); how many were destroyed.
- `await claim(key, user, lifetime_s=None, launch=None) -> Playground | None`: give a warm
  playground to `user` (an owner label `user:<id>`, or anything with an `.owner`, like
  `accounts.User`), admitted by `launch`'s plan like any start (LimitExceeded, Forbidden).
  None when the pool has no warm one, or when the launch asks for a region (`Launch.region`)
  the pool was not warmed in. See "What a claim resets" below.
- `await start(user, key, launch=None, lifetime_s=None, wait_s=0) -> Playground | Queued`:
  a claim when a warm playground is there; otherwise a cold start through the queue
  (start_queue.py: at most `cold_starts` boot at a time, the rest wait in order). The plan
  is checked before queueing, so a refusal comes at once. With `wait_s`, waits that long
  for the queued start before answering `Queued`. A second start of the same key by the
  same user while one is queued returns that one's ticket.
- `await poll(ticket, user=None) -> Playground | Queued`: the queued start's position, its
  playground once started, or the error it failed with (raised).
- `state(key) -> PoolState | None`, `pools() -> list[PoolState]`.

What a claim resets, on every machine: root's `authorized_keys` is replaced by a fresh key
pair's public half (the pre-start key is refused from then on); the labyard tmux server and
any other tmux server are killed (no leftover terminal tab); shell histories of root and
every /home user and the login records (`wtmp`, `lastlog`) are emptied. The playground's
owner becomes the learner's; its creation time, lifetime and usage session start at the
claim, with the launch's `LaunchedBy`. While warm it is owned by `pool:<key>`, counts
against no plan and has no usage session.

Bookkeeping is restart-safe: pools and their warm playgrounds are rows (migration 0011),
so a restarted server finds them and goes on; the reconciler destroys warm playgrounds
whose pool is gone or whose machines stopped (reconciler.py), `keep_warm` tops pools up.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import func, select, update

from labyard.access import Connection, KeyPair, Target, connect, generate_keypair
from labyard.errors import InvalidInput, LabyardError, NotFound
from labyard.manifest import Manifest
from labyard.services import claim_reset
from labyard.services.catalog import Catalog
from labyard.services.locks import playground_lock
from labyard.services.playgrounds import Playgrounds, now, playground_of
from labyard.services.start_queue import COLD_STARTS_AT_A_TIME, Queued, StartQueue, TicketState
from labyard.services.tasks.content import find_item, manifest_for
from labyard.services.usage import Launch
from labyard.store import PlaygroundRow
from labyard.store.models import PoolRow
from labyard.types import EndReason, Playground, PlaygroundState

log = logging.getLogger(__name__)

__all__ = ["PoolState", "Pools", "Queued", "scoped_key"]

MAX_WARM = 500
"""Most playgrounds one pool keeps warm (count and reserve each): a class has up to 500 seats."""
WARM_LIFETIME_S = 6 * 3600
"""A warm playground unclaimed this long is destroyed (and replaced by the next top-up)."""
CLAIM_MARGIN_S = 120
"""A warm playground this close to its end is not handed out."""
WARM_AT_A_TIME = 4
"""Warm starts booting at once, over all pools: on two cores more only queue up in runc."""
KEEP_WARM_INTERVAL_S = 30.0
POOL_OWNER = "pool:"


class HasOwner(Protocol):
    @property
    def owner(self) -> str: ...


User = str | HasOwner


def scoped_key(scope: str, what: str) -> str:
    """The pool key of `what` (a catalog entry or content key) for one user of it."""
    return f"{scope}:{what}"


def pool_owner(key: str) -> str:
    """What a warm playground records as its owner."""
    return f"{POOL_OWNER}{key}"[:200]


@dataclass(frozen=True)
class PoolState:
    key: str
    count: int
    reserve: int
    claimed: int
    warm: int
    """Unclaimed and running: ready to be claimed."""
    starting: int
    """Unclaimed and still booting."""

    @property
    def wanted(self) -> int:
        """How many it keeps warm now."""
        return max(self.count - self.claimed, 0) + self.reserve

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "wanted": self.wanted}


@dataclass(frozen=True)
class _Taken:
    playground: Playground
    targets: list[Target]
    """Each machine, reached with the pre-start key (the row has the learner's already)."""
    new_public_key: str


_WARM = PlaygroundRow.pool_key.is_not(None) & PlaygroundRow.claimed_at.is_(None)


class _Undo(Exception):
    """Raised inside a transaction to roll it back: nothing to claim, or a dry run."""


class Pools:
    def __init__(
        self,
        playgrounds: Playgrounds,
        catalog: Catalog,
        operator_pools: tuple[tuple[str, int], ...] = (),
        cold_starts: int = COLD_STARTS_AT_A_TIME,
    ) -> None:
        self.playgrounds = playgrounds
        self.db = playgrounds.db
        self.catalog = catalog
        self.operator_pools = dict(operator_pools)
        """Catalog entry -> playgrounds kept warm for ordinary starts (LABYARD_POOLS)."""
        self.queue = StartQueue(cold_starts)
        self._warming = asyncio.Semaphore(WARM_AT_A_TIME)
        self._topups: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._held: dict[str, list[Connection]] = {}
        """Warm playground -> an SSH connection to each machine, opened once it started,
        so a claim's reset does not wait for an SSH handshake (closed by the claim)."""

    # -- pools ---------------------------------------------------------------------------

    def manifest_of(self, key: str) -> Manifest:
        """The playground a key stands for: its pool's, else its catalog entry's or its
        content item's (NotFound when it is neither)."""
        with self.db.session() as session:
            pool = session.get(PoolRow, key)
            if pool is not None:
                return Manifest.model_validate(pool.manifest)
        what = key.split(":", 1)[1] if ":" in key else key
        if what.startswith(("challenges/", "tutorials/", "courses/")):
            return manifest_for(find_item(self.catalog.content_dir, what), self.catalog)
        return self.catalog.get(what).manifest

    async def warm(
        self,
        key: str,
        count: int,
        reserve: int = 0,
        manifest: Manifest | None = None,
        region: str = "",
    ) -> PoolState:
        """Keep `max(count - claimed, 0) + reserve` playgrounds of `key` warm, started in
        `region` ("": the default one); returns once the missing ones were started (see the
        module docstring)."""
        _check_key(key)
        for name, value in (("count", count), ("reserve", reserve)):
            if not 0 <= value <= MAX_WARM:
                raise InvalidInput(f"a pool's {name} is 0 to {MAX_WARM}, not {value}")
        self._define(key, manifest or self.manifest_of(key), count, reserve, region=region)
        await self._topped_up(key)
        return self._require(key)

    def _define(
        self,
        key: str,
        manifest: Manifest,
        count: int,
        reserve: int,
        operator: bool = False,
        region: str = "",
    ) -> None:
        at = now()
        with self.db.session() as session:
            pool = session.get(PoolRow, key)
            if pool is None:
                pool = PoolRow(key=key, claimed=0, operator=operator, created_at=at)
                session.add(pool)
            pool.manifest = manifest.model_dump(mode="json")
            pool.count, pool.reserve, pool.updated_at = count, reserve, at
            pool.region = region

    def _region_of(self, key: str) -> str:
        """The region the pool's playgrounds are warmed in ("": the default one)."""
        with self.db.session() as session:
            pool = session.get(PoolRow, key)
            return pool.region if pool is not None else ""

    async def release(self, key: str) -> int:
        """Forget the pool and destroy its unclaimed playgrounds; how many were destroyed.
        Returns once none is left: warm starts still under way finish first (each destroys
        its playground, seeing the pool gone), so none outlives the release."""
        with self.db.session() as session:
            pool = session.get(PoolRow, key)
            if pool is not None:
                session.delete(pool)
        topping_up = self._topups.get(key)
        if topping_up is not None and topping_up is not asyncio.current_task():
            await asyncio.gather(topping_up, return_exceptions=True)
        destroyed = 0
        for playground_id in self._warm_ids(key, PlaygroundState.STARTING):
            destroyed += await self._destroy_warm(playground_id)
        return destroyed

    def state(self, key: str) -> PoolState | None:
        with self.db.session() as session:
            pool = session.get(PoolRow, key)
            if pool is None:
                return None
            counts = dict(
                session.execute(
                    select(PlaygroundRow.state, func.count())
                    .where(PlaygroundRow.pool_key == key, PlaygroundRow.claimed_at.is_(None))
                    .group_by(PlaygroundRow.state)
                ).all()
            )
            return PoolState(
                key,
                pool.count,
                pool.reserve,
                pool.claimed,
                int(counts.get(PlaygroundState.RUNNING, 0)),
                int(counts.get(PlaygroundState.STARTING, 0)),
            )

    def pools(self) -> builtins.list[PoolState]:
        with self.db.session() as session:
            keys = list(session.scalars(select(PoolRow.key).order_by(PoolRow.key)))
        return [s for s in map(self.state, keys) if s is not None]

    def _require(self, key: str) -> PoolState:
        found = self.state(key)
        if found is None:
            raise NotFound(f"no pool {key!r}")
        return found

    # -- keeping pools warm --------------------------------------------------------------

    def top_up_soon(self, key: str) -> asyncio.Task[None]:
        """Start what the pool is missing, in the background (one top-up per pool at a
        time; asked again while one runs, it looks once more when done)."""
        running = self._topups.get(key)
        if running is not None and not running.done():
            self._again.add(key)
            return running
        task = asyncio.create_task(self._top_up_loop(key), name=f"pool-top-up-{key}")
        self._topups[key] = task
        return task

    async def _topped_up(self, key: str) -> None:
        while True:
            await asyncio.shield(self.top_up_soon(key))
            if key not in self._again:  # else a claim asked for more meanwhile
                return

    async def _top_up_loop(self, key: str) -> None:
        while True:
            self._again.discard(key)
            try:
                await self._top_up(key)
            except Exception:  # the next round tries again; a pool must not kill the loop
                log.exception("topping up pool %s failed", key)
                return
            if key not in self._again:
                return

    async def _top_up(self, key: str) -> None:
        state = self.state(key)
        if state is None:
            return
        missing = state.wanted - state.warm - state.starting
        if missing <= 0:
            return
        manifest, launch = self.manifest_of(key), Launch(region=self._region_of(key))
        results = await asyncio.gather(
            *(self._warm_one(key, manifest, launch) for _ in range(missing)),
            return_exceptions=True,
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            log.warning(
                "pool %s: %d of %d warm starts failed: %r", key, len(failed), missing, failed[0]
            )

    async def _warm_one(self, key: str, manifest: Manifest, launch: Launch) -> None:
        """One warm playground; `launch` says only where it runs (no account: no plan)."""
        async with self._warming:
            if self.state(key) is None:
                return  # released while this waited
            playground = await self.playgrounds.start(
                manifest,
                owner=pool_owner(key),
                lifetime_s=WARM_LIFETIME_S,
                launch=launch,
                pool_key=key,
            )
            await self._hold(playground)
        if self.state(key) is None:  # released while it booted
            await self._destroy_warm(playground.id)

    async def _hold(self, playground: Playground) -> None:
        try:
            targets = [self.playgrounds.target(playground.id, m.name) for m in playground.machines]
            self._held[playground.id] = list(await asyncio.gather(*map(connect, targets)))
        except LabyardError as exc:  # the claim connects then
            log.info("holding a connection to warm %s failed: %s", playground.id, exc)

    def _let_go(self, playground_id: str) -> list[Connection]:
        held = self._held.pop(playground_id, [])
        for connection in held:
            connection.close()
        return held

    async def keep_warm(self) -> None:
        """One round: bring the operator's pools in line with the settings (released when
        no longer named) and top every pool up."""
        with self.db.session() as session:
            mine = list(session.scalars(select(PoolRow.key).where(PoolRow.operator)))
        for key in mine:
            if key not in self.operator_pools:
                await self.release(key)
        for name, count in self.operator_pools.items():
            try:
                manifest = self.catalog.get(name).manifest
            except NotFound:
                log.warning("LABYARD_POOLS names %r, which is not in the catalog", name)
                continue
            self._define(name, manifest, 0, count, operator=True)
        await asyncio.gather(*(self.top_up_soon(s.key) for s in self.pools()))
        with self.db.session() as session:
            warm = set(session.scalars(select(PlaygroundRow.id).where(_WARM)))
        for playground_id in set(self._held) - warm:  # destroyed by the reconciler
            self._let_go(playground_id)

    async def keep_warm_forever(self, interval_s: float = KEEP_WARM_INTERVAL_S) -> None:
        """`keep_warm` every `interval_s` until cancelled (the server runs this)."""
        while True:
            try:
                await self.keep_warm()
            except Exception:
                log.exception("keeping pools warm failed; next try in %g s", interval_s)
            await asyncio.sleep(interval_s)

    async def close(self) -> None:
        """Stop topping up and cancel queued starts (each rolls itself back)."""
        for task in self._topups.values():
            task.cancel()
        await asyncio.gather(*self._topups.values(), return_exceptions=True)
        await self.queue.close()
        for playground_id in list(self._held):
            self._let_go(playground_id)

    # -- claims --------------------------------------------------------------------------

    async def claim(
        self,
        key: str,
        user: User,
        lifetime_s: int | None = None,
        launch: Launch | None = None,
    ) -> Playground | None:
        """Give a warm playground of `key` to `user`: admitted by the plan like a start,
        its key, owner, lifetime and usage session new, pre-start traces gone. None when
        none is warm (or the one taken could not be reset: it is destroyed)."""
        launch = launch or Launch()
        owner = _owner(user)
        client = generate_keypair("labyard-claim")
        taken = await asyncio.to_thread(self._take, key, owner, lifetime_s, launch, client)
        if taken is None:
            return None
        self.top_up_soon(key)
        playground_id = taken.playground.id
        try:
            async with playground_lock(self.playgrounds.settings.locks_dir, playground_id):
                await self._reset(taken)
        except Exception as exc:
            log.warning("claimed playground %s could not be reset: %r", playground_id, exc)
            await asyncio.shield(self._discard(playground_id))
            return None
        return taken.playground

    async def claim_matching(
        self, manifest: Manifest, owner: str, lifetime_s: int | None, launch: Launch
    ) -> Playground | None:
        """For `Playgrounds.start`: claim from the operator pool of the same manifest."""
        if manifest.name not in self.operator_pools:
            return None
        with self.db.session() as session:
            pool = session.get(PoolRow, manifest.name)
            same = (
                pool is not None
                and pool.operator
                and pool.manifest == manifest.model_dump(mode="json")
            )
        return await self.claim(manifest.name, owner, lifetime_s, launch) if same else None

    def _take(
        self, key: str, owner: str, lifetime_s: int | None, launch: Launch, client: KeyPair
    ) -> _Taken | None:
        """One transaction: count the claim (the pool row's lock, taken first, puts claims
        of one pool in turn), admit it by the plan, hand the oldest warm playground over
        with the learner's key, and open its usage session. A launch that asks for a region
        takes nothing from a pool warmed in another."""
        at = now()
        try:
            with self.db.session() as session:
                counted = session.execute(
                    update(PoolRow).where(PoolRow.key == key).values(claimed=PoolRow.claimed + 1)
                )
                if not getattr(counted, "rowcount", 0):
                    raise _Undo
                pool = session.get_one(PoolRow, key)
                if launch.region and pool.region != launch.region:
                    raise _Undo
                manifest = Manifest.model_validate(pool.manifest)
                admission = self.playgrounds.admission
                admitted = admission.admit(session, owner, manifest, launch, lifetime_s, at)
                row = session.scalars(
                    select(PlaygroundRow)
                    .where(
                        PlaygroundRow.pool_key == key,
                        PlaygroundRow.claimed_at.is_(None),
                        PlaygroundRow.state == PlaygroundState.RUNNING,
                        PlaygroundRow.expires_at > at + timedelta(seconds=CLAIM_MARGIN_S),
                    )
                    .order_by(PlaygroundRow.created_at, PlaygroundRow.id)
                    .limit(1)
                ).first()
                if row is None:
                    raise _Undo
                targets = [self.playgrounds.machine_target(row, m) for m in row.machines]
                self.playgrounds.hand_over(
                    session, row, owner, admitted, client.private_openssh, launch, at
                )
                # From the row alone: it was running a moment ago; asking the driver
                # would cost the learner a runc call.
                return _Taken(playground_of(row), targets, client.public_openssh)
        except _Undo:
            return None

    async def _reset(self, taken: _Taken) -> None:
        """Install the learner's key on every machine (over the pre-start key, on the
        connections held since the warm start where there are), clear what pre-start work
        left in shells, and hang up the pool's connections."""
        held = self._held.pop(taken.playground.id, [])
        try:
            await asyncio.gather(
                *(
                    claim_reset.reset_over(
                        held[i] if i < len(held) else None, target, taken.new_public_key
                    )
                    for i, target in enumerate(taken.targets)
                )
            )
        finally:
            for connection in held:
                connection.close()

    async def _discard(self, playground_id: str) -> None:
        self._let_go(playground_id)
        async with playground_lock(self.playgrounds.settings.locks_dir, playground_id):
            await self.playgrounds.driver.destroy(playground_id)
            self.playgrounds.forget(playground_id, EndReason.FAILED)

    def _warm_ids(self, key: str, *also: str) -> builtins.list[str]:
        states = (PlaygroundState.RUNNING, *also)
        with self.db.session() as session:
            return list(
                session.scalars(
                    select(PlaygroundRow.id).where(
                        PlaygroundRow.pool_key == key,
                        PlaygroundRow.claimed_at.is_(None),
                        PlaygroundRow.state.in_(states),
                    )
                )
            )

    async def _destroy_warm(self, playground_id: str) -> int:
        """Destroy it if it is still unclaimed (a claim may have won the race): 1 or 0."""
        async with playground_lock(self.playgrounds.settings.locks_dir, playground_id):
            with self.db.session() as session:
                row = session.get(PlaygroundRow, playground_id)
                warm = row is not None and row.claimed_at is None and row.pool_key is not None
            if not warm:
                return 0
            self._let_go(playground_id)
            await self.playgrounds.driver.destroy(playground_id)
            self.playgrounds.forget(playground_id, EndReason.DESTROYED)
            return 1

    # -- starts: claim, else queue -------------------------------------------------------

    async def start(
        self,
        user: User,
        key: str,
        launch: Launch | None = None,
        lifetime_s: int | None = None,
        *,
        wait_s: float = 0.0,
    ) -> Playground | Queued:
        """A warm playground claimed for `user`, or a cold start queued (see the module
        docstring). Over the plan: LimitExceeded / Forbidden at once, nothing queued."""
        launch = launch or Launch()
        owner = _owner(user)
        ticket = self.queue.pending(owner, key)
        if ticket is None:
            claimed = await self.claim(key, owner, lifetime_s, launch)
            if claimed is not None:
                return claimed
            manifest = self.manifest_of(key)
            await asyncio.to_thread(self._precheck, owner, manifest, launch, lifetime_s)

            async def cold() -> str:
                again = await self.claim(key, owner, lifetime_s, launch)
                if again is not None:  # a top-up finished while this waited
                    return again.id
                started = await self.playgrounds.start(manifest, owner, lifetime_s, launch)
                return started.id

            ticket = self.queue.submit(owner, key, cold)
        if wait_s > 0:
            await self.queue.wait(ticket, wait_s)
        return await self.poll(ticket.id, owner)

    async def poll(
        self, ticket_id: str, user: User | None = None, *, wait_s: float = 0.0
    ) -> Playground | Queued:
        """Where a queued start is; its playground once started; its error if it failed
        (raised). With `wait_s`, waits that long for it to end first. NotFound for another
        user's ticket."""
        ticket = self.queue.get(ticket_id, None if user is None else _owner(user))
        if wait_s > 0:
            await self.queue.wait(ticket, wait_s)
        if ticket.state == TicketState.READY:
            return await self.playgrounds.get(ticket.playground_id)
        if ticket.error is not None:
            raise ticket.error
        return self.queue.view(ticket)

    def _precheck(
        self, owner: str, manifest: Manifest, launch: Launch, lifetime_s: int | None
    ) -> None:
        """The plan's answer for a start now, without recording anything."""
        try:
            with self.db.session() as session:
                self.playgrounds.admission.admit(
                    session, owner, manifest, launch, lifetime_s, now()
                )
                raise _Undo  # admitted: undo the start lock's bump
        except _Undo:
            return


def _owner(user: User) -> str:
    return user if isinstance(user, str) else user.owner


def _check_key(key: str) -> None:
    if not key or len(key) > 160 or key.count(":") > 1:
        raise InvalidInput(f"a pool key is `[SCOPE:]WHAT` in at most 160 characters, not {key!r}")
