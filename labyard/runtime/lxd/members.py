"""The members of the server labyard runs machines on (one, for a server that is no
cluster): their state, free memory and own addresses, and which one a playground runs on.

Placement: where a playground already is; else the online member of its region (a cluster
group) with the most free memory that holds the whole playground; else such a member of
another region (the start says which groups it ran in: `Started.placed_in`). A member
whose daemon died still reads online until the cluster's heartbeat notices
(`cluster.offline_threshold`), so a member that does not answer within MEMBER_TIMEOUT_S
counts as unreachable at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import ipaddress
import time
import urllib.parse
from collections.abc import Collection
from typing import Any

from labyard.errors import Conflict, LimitExceeded
from labyard.runtime.base import PlaygroundSpec
from labyard.runtime.capabilities import ClusterMember
from labyard.runtime.lxd import config, instances
from labyard.runtime.lxd.client import Lxd, LxdError, name_of

HOST_ADDRESSES_TTL_S = 60.0
MEMBER_TIMEOUT_S = 3.0
"""How long a member gets to say how it is before it counts as unreachable."""


class Members:
    def __init__(self, lxd: Lxd) -> None:
        self.lxd = lxd
        self._host_cache: dict[
            tuple[str | None, bool], tuple[float, list[ipaddress.IPv4Network]]
        ] = {}
        """Members' own addresses, as last read (they change rarely; reading takes a call
        per interface)."""

    async def place(
        self, spec: PlaygroundSpec, found: dict[str, dict[str, Any]]
    ) -> ClusterMember | None:
        """Where a playground's machines run. Where they already are; else the online member
        of `spec.region` with the most free memory that holds them all, else such a member
        elsewhere; None on a server that is no cluster."""
        if not (await self.lxd.server()).clustered:
            return None
        for instance in found.values():
            where = str(instance.get("location"))
            member = {m.name: m for m in await self._uncounted()}.get(where)
            state = member.state if member else "offline"
            if member is None or state != "online":
                raise Conflict(
                    f"the server holding this playground ({where}) is "
                    f"{'drained' if state == 'evacuated' else 'unreachable'}: start a new "
                    "playground instead, or this one again once that server is back",
                    reason="member_unavailable",
                )
            return member
        need = sum(m.memory for m in spec.manifest.machines)
        roomy = [
            m
            for m in await self._uncounted()
            if m.state == "online" and (m.memory_free or 0) >= need
        ]
        theirs = [m for m in roomy if spec.region in m.groups]
        if theirs:
            return _roomiest(theirs)
        if not roomy:
            raise LimitExceeded(
                "no server of the cluster has room for this playground now "
                f"({need >> 20} MiB of memory); try again in a few minutes",
                reason="cluster_full",
            )
        return _roomiest(roomy)

    async def listen_host(self, member: str | None) -> str:
        """The address a machine's proxy device listens on: its member's, as the cluster
        knows it; the server's own for a single server (127.0.0.1 over its unix socket)."""
        if member is not None:
            info = await self.lxd.get(f"/1.0/cluster/members/{member}", project=False)
            return str(urllib.parse.urlparse(str(info["url"])).hostname)
        parsed = urllib.parse.urlparse(self.lxd.endpoint.url)
        return "127.0.0.1" if parsed.scheme == "unix" else str(parsed.hostname)

    async def every_host_address(
        self, whole: bool = False, skip: Collection[str] = ()
    ) -> list[ipaddress.IPv4Network]:
        """`_host_addresses` of every member: a bridge exists on each of them, and a
        playground may be moved to any. `skip`: networks whose addresses the caller has
        covered already. LxdError when a member's were never read: an egress rule made
        without them would let machines reach that host."""
        members: list[str | None] = [None]
        if (await self.lxd.server()).clustered:
            members = [*await self.names()]
        found = []
        for member in members:
            cached = self._host_cache.get((member, whole))
            if cached is None or time.monotonic() - cached[0] > HOST_ADDRESSES_TTL_S:
                with contextlib.suppress(LxdError, TimeoutError):
                    async with asyncio.timeout(MEMBER_TIMEOUT_S):
                        addresses = await self._host_addresses(member, whole, skip)
                        cached = (time.monotonic(), addresses)
                        self._host_cache[(member, whole)] = cached
            if cached is None:
                raise LxdError(
                    f"cluster member {member or 'the server'} did not say its own addresses "
                    f"within {MEMBER_TIMEOUT_S:g} s",
                    0,
                )
            found += cached[1]
        return found

    async def _host_addresses(
        self, member: str | None, whole: bool, skip: Collection[str]
    ) -> list[ipaddress.IPv4Network]:
        """Every IPv4 address of the member's own interfaces (the host a machine must never
        reach, as the local driver's fib rule keeps it from its host); with `whole`, the
        networks they are on (which a new bridge's subnet must not overlap)."""
        params = {"project": config.DEFAULT_PROJECT, **({"target": member} if member else {})}
        urls = await self.lxd.request("GET", "/1.0/networks", params=params)
        # At 200 playgrounds, playgrounds' bridges are most of the reads: the caller skips
        # those it knows (bridges.Bridges._covered).
        theirs = [u for u in urls if name_of(u) not in skip]
        states = await asyncio.gather(
            *(self.lxd.request("GET", f"{url}/state", params=params) for url in theirs)
        )
        found = []
        for state in states:
            for address in (state or {}).get("addresses", []):
                if address.get("family") == "inet":
                    prefix = address.get("netmask", "32") if whole else "32"
                    interface = ipaddress.IPv4Interface(f"{address['address']}/{prefix}")
                    found.append(interface.network)
        return found

    async def names(self) -> list[str]:
        members = await self.lxd.get("/1.0/cluster/members", recursion="1", project=False)
        return [str(m["server_name"]) for m in members]

    async def members(self) -> list[ClusterMember]:
        per_member: dict[str, set[str]] = collections.defaultdict(set)
        for instance in await instances.listing(self.lxd):
            playground = config.owner_of(instance)[0]
            if playground:
                per_member[str(instance.get("location") or "none")].add(str(playground))
        return [
            dataclasses.replace(m, playgrounds=len(per_member[m.name]))
            for m in await self._uncounted()
        ]

    async def _uncounted(self) -> list[ClusterMember]:
        """`members` with no count of playgrounds: placement needs none, and counting reads
        every instance's record."""
        if not (await self.lxd.server()).clustered:
            return [ClusterMember("none", (), "online", 0, *await self._memory(None), "127.0.0.1")]
        listed = await self.lxd.get("/1.0/cluster/members", recursion="1", project=False)
        found = []
        for member, memory in zip(
            listed,
            await asyncio.gather(*(self._memory(str(m["server_name"])) for m in listed)),
            strict=True,
        ):
            name = str(member["server_name"])
            state = {"Online": "online", "Evacuated": "evacuated"}.get(member.get("status"), "")
            if state == "online" and memory[0] is None:
                state = "offline"  # its daemon is gone; the heartbeat has not noticed yet
            found.append(
                ClusterMember(
                    name,
                    tuple(member.get("groups") or ()),
                    state or "offline",
                    0,
                    *memory,
                    str(urllib.parse.urlparse(str(member.get("url"))).hostname),
                )
            )
        return found

    async def _memory(self, member: str | None) -> tuple[int | None, int | None]:
        """(free, total) bytes of memory on `member`; (None, None) when it does not answer
        within MEMBER_TIMEOUT_S (a member whose daemon died still looks online for a while)."""
        params = {"target": member} if member else {}
        try:
            async with asyncio.timeout(MEMBER_TIMEOUT_S):
                found = await self.lxd.request(
                    "GET", "/1.0/resources", params=params, project=False
                )
        except (LxdError, TimeoutError):
            return None, None
        memory = found.get("memory", {})
        total = int(memory.get("total", 0))
        return total - int(memory.get("used", 0)), total

    async def playgrounds_on(self, member: str) -> list[str]:
        found = await instances.listing(self.lxd)
        return sorted({config.owner_of(i)[0] for i in found if i.get("location") == member} - {""})

    async def set_evacuated(self, member: str, evacuated: bool) -> None:
        action = "evacuate" if evacuated else "restore"
        await self.lxd.request(
            "POST", f"/1.0/cluster/members/{member}/state", body={"action": action}, project=False
        )


def _roomiest(members: list[ClusterMember]) -> ClusterMember:
    return min(members, key=lambda m: (-(m.memory_free or 0), m.name))
