"""The cluster as the operator sees it, and draining a member of it.

Members and their state come from the driver (the `Cluster` capability: runtime/
capabilities.py); which region each is in, from the regions file. Draining (`evacuate`)
takes a member out of placement, then stops every playground on it (its usage session ends
as a stop's does): learners start new ones, which run elsewhere. Its machines keep their
disks there, to start again once the member is restored. (Moving them with their disks is
what LXD's `move` is for, but LXD 5.0.2 then fails to start a moved machine with its own
id range: "Failed to change ACLs on .../var/log/journal".) Each playground on it keeps a
notice for its owner that says why (`drained_notice`) until it starts again; a restore
changes it to say the server is back (`back_notice`).

`overview` is what the operator's page (/admin/cluster) shows, on any driver: on one that
runs every playground itself (no `Cluster` capability), no members and the regions file's
regions. Callers with an actor (the web) must be admins; None is the operator's local CLI.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from labyard.errors import Forbidden, NotFound
from labyard.runtime.capabilities import Cluster as ClusterCapability
from labyard.runtime.capabilities import ClusterMember, lacks
from labyard.services.accounts import User
from labyard.services.cluster.regions import Regions
from labyard.services.playgrounds import Playgrounds, now
from labyard.types import PlaygroundState, Role


@dataclass(frozen=True)
class MemberView:
    name: str
    regions: list[str]
    state: str
    playgrounds: int
    memory_free: int | None
    memory_total: int | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RegionView:
    name: str
    title: str
    group: str
    countries: list[str]
    members: list[str]
    state: str
    """`up` while one of its members is online, else `down`; without a cluster, this server
    serves every region: `up`."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ClusterOverview:
    """The cluster as the operator's page shows it."""

    driver: str
    """The runtime driver's name (`lxd`, `local`, ...)."""
    clustered: bool
    """Whether the driver runs playgrounds on several servers (the `Cluster` capability);
    without it, this server runs every playground itself and `members` is empty."""
    members: list[MemberView]
    regions: list[RegionView]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Drained:
    playground_id: str
    owner: str
    was: str
    """Its state before: `running` ones were stopped."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Cluster:
    def __init__(self, playgrounds: Playgrounds, regions: Regions) -> None:
        self.playgrounds = playgrounds
        self.regions = regions

    def _driver(self, what: str) -> ClusterCapability:
        driver = self.playgrounds.driver
        if not isinstance(driver, ClusterCapability):
            raise lacks(driver, what)
        return driver

    def _regions_of(self, member: ClusterMember) -> list[str]:
        return [
            name for name in self.regions.regions if self.regions.group_of(name) in member.groups
        ]

    async def members(self) -> list[MemberView]:
        found = await self._driver("list cluster members").members()
        return [
            MemberView(
                m.name,
                self._regions_of(m),
                m.state,
                m.playgrounds,
                m.memory_free,
                m.memory_total,
            )
            for m in found
        ]

    async def regions_now(self) -> list[RegionView]:
        return self._region_views(await self.members())

    def _region_views(self, members: list[MemberView] | None) -> list[RegionView]:
        """Every region of the regions file with its members now; `members` None: no
        cluster, this server serves them all."""
        views = []
        for name, region in self.regions.regions.items():
            mine = [m for m in members or [] if name in m.regions]
            countries = sorted(c for c, r in self.regions.countries.items() if r == name)
            if name == self.regions.default_region:
                countries.append("(every other)")
            up = members is None or any(m.state == "online" for m in mine)
            views.append(
                RegionView(
                    name,
                    region.title,
                    self.regions.group_of(name),
                    countries,
                    [m.name for m in mine],
                    "up" if up else "down",
                )
            )
        return views

    async def overview(self, actor: User | None = None) -> ClusterOverview:
        """Members and regions now, on any driver (see the module docstring). Members are
        asked side by side, each for MEMBER_TIMEOUT_S at most (runtime/lxd/members.py):
        one that does not answer reads `offline` rather than holding the page up."""
        _admin(actor)
        driver = self.playgrounds.driver
        if not isinstance(driver, ClusterCapability):
            return ClusterOverview(driver.name, False, [], self._region_views(None))
        members = await self.members()
        return ClusterOverview(driver.name, True, members, self._region_views(members))

    async def evacuate(self, member: str, actor: User | None = None) -> list[Drained]:
        """Stop every playground on `member`, then take it out of placement (in that order:
        the engine's own evacuation would stop them behind labyard's back, and they would
        read `failed`). Each one's owner is told why (`drained_notice`); one that was not
        running keeps a notice it already had (an earlier drain's)."""
        _admin(actor)
        driver = self._driver("drain a server")
        if member not in {m.name for m in await driver.members()}:
            raise NotFound(f"no cluster member {member!r}")
        drained = []
        for playground_id in await driver.playgrounds_on(member):
            try:
                playground = await self.playgrounds.get(playground_id)
            except NotFound:
                continue  # no playground owns it: the reconciler's to remove
            running = playground.state == PlaygroundState.RUNNING
            if running:
                await self.playgrounds.stop(playground_id)
            if running or not playground.notice:
                self.playgrounds.tell(playground_id, drained_notice(running, now()))
            drained.append(Drained(playground_id, playground.owner, playground.state))
        await driver.set_evacuated(member, True)
        return drained

    async def restore(self, member: str, actor: User | None = None) -> None:
        """Let `member` take new playgrounds again; the owners of those a drain stopped
        there read that they can start them again (`back_notice`)."""
        _admin(actor)
        driver = self._driver("restore a server")
        await driver.set_evacuated(member, False)
        for playground_id in await driver.playgrounds_on(member):
            try:
                playground = await self.playgrounds.get(playground_id)
            except NotFound:
                continue
            if SERVICED in playground.notice:
                self.playgrounds.tell(playground_id, back_notice(now()))


SERVICED = "the server holding this playground is being serviced"
"""In every notice a drain leaves (`drained_notice`): a restore replaces only those."""


def drained_notice(was_running: bool, at: datetime) -> str:
    """What the owner of a playground on a drained member reads (on its page, in its list
    and the CLI) until it starts again: it stopped `at` (if it was running), and why."""
    when = f"{at:%Y-%m-%d %H:%M} UTC"
    if was_running:
        return (
            f"Stopped on {when}: {SERVICED}. "
            "Start a new playground now, or start this one again once that server is back."
        )
    return (
        f"Since {when}, {SERVICED}: it cannot "
        "start again until that server is back. Start a new playground meanwhile."
    )


def back_notice(at: datetime) -> str:
    """What the owner of a drained playground reads once its server is restored, until
    it starts again."""
    return (
        f"The server holding this playground is back since {at:%Y-%m-%d %H:%M} UTC: "
        "start it again to go on where you left off."
    )


def _admin(actor: User | None) -> None:
    """None is the operator's local CLI (`labyard cluster`)."""
    if actor is not None and actor.role != Role.ADMIN:
        raise Forbidden("only admins may see or drain the servers playgrounds run on")
