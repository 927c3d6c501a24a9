"""Playground networks on LXD: a bridge per network, each with a network ACL that holds
its playground's egress (config.acl), one playground's at a time.

A bridge is a playground's while its machines are attached to it (LXD's `used_by`), or,
until they are, while this process's start holds it (`claimed`). A start takes a free bridge
whose ACL already holds the same egress, else a free one whose ACL it rewrites, else a new
one. A cluster makes no network and changes no ACL in use while any member is down ("peer
node is down"): `refill` keeps SPARE_NETWORKS free bridges with the default egress made
ahead on a cluster, so starts go on then. A single server keeps up to that many of the
bridges destroys free (reused, a start makes none: 0.6 s less), makes none ahead (a start
can make one there), and removes free bridges beyond them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from labyard.runtime import egress, subnets
from labyard.runtime.base import PlaygroundSpec
from labyard.runtime.lxd import config, instances
from labyard.runtime.lxd.client import Lxd, LxdError, name_of
from labyard.runtime.lxd.members import Members
from labyard.runtime.machine_setup import addresses_needed
from labyard.settings import LocalSettings

READ_ONE_BY_ONE = 8
"""Instances not yet known beyond this many are read by one listing, not one by one."""
SPARE_NETWORKS = 4
"""Free bridges kept: made ahead on a cluster, for starts while a member is down."""


@dataclass(frozen=True)
class Bridge:
    """A playground network's bridge: one playground's at a time."""

    name: str
    subnet: ipaddress.IPv4Network
    egress: str
    """The key (`egress_key`) of the egress its ACL holds, as known here (`_egress`); ""
    for one in use (not read)."""
    users: set[str]
    """Playgrounds whose machines are attached to it (one, or none while it is free)."""


def egress_key(egress_: bool | tuple[str, ...], operator_allow: tuple[str, ...]) -> str:
    """Which egress an ACL holds: the same manifest egress under the same allow-list is the
    same ACL (the rest of it follows from the bridge's own subnet)."""
    text = json.dumps([egress_, sorted(operator_allow)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _held_bridges(
    spec: PlaygroundSpec, found: dict[str, dict[str, Any]], bridges: dict[str, Bridge]
) -> dict[int, Bridge]:
    """Network index -> the bridge the playground's existing machines are attached to."""
    net_index = {n.name: i for i, n in enumerate(spec.manifest.networks)}
    held = {}
    for machine, instance in found.items():
        devices = instance.get("devices") or {}
        for k, net in enumerate(spec.manifest.machine_networks(machine)):
            parent = devices.get(f"eth{k}", {}).get("parent")
            if parent in bridges:
                held[net_index[net.name]] = bridges[parent]
    return held


def _settled(record: dict[str, Any] | None) -> bool:
    """A network record that will not change: LXD's own interfaces, and made bridges."""
    return record is not None and (
        not record.get("managed") or record.get("status", "Created") == "Created"
    )


def _subnet_of(network: dict[str, Any]) -> ipaddress.IPv4Network | None:
    address = network.get("config", {}).get("ipv4.address", "")
    try:
        return ipaddress.IPv4Interface(address).network
    except ValueError:
        return None


class Bridges:
    def __init__(self, lxd: Lxd, project: str, members: Members) -> None:
        self.lxd = lxd
        self.project = project
        self.members = members
        self.lock = asyncio.Lock()
        """Subnets are picked from what the server has: one pick at a time in this process."""
        self.claimed: dict[str, str] = {}
        """Bridge -> the playground whose start in this process took it, until its
        machines are attached."""
        self._records: dict[str, dict[str, Any]] = {}
        """Networks' records by name, as read once (`_bridges`)."""
        self._nics: dict[str, tuple[str, frozenset[str]]] = {}
        """Instance name -> (its playground, the bridges its NICs are attached to)."""
        self._egress: dict[str, str] = {}
        """Bridge -> the egress its ACL holds, as last read or written here. Another process
        may have rewritten it since: what a start takes is read again (`_free_bridge`)."""
        self._subnets: list[ipaddress.IPv4Network] = []
        """Of every network on the server (labyard's or not), as `_bridges` last read them
        (under `lock`): a new bridge's must overlap none."""

    async def ensure(
        self, spec: PlaygroundSpec, found: dict[str, dict[str, Any]], local: LocalSettings
    ) -> list[tuple[str, ipaddress.IPv4Network]]:
        """(bridge, subnet) per playground network: those its machines use already (a start
        again), else a free bridge whose ACL holds the same egress, else a free one whose
        ACL is rewritten, else a new one. A cluster makes and changes no network or ACL in
        use while a member is down: bridges made ahead (SPARE_NETWORKS, with the default
        egress) keep starts going then. Ownership is use: a bridge is a playground's while
        its machines are attached (or, until they are, while this process's start holds it)."""
        manifest = spec.manifest
        key = egress_key(manifest.egress, local.egress_allow)
        async with self.lock:
            bridges = await self._bridges()
            held = _held_bridges(spec, found, bridges)
            result = []
            for index, net in enumerate(manifest.networks):
                bridge = held.get(index)
                if bridge is None:
                    prefix = subnets.prefix_for(addresses_needed(manifest, net.name))
                    bridge = await self._free_bridge(bridges, spec, key, prefix, local)
                    self.claimed[bridge.name] = spec.id
                result.append((bridge.name, bridge.subnet))
        return result

    async def _free_bridge(
        self,
        bridges: dict[str, Bridge],
        spec: PlaygroundSpec,
        key: str,
        prefix: int,
        local: LocalSettings,
    ) -> Bridge:
        free = [
            b
            for b in bridges.values()
            if not b.users and b.name not in self.claimed and b.subnet.prefixlen <= prefix
        ]
        for bridge in sorted(free, key=lambda b: b.egress != key):  # the same egress first
            if not await self._still_free(bridge):
                continue
            # What its ACL holds, read again: the egress known here may be another process's
            # rewrite behind, and a playground must never get a bridge that lets out more.
            held = await self._egress_of(bridge.name)
            if held == key:
                return dataclasses.replace(bridge, egress=key)
            try:  # rewritten: only while every member can be told
                await self._set_egress(bridge, spec.manifest.egress, key, local)
            except LxdError:
                break
            return dataclasses.replace(bridge, egress=key)
        return await self._make_bridge(bridges, prefix, spec.manifest.egress, local)

    async def _bridges(self) -> dict[str, Bridge]:
        """This project's bridges: their subnets, the playgrounds whose machines use them
        (from the instances' NICs), and, for the free ones, the egress their ACLs hold (as
        known here: each ACL is read once).

        Not from LXD's listing of networks or ACLs with their records: for each one it
        works out its users from every instance, which on a cluster of 60 playgrounds took
        9 s per listing, longer than starts may wait. A network's own record is read once
        (its subnet and project do not change); a bridge handed out is checked once more by
        itself (`_still_free`)."""
        params = {"project": config.DEFAULT_PROJECT}
        urls = await self.lxd.request("GET", "/1.0/networks", params=params)
        names = [name_of(url) for url in urls]
        for gone in set(self._records) - set(names):
            del self._records[gone]
        unread = [n for n in names if not _settled(self._records.get(n))]
        for name, record in zip(
            unread, await asyncio.gather(*(self._record(n) for n in unread)), strict=True
        ):
            if record is not None:
                self._records[name] = record
        networks = [self._records[n] for n in names if n in self._records]
        self._subnets = [subnet for n in networks if (subnet := _subnet_of(n)) is not None]
        users = await self._attached()
        found = {}
        for network in networks:
            settings = network.get("config") or {}
            subnet = _subnet_of(network)
            if settings.get(config.PROJECT) != self.project or subnet is None:
                continue
            if network.get("status", "Created") != "Created":
                continue  # made while a member was down: pending on some, never usable
            name = str(network["name"])
            found[name] = Bridge(name, subnet, "", users[name] - {""})
        for gone in set(self._egress) - set(found):
            del self._egress[gone]
        free = [b for b in found.values() if not b.users and b.name not in self.claimed]
        unknown = [b.name for b in free if b.name not in self._egress]
        await asyncio.gather(*(self._egress_of(name) for name in unknown))
        for bridge in free:
            found[bridge.name] = dataclasses.replace(bridge, egress=self._egress[bridge.name])
        return found

    async def _attached(self) -> dict[str, set[str]]:
        """Bridge -> the playgrounds whose machines are attached to it, from the instances'
        NICs. Those are set when an instance is made, so each instance is read once
        (`_nics`); a name another process made again meanwhile is caught by `_still_free`.
        An instance on an unreachable member shows no NICs: it is read again next time."""
        present = await instances.names(self.lxd)
        for gone in set(self._nics) - set(present):
            del self._nics[gone]
        unread = [name for name in present if name not in self._nics]
        if len(unread) > READ_ONE_BY_ONE:  # a new process: one listing beats many reads
            records = {
                i["name"]: i for i in await instances.listing(self.lxd) if i["name"] in unread
            }
        else:
            records = await instances.read(self.lxd, unread)
        for name, record in records.items():
            if not instances.unreachable(record):
                devices = (record.get("devices") or {}).values()
                nics = {
                    str(d["parent"]) for d in devices if d.get("type") == "nic" and d.get("parent")
                }
                self._nics[name] = (config.owner_of(record)[0], frozenset(nics))
        users: dict[str, set[str]] = collections.defaultdict(set)
        for owner, parents in self._nics.values():
            for parent in parents:
                users[parent].add(owner)
        return users

    def _covered(self, local: LocalSettings) -> set[str]:
        """Networks of this server whose host addresses need no reading: those made from the
        subnet pool (which machines never reach, and whose subnets `_subnets` holds)."""
        return {
            name
            for name, record in self._records.items()
            if (subnet := _subnet_of(record)) is not None and subnet.subnet_of(local.subnet_pool)
        }

    async def _record(self, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self.lxd.request(
                "GET", f"/1.0/networks/{name}", params={"project": config.DEFAULT_PROJECT}
            )
        except LxdError as exc:
            if exc.status != 404:
                raise
            return None  # removed meanwhile
        return found

    async def _still_free(self, bridge: Bridge) -> bool:
        """No instance uses it, as LXD itself says (an instance on an unreachable member
        shows no NICs in the listing `_bridges` reads, but is in the network's users)."""
        record = await self._record(bridge.name)
        return record is not None and not any(
            "/instances/" in str(url) for url in record.get("used_by") or []
        )

    async def _egress_of(self, bridge: str) -> str:
        """What the bridge's ACL holds, read (LXD works out an ACL's users on each read:
        half a second at 60 playgrounds; `_egress` keeps it)."""
        try:
            acl = await self.lxd.request(
                "GET",
                f"/1.0/network-acls/{config.acl_of(bridge)}",
                params={"project": config.DEFAULT_PROJECT},
            )
        except LxdError as exc:
            if exc.status != 404:
                raise
            self._egress[bridge] = ""
            return ""  # a start that died half-way made the bridge but not its ACL
        self._egress[bridge] = str((acl.get("config") or {}).get(config.EGRESS, ""))
        return self._egress[bridge]

    async def _make_bridge(
        self,
        bridges: dict[str, Bridge],
        prefix: int,
        egress_: bool | tuple[str, ...],
        local: LocalSettings,
    ) -> Bridge:
        """A new bridge, its ACL holding `egress_` (every member must be up)."""
        used = [*self._subnets, *(b.subnet for b in bridges.values())]
        used += await self.members.every_host_address(True, self._covered(local))  # LXD's or not
        subnet = subnets.allocate(local.subnet_pool, (1 << (32 - prefix)) - subnets.RESERVED, used)
        name = config.new_bridge_name()
        key = egress_key(egress_, local.egress_allow)
        acl = await self._acl_body(subnet, egress_, key, local)
        await self._create("/1.0/network-acls", {"name": config.acl_of(name), **acl})
        body = config.bridge(project=self.project, name=name, subnet=subnet)
        try:
            if (await self.lxd.server()).clustered:
                for each in await self.members.names():  # pending on every member, then made
                    await self._create(
                        "/1.0/networks",
                        {"name": name, "type": "bridge", "config": {}},
                        target=each,
                    )
            await self._create("/1.0/networks", body)
        except LxdError:
            with contextlib.suppress(LxdError):  # what a member being down left pending
                await self._delete(f"/1.0/networks/{name}")
                await self._delete(f"/1.0/network-acls/{config.acl_of(name)}")
            raise
        bridges[name] = Bridge(name, subnet, key, set())
        self._egress[name] = key
        self._subnets.append(subnet)
        return bridges[name]

    async def _acl_body(
        self,
        subnet: ipaddress.IPv4Network,
        egress_: bool | tuple[str, ...],
        key: str,
        local: LocalSettings,
    ) -> dict[str, Any]:
        gateway = subnet.network_address + 1
        policy = egress.policy(egress_, local.egress_allow, [str(gateway)])
        never = [
            local.subnet_pool,
            *await self.members.every_host_address(False, self._covered(local)),
        ]
        return config.acl(project=self.project, key=key, subnet=subnet, policy=policy, never=never)

    async def _set_egress(
        self, bridge: Bridge, egress_: bool | tuple[str, ...], key: str, local: LocalSettings
    ) -> None:
        body = await self._acl_body(bridge.subnet, egress_, key, local)
        self._egress.pop(bridge.name, None)  # unknown, should the rewrite fail half-way
        await self.lxd.request(
            "PUT",
            f"/1.0/network-acls/{config.acl_of(bridge.name)}",
            body=body,
            params={"project": config.DEFAULT_PROJECT},
        )
        self._egress[bridge.name] = key

    async def refill(self, local: LocalSettings) -> None:
        """Keep SPARE_NETWORKS free bridges: on a cluster, made ahead with the default
        egress; on a single server, of those destroys left (it can always make one).
        Free ones beyond those are removed. Best effort: a cluster with a member down can
        do neither."""
        clustered = (await self.lxd.server()).clustered
        default = egress_key(True, local.egress_allow)
        async with self.lock:
            bridges = await self._bridges()
            free = [b for b in bridges.values() if not b.users and b.name not in self.claimed]
            ready = [b for b in free if b.egress == default]
            kept = ready[:SPARE_NETWORKS] if clustered else free[:SPARE_NETWORKS]
            with contextlib.suppress(LxdError):
                for _ in range(SPARE_NETWORKS - len(kept) if clustered else 0):
                    await self._make_bridge(bridges, subnets.MIN_PREFIX, True, local)
                for extra in [b for b in free if b not in kept]:
                    await self._delete(f"/1.0/networks/{extra.name}")
                    await self._delete(f"/1.0/network-acls/{config.acl_of(extra.name)}")

    async def _create(self, path: str, body: dict[str, Any], target: str | None = None) -> None:
        """POST in the default project; one already there (a start that died half-way,
        or a concurrent one) is fine."""
        params = {"project": config.DEFAULT_PROJECT, **({"target": target} if target else {})}
        try:
            await self.lxd.request("POST", path, body=body, params=params)
        except LxdError as exc:
            if exc.status != 409 and "already exists" not in str(exc):
                raise

    async def _delete(self, path: str) -> None:
        try:
            await self.lxd.request("DELETE", path, params={"project": config.DEFAULT_PROJECT})
        except LxdError as exc:
            if exc.status != 404:
                raise
