"""Playgrounds: start, look at, stop, restart and destroy them; get into their machines.

This layer owns what the driver contract leaves to the caller: the start timeout, waiting
for SSH, init tasks, and rolling a failed start back completely. It also keeps the plan
(admission.py) and the usage record (usage.py) in step with the playground rows: a start's
plan check, its row and its usage session are one transaction; every way a playground ends
(stop, destroy, rollback, and the reconciler's `forget` and `set_state`) closes its session.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from labyard.access import Connection, Target, connect, generate_keypair, public_key_of
from labyard.access import wait_until_ready as ssh_ready
from labyard.errors import AccessFailure, Conflict, NotFound, RuntimeFailure
from labyard.manifest import Manifest
from labyard.runtime import (
    Driver,
    DriverState,
    MachineEndpoint,
    MachineState,
    MachineStatus,
    PlaygroundSpec,
    new_playground_id,
)
from labyard.runtime.base import ID_PATTERN
from labyard.services.admission import Admission, Admitted
from labyard.services.cluster.regions import Regions, load_regions
from labyard.services.init_tasks import run_init_tasks
from labyard.services.locks import playground_lock
from labyard.services.owners import owner_of
from labyard.services.plans import PlanBook, builtin_plans
from labyard.services.usage import Launch, close_sessions, last_launch, open_session
from labyard.settings import Settings
from labyard.store import Database, MachineRow, PlaygroundRow
from labyard.types import EndReason, MachineView, Playground, PlaygroundState

log = logging.getLogger(__name__)

BOOT_ATTEMPTS = 2
BOOT_POLL_S = 1.0
"""How often a booting machine's state is looked at while waiting for its SSH."""
OPEN_SSHD_TIMEOUT_S = 10.0
"""Longest wait for a machine's sshd to take a raw connection (the SSH tunnel, ssh-proxy)."""
_BOOTING = (MachineState.PENDING, MachineState.RUNNING)
"""States in which a machine is left to come up: anything else is started once more."""
_MACHINES_WHEN: dict[str, MachineState] = {
    PlaygroundState.RUNNING: MachineState.RUNNING,
    PlaygroundState.STOPPED: MachineState.STOPPED,
    PlaygroundState.FAILED: MachineState.FAILED,
}
"""A machine's state as the playground's row implies it, where the driver was not asked."""


def now() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    # SQLite hands datetimes back without a zone; they were stored as UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


Claimer = Callable[[Manifest, str, int | None, Launch], Awaitable["Playground | None"]]
"""(manifest, owner, lifetime_s, launch) -> a warm playground claimed for it, or None."""


def playground_of(
    row: PlaygroundRow, live: Mapping[str, MachineStatus] | None = None
) -> Playground:
    """A playground as its row says, each machine in the state the driver reported (`live`)
    or, where it reported none, in the playground's own."""
    own = MachineStatus(_MACHINES_WHEN.get(row.state, MachineState.PENDING))
    machines = []
    for m in row.machines:
        status = (live or {}).get(m.name, own)
        machines.append(MachineView(m.name, m.image, m.address, str(status.state), status.reason))
    return Playground(
        row.id,
        row.name,
        row.title,
        row.owner,
        row.state,
        machines,
        aware(row.created_at),
        aware(row.expires_at),
        row.notice or "",
    )


class Playgrounds:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        driver: Driver,
        plans: PlanBook | None = None,
        regions: Regions | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.driver = driver
        self.regions = regions or load_regions(settings.data_dir)
        self.admission = Admission(plans or builtin_plans())
        self.claim_warm: Claimer | None = None
        """Set by the pools (pools.py): a start first tries to claim a warm playground."""

    # -- reading -------------------------------------------------------------------------

    def _row(self, session: Any, playground_id: str, owner: str | None) -> PlaygroundRow:
        # An id that cannot be one is not looked up (PostgreSQL rejects NUL characters).
        row = session.get(PlaygroundRow, playground_id) if ID_PATTERN.match(playground_id) else None
        if row is None or (owner is not None and row.owner != owner):
            raise NotFound(f"no playground {playground_id!r}")
        return row  # type: ignore[no-any-return]

    async def _view(self, row: PlaygroundRow) -> Playground:
        live: dict[str, MachineStatus] = {}
        if row.state != PlaygroundState.STARTING:
            self._adopt(row)
            live = await self.driver.status(row.id)
        return playground_of(row, live)

    def _adopt(self, row: PlaygroundRow) -> None:
        """Hand the driver what it recorded at start (it may be a new driver instance, of a
        newer labyard); store the state again if the driver upgraded it."""
        upgraded = self.driver.adopt(row.id, row.driver_state or {})
        if not row.driver_state or upgraded == row.driver_state:
            return
        if inspect(row).session is not None:  # read in a unit of work still open: kept with it
            row.driver_state = upgraded
            return
        with self.db.session() as session:
            stored = session.get(PlaygroundRow, row.id)
            if stored is not None:
                stored.driver_state = upgraded

    def adopt(self, playground_id: str) -> None:
        """Make sure the driver knows the playground (before asking it for anything)."""
        with self.db.session() as session:
            row = self._row(session, playground_id, None)
        self._adopt(row)

    async def get(self, playground_id: str, owner: str | None = None) -> Playground:
        with self.db.session() as session:
            row = self._row(session, playground_id, owner)
            _ = row.machines
        return await self._view(row)

    async def list(self, owner: str | None = None) -> list[Playground]:
        with self.db.session() as session:
            query = select(PlaygroundRow).order_by(PlaygroundRow.created_at)
            if owner is not None:
                query = query.where(PlaygroundRow.owner == owner)
            rows = list(session.scalars(query))
            for row in rows:
                _ = row.machines
        return [await self._view(row) for row in rows]

    def manifest_of(self, playground_id: str) -> Manifest:
        with self.db.session() as session:
            return Manifest.model_validate(self._row(session, playground_id, None).manifest)

    # -- start ---------------------------------------------------------------------------

    async def start(
        self,
        manifest: Manifest,
        owner: str = "",
        lifetime_s: int | None = None,
        launch: Launch | None = None,
        pool_key: str | None = None,
    ) -> Playground:
        """Start a playground and return once every machine answers SSH and init tasks ran.

        With a `launch` naming an account, its plan is checked first (LimitExceeded,
        Forbidden) and `owner` defaults to the account's. On any failure, timeout or
        cancellation, everything made so far is destroyed and the playground never appears
        in the list. When an operator pool holds a warm playground of the same manifest,
        the start is a claim of it (pools.py), admitted by the plan the same way. With
        `pool_key`, it is a pool's warm playground: no plan, no usage session until claimed.
        """
        launch = launch or Launch()
        if not owner and launch.account_id is not None:
            owner = owner_of(launch.account_id)
        if pool_key is None and self.claim_warm is not None and not launch.own_manifest:
            claimed = await self.claim_warm(manifest, owner, lifetime_s, launch)
            if claimed is not None:
                return claimed
        runnable = self.driver.images()
        for machine in manifest.machines:  # one missing: none starts
            image_owner = runnable.get(machine.image)
            if image_owner is None or (image_owner and owner and image_owner != owner):
                raise NotFound(
                    f"no image {machine.image!r} on this server "
                    f"(the operator builds or imports it with `labyard image`)"
                )
        playground_id = new_playground_id()
        client = generate_keypair(f"labyard-{playground_id}")
        host_keys = {m.name: generate_keypair(m.name).private_openssh for m in manifest.machines}
        region = launch.region or self.regions.region_of(launch.country)
        spec = PlaygroundSpec(
            playground_id,
            manifest,
            client.public_openssh,
            host_keys,
            owner,
            region=self.regions.group_of(region),
        )
        async with playground_lock(self.settings.locks_dir, playground_id):
            await self._admit(spec, lifetime_s, launch, client.private_openssh, pool_key)
            try:
                placed_in = await self._bring_up(spec)
            except BaseException as exc:
                await asyncio.shield(self._rollback(playground_id))
                if isinstance(exc, TimeoutError):
                    raise RuntimeFailure(
                        f"playground {manifest.name!r} did not start within "
                        f"{self.settings.start_timeout_s:g} s; it was removed again"
                    ) from exc
                raise
        made = await self.get(playground_id)
        notice = self.regions.elsewhere_notice(region, placed_in)
        return dataclasses.replace(made, notice=notice or made.notice)

    async def _admit(
        self,
        spec: PlaygroundSpec,
        lifetime_s: int | None,
        launch: Launch,
        client_key: str,
        pool_key: str | None,
    ) -> None:
        """Check the plan and record the start, in a thread: waiting for another start's
        lock (another process's, too) must not hold up the event loop. Cancelled, it still
        waits for the thread, and takes back a start that was recorded."""
        work = asyncio.ensure_future(
            asyncio.to_thread(self._insert, spec, lifetime_s, launch, client_key, pool_key)
        )
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await work
                self.forget(spec.id, EndReason.FAILED)
            raise

    def _insert(
        self,
        spec: PlaygroundSpec,
        lifetime_s: int | None,
        launch: Launch,
        client_key: str,
        pool_key: str | None,
    ) -> None:
        created = now()
        manifest = spec.manifest
        with self.db.session() as session:
            admitted = self.admission.admit(
                session, spec.owner, manifest, launch, lifetime_s, created
            )
            row = PlaygroundRow(
                id=spec.id,
                name=manifest.name,
                title=manifest.title or manifest.name,
                owner=spec.owner,
                state=PlaygroundState.STARTING,
                manifest=manifest.model_dump(mode="json"),
                driver=self.driver.name,
                driver_state={},
                client_key=client_key,
                created_at=created,
                expires_at=created + timedelta(seconds=admitted.lifetime_s),
                updated_at=created,
                pool_key=pool_key,
            )
            row.machines = [
                MachineRow(name=m.name, position=i, image=m.image, host_key=spec.host_keys[m.name])
                for i, m in enumerate(manifest.machines)
            ]
            session.add(row)
            if pool_key is None:  # warm: metered from its claim (pools.py)
                _metered(session, row, launch, admitted, created)

    async def _bring_up(self, spec: PlaygroundSpec) -> tuple[str, ...] | None:
        """Start, wait for SSH, run init tasks; the groups of the server it runs on."""
        connections: dict[str, Connection] = {}
        try:
            async with asyncio.timeout(self.settings.start_timeout_s):
                started = await self.driver.start(spec)
                self._record_started(spec.id, started.machines, started.state)
                targets = {m.name: self.target(spec.id, m.name) for m in started.machines}
                ready = await asyncio.gather(
                    *(self._booted(spec, name, t) for name, t in targets.items())
                )
                connections = dict(zip(targets, ready, strict=True))

                async def connection_for(machine: str) -> Connection:
                    return connections[machine]

                await run_init_tasks(spec.manifest, connection_for)
        finally:
            for connection in connections.values():
                connection.close()
        self.set_state(spec.id, PlaygroundState.RUNNING)
        return started.placed_in

    async def _booted(self, spec: PlaygroundSpec, machine: str, target: Target) -> Connection:
        """Wait for the machine's SSH; if the machine stops while booting (rare: seen about
        once in 30 starts on a host under heavy load, with nothing in its console), start it
        once more rather than waiting out the whole start timeout."""
        for attempt in range(BOOT_ATTEMPTS):
            ready = asyncio.create_task(ssh_ready(target, self.settings.start_timeout_s))
            ended: MachineStatus | None = None
            while not ready.done() and ended is None:
                await asyncio.wait({ready}, timeout=BOOT_POLL_S)
                if not ready.done():
                    status = (await self.driver.status(spec.id)).get(machine)
                    if status is None or status.state not in _BOOTING:
                        ended = status or MachineStatus(MachineState.MISSING)
            if ended is None:
                return ready.result()  # connected, or the SSH failure that says why not
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError, AccessFailure):
                await ready
            if attempt + 1 < BOOT_ATTEMPTS:
                log.warning(
                    "machine %s of %s ended while booting (%s); starting it again",
                    machine,
                    spec.id,
                    ended.reason or ended.state,
                )
                await self.driver.start(spec)  # idempotent: only what is not running starts
        why = f": {ended.reason}" if ended is not None and ended.reason else ""
        raise RuntimeFailure(f"machine {machine} ended while booting, twice{why}")

    def _record_started(
        self, playground_id: str, machines: builtins.list[MachineEndpoint], state: DriverState
    ) -> None:
        with self.db.session() as session:
            row = self._row(session, playground_id, None)
            row.driver_state = state
            addresses = {m.name: m.address for m in machines}
            for machine in row.machines:
                machine.address = addresses[machine.name]

    def hand_over(
        self,
        session: Session,
        row: PlaygroundRow,
        owner: str,
        admitted: Admitted,
        client_key: str,
        launch: Launch,
        at: datetime,
    ) -> None:
        """A pool's warm playground (`row`, read in `session`) becomes `owner`'s from `at`,
        reached with `client_key`, metered from now: in the caller's transaction, which
        counted and admitted the claim (pools.py)."""
        row.owner, row.claimed_at, row.created_at, row.updated_at = owner, at, at, at
        row.expires_at = at + timedelta(seconds=admitted.lifetime_s)
        row.client_key = client_key
        _metered(session, row, launch, admitted, at)

    def set_state(
        self,
        playground_id: str,
        state: PlaygroundState,
        end: EndReason | None = None,
    ) -> None:
        """Record the state; `stopped` or `failed` ends its usage session, for `end`
        (default `crashed`: what the reconciler means when it marks one stopped)."""
        with self.db.session() as session:
            row = self._row(session, playground_id, None)
            row.state = state
            row.updated_at = now()
            if state in (PlaygroundState.STOPPED, PlaygroundState.FAILED):
                close_sessions(session, playground_id, end or EndReason.CRASHED, row.updated_at)

    async def _rollback(self, playground_id: str) -> None:
        try:
            await self.driver.destroy(playground_id)
        finally:
            self.forget(playground_id, EndReason.FAILED)

    def forget(self, playground_id: str, end: EndReason | None = None) -> None:
        """Delete the playground's rows and end its usage session: for `end`, or (as the
        reconciler calls it) `expired` when past its lifetime, else `reconciled`. An
        expired session ends at its expiry: a late reconciler round is not the owner's use."""
        at = now()
        with self.db.session() as session:
            row = session.get(PlaygroundRow, playground_id)
            if row is not None:
                expires = aware(row.expires_at)
                if end is None and expires <= at:
                    end, at = EndReason.EXPIRED, expires
                session.delete(row)
            close_sessions(session, playground_id, end or EndReason.RECONCILED, at)

    def tell(self, playground_id: str, notice: str) -> None:
        """Keep `notice` for the playground's owner (why it stopped: the cluster service's
        drain words it), shown with the playground until it starts again; "" clears it.
        One destroyed meanwhile has nobody to tell."""
        with self.db.session() as session:
            row = session.get(PlaygroundRow, playground_id)
            if row is not None:
                row.notice = notice

    # -- lifecycle -----------------------------------------------------------------------

    async def stop(self, playground_id: str, owner: str | None = None) -> Playground:
        """Halt every machine; writable layers stay, `restart` brings them back."""
        await self.get(playground_id, owner)
        async with playground_lock(self.settings.locks_dir, playground_id):
            self.adopt(playground_id)
            await self.driver.stop(playground_id)
            self.set_state(playground_id, PlaygroundState.STOPPED, EndReason.STOPPED)
        return await self.get(playground_id)

    async def restart(
        self, playground_id: str, owner: str | None = None, account_id: int | None = None
    ) -> Playground:
        """Stop (if running) and start again from the same writable layers: a new usage
        session. With `account_id`, that account's daily allowance is checked first. Once
        it runs, its owner's notice (why it stopped) is cleared; a failed restart keeps it."""
        await self.get(playground_id, owner)
        async with playground_lock(self.settings.locks_dir, playground_id):
            spec = self._spec(playground_id)
            self._restarting(playground_id, account_id)
            self.adopt(playground_id)
            await self.driver.stop(playground_id)
            try:
                async with asyncio.timeout(self.settings.start_timeout_s):
                    started = await self.driver.start(spec)
                    self._record_started(playground_id, started.machines, started.state)
                    await self._wait_ready(playground_id, [m.name for m in started.machines])
            except BaseException:
                self.set_state(playground_id, PlaygroundState.FAILED, EndReason.FAILED)
                raise
            self.set_state(playground_id, PlaygroundState.RUNNING)
            self.tell(playground_id, "")  # it said its piece
        return await self.get(playground_id)

    def _restarting(self, playground_id: str, account_id: int | None) -> None:
        """Check the plan, end the running session (if any), open the restart's, and mark
        the playground starting: one transaction."""
        at = now()
        with self.db.session() as session:
            row = self._row(session, playground_id, None)
            plan = self.admission.admit_restart(session, row.owner, account_id, at)
            launch = last_launch(session, playground_id)
            close_sessions(session, playground_id, EndReason.STOPPED, at)
            row.state, row.updated_at = PlaygroundState.STARTING, at
            open_session(
                session,
                launch,
                owner=row.owner,
                plan=plan.name if plan else "",
                playground_id=playground_id,
                playground_name=row.name,
                machines=len(row.machines),
                started_at=at,
                restart=True,
            )

    async def _wait_ready(self, playground_id: str, machines: builtins.list[str]) -> None:
        ready = await asyncio.gather(
            *(
                ssh_ready(self.target(playground_id, m), self.settings.start_timeout_s)
                for m in machines
            )
        )
        for connection in ready:
            connection.close()

    def _spec(self, playground_id: str) -> PlaygroundSpec:
        with self.db.session() as session:
            row = self._row(session, playground_id, None)
            return PlaygroundSpec(
                id=row.id,
                manifest=Manifest.model_validate(row.manifest),
                authorized_key=public_key_of(row.client_key),
                host_keys={m.name: m.host_key for m in row.machines},
                owner=row.owner,
            )

    async def destroy(self, playground_id: str, owner: str | None = None) -> None:
        """Remove the playground and everything it had on the host."""
        await self.get(playground_id, owner)
        async with playground_lock(self.settings.locks_dir, playground_id):
            await self.driver.destroy(playground_id)
            self.forget(playground_id, EndReason.DESTROYED)

    async def extend(
        self,
        playground_id: str,
        seconds: int,
        owner: str | None = None,
        account_id: int | None = None,
    ) -> Playground:
        """Add time; with `account_id`, up to that account's plan's lifetime in all (and not
        once its daily allowance is used up)."""
        with self.db.session() as session:
            row = self._row(session, playground_id, owner)
            if account_id is not None:
                self.admission.check_extend(session, row, seconds, account_id, now())
            row.expires_at = max(aware(row.expires_at), now()) + timedelta(seconds=seconds)
        return await self.get(playground_id)

    # -- access --------------------------------------------------------------------------

    def target(
        self, playground_id: str, machine: str | None = None, owner: str | None = None
    ) -> Target:
        """How to SSH into a machine (the first one by default), host key pinned."""
        with self.db.session() as session:
            row = self._row(session, playground_id, owner)
            machines = {m.name: m for m in row.machines}
            name = machine or row.machines[0].name
            if name not in machines:
                raise NotFound(
                    f"playground {playground_id} has no machine {name!r} "
                    f"(machines: {', '.join(machines)})"
                )
            if not row.driver_state:
                raise Conflict(f"playground {playground_id} is still starting")
            return self.machine_target(row, machines[name])

    def machine_target(self, row: PlaygroundRow, machine: MachineRow) -> Target:
        """How to SSH into `machine` of the playground in `row`, through the driver."""
        self._adopt(row)
        playground_id, name = row.id, machine.name

        async def dial(timeout: float) -> socket.socket:
            return await self.driver.dial(playground_id, name, 22, timeout)

        return Target(
            where=f"{name}.{playground_id}",
            dial=dial,
            host_public_key=public_key_of(machine.host_key),
            client_private_key=row.client_key,
        )

    async def open_sshd(
        self, playground_id: str, machine: str | None = None, owner: str | None = None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A raw byte stream to a running machine's sshd, through the driver: for SSH run
        elsewhere (the remote CLI's tunnel, `ssh-proxy` under OpenSSH)."""
        playground = await self.get(playground_id, owner)
        target = self.target(playground_id, machine, owner)
        if playground.state != PlaygroundState.RUNNING:
            raise Conflict(f"playground {playground_id} is {playground.state}, not running")
        assert target.dial is not None
        try:
            async with asyncio.timeout(OPEN_SSHD_TIMEOUT_S):
                sock = await target.dial(OPEN_SSHD_TIMEOUT_S)
                return await asyncio.open_connection(sock=sock)
        except (OSError, TimeoutError) as exc:
            raise AccessFailure(
                f"machine {target.where} does not answer SSH",
                detail=f"{type(exc).__name__}: {exc}",
                reason="sshd_unreachable",
            ) from exc

    async def connect(
        self, playground_id: str, machine: str | None = None, owner: str | None = None
    ) -> Connection:
        # The recorded state is enough here: a machine that died since says so on connect.
        with self.db.session() as session:
            state = self._row(session, playground_id, owner).state
        if state != PlaygroundState.RUNNING:
            raise Conflict(f"playground {playground_id} is {state}, not running")
        return await connect(self.target(playground_id, machine, owner))


def _metered(
    session: Session, row: PlaygroundRow, launch: Launch, admitted: Admitted, at: datetime
) -> None:
    """Open the usage session of the playground in `row`, started (or claimed) `at`."""
    open_session(
        session,
        launch,
        owner=row.owner,
        plan=admitted.plan_name,
        playground_id=row.id,
        playground_name=row.name,
        machines=len(row.machines),
        started_at=at,
        restart=False,
    )
