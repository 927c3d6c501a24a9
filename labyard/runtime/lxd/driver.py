"""The `lxd` driver: each machine a system container on an LXD (>= 5.0) or Incus (>= 6.0)
server or cluster, through its REST API.

A start: the image uploaded once (images.py) -> a bridge per playground network, with an ACL
that is its egress policy (config.py) -> per machine, an instance made from the image with
its limits, its own id range and a static address, the files written in, then started.
All of a playground's machines run on one member. The control plane reaches each machine's
sshd through a `proxy` device listening on its member's address (`dial`): the only port it
needs, since everything else rides on SSH. Instances, bridges and ACLs carry the playground's
id and the project in `user.labyard.*` keys, which is how `list` and `destroy` find them
with or without adoption.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import dataclasses
import hashlib
import ipaddress
import json
import random
import socket
import time
import urllib.parse
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from labyard.errors import Conflict, InvalidInput, LimitExceeded, NotFound, RuntimeFailure
from labyard.images import BuiltImages, find_image
from labyard.manifest import Machine
from labyard.runtime import egress, subnets
from labyard.runtime.base import (
    ID_PATTERN,
    Driver,
    DriverState,
    MachineEndpoint,
    MachineStatus,
    PlaygroundSpec,
    Started,
)
from labyard.runtime.capabilities import ClusterMember
from labyard.runtime.dialing import connect_tcp, uninterrupted
from labyard.runtime.lxd import config, images
from labyard.runtime.lxd.client import Endpoint, Lxd, LxdError
from labyard.runtime.machine_setup import (
    MachineFile,
    addresses,
    addresses_needed,
    machine_files,
    owner_ids,
)
from labyard.settings import Settings
from labyard.types import MachineState

T = TypeVar("T")

VERSION = "1"
STOP_GRACE_S = 10
SSH_PORTS = (20000, 60000)
"""Member ports the proxy devices to machines' sshd listen on (picked at random, again
when the one picked is taken)."""
SPARE_NETWORKS = 4
"""Free bridges a cluster keeps made ahead, for starts while a member is down."""
HOST_ADDRESSES_TTL_S = 60.0
MEMBER_TIMEOUT_S = 3.0
"""How long a member gets to say how it is before it counts as unreachable."""
QUOTA_POOLS = ("btrfs", "zfs", "lvm", "ceph")
"""Storage drivers that keep a root disk's `size`; `dir` ignores it with a warning."""
DEFAULT_PROJECT = "default"
"""Where bridges and ACLs live: LXD makes only OVN networks inside other projects."""


@dataclass(frozen=True)
class RecordedMachine:
    instance: str
    host: str
    """The member address its proxy device listens on."""
    port: int
    address: str
    """On its first playground network, for users."""


@dataclass(frozen=True)
class Bridge:
    """A playground network's bridge: one playground's at a time."""

    name: str
    subnet: ipaddress.IPv4Network
    egress: str
    """The key (`egress_key`) of the egress its ACL holds."""
    users: set[str]
    """Playgrounds whose machines are attached to it (one, or none while it is free)."""


def egress_key(egress_: bool | tuple[str, ...], operator_allow: tuple[str, ...]) -> str:
    """Which egress an ACL holds: the same manifest egress under the same allow-list is the
    same ACL (the rest of it follows from the bridge's own subnet)."""
    text = json.dumps([egress_, sorted(operator_allow)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _record(playground_id: str, project: str, machines: dict[str, RecordedMachine]) -> DriverState:
    return {
        "driver": "lxd",
        "version": VERSION,
        "project": project,
        "playground": playground_id,
        "machines": {name: asdict(m) for name, m in machines.items()},
    }


class LxdDriver(Driver):
    name = "lxd"
    version = VERSION

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        lxd = settings.lxd
        endpoint = Endpoint(lxd.server_url(), lxd.client_cert, lxd.client_key, lxd.server_cert)
        self.lxd = Lxd(endpoint, lxd.project)
        self.project = lxd.project
        self._adopted: dict[str, dict[str, RecordedMachine]] = {}
        self._starting: set[str] = set()
        """Instances this process is making or starting right now: pending, not failed."""
        self._built = BuiltImages(settings.images_dir)
        self._saved: dict[str, str] = {}
        """Saved images on the server (name -> owner), as last read."""
        self._image_locks: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self._network_lock = asyncio.Lock()
        """Subnets are picked from what the server has: one pick at a time in this process."""
        self._host_cache: dict[
            tuple[str | None, bool], tuple[float, builtins.list[ipaddress.IPv4Network]]
        ] = {}
        """Member's own addresses, as last read (they change rarely; reading takes a call
        per interface)."""
        self._claimed: dict[str, str] = {}
        """Bridge -> the playground whose start in this process took it, until its
        machines are attached."""
        self._create_lock = asyncio.Lock()
        """LXD 5.0.2 gives instances made at the same moment overlapping id ranges (and then
        cannot start them): one creation at a time."""
        self._checked = False

    # -- the server, once ----------------------------------------------------------------

    async def _check(self) -> None:
        """The project exists (made on first use) and the pool keeps disk limits."""
        if self._checked:
            return
        try:
            await self.lxd.get(f"/1.0/projects/{self.project}", project=False)
        except LxdError as exc:
            if exc.status != 404:
                raise
            features = {"features.images": "true", "features.profiles": "true"}
            with contextlib.suppress(LxdError):  # made by a concurrent start is fine
                await self.lxd.request(
                    "POST",
                    "/1.0/projects",
                    body={"name": self.project, "config": features},
                    project=False,
                )
        pool_name = self.settings.lxd.pool
        try:
            pool = await self.lxd.get(f"/1.0/storage-pools/{pool_name}")
        except LxdError as exc:
            raise RuntimeFailure(
                f"the LXD storage pool {pool_name!r} (LABYARD_LXD_POOL) does not exist: {exc}"
            ) from exc
        if pool.get("driver") not in QUOTA_POOLS:
            raise RuntimeFailure(
                f"the LXD storage pool {pool_name!r} is a {pool.get('driver')} pool, which cannot "
                "keep a machine's disk limit; give LABYARD_LXD_POOL a btrfs, zfs or lvm pool "
                f"(a loop file will do: lxc storage create labyard btrfs size=100GiB)",
                reason="pool_without_quotas",
            )
        await self._saved_images()
        self._checked = True

    # -- start ---------------------------------------------------------------------------

    async def start(self, spec: PlaygroundSpec) -> Started:
        _check_id(spec.id)
        await self._check()
        manifest = spec.manifest
        aliases = {m.image: await self._image_alias(m.image) for m in manifest.machines}
        found = await self._instances(spec.id)
        member, notice = await self._place(spec, found)
        try:
            nets = await uninterrupted(self._ensure_networks(spec, found))
            recorded = await self._start_machines(spec, aliases, found, member, nets)
        finally:  # attached now (or rolled back): use says whose the bridges are
            for bridge in [b for b, owner in self._claimed.items() if owner == spec.id]:
                del self._claimed[bridge]
        with contextlib.suppress(LxdError):
            await self._refill()  # for the next starts, while every member is up
        by_name = {m.name: r for m, r in zip(manifest.machines, recorded, strict=True)}
        self._adopted[spec.id] = by_name
        endpoints = [MachineEndpoint(name, r.address) for name, r in by_name.items()]
        return Started(endpoints, _record(spec.id, self.project, by_name), notice)

    async def _start_machines(
        self,
        spec: PlaygroundSpec,
        aliases: dict[str, str],
        found: dict[str, dict[str, Any]],
        member: str | None,
        nets: builtins.list[tuple[str, ipaddress.IPv4Network]],
    ) -> builtins.list[RecordedMachine]:
        placed = addresses(spec.manifest, [subnet for _, subnet in nets])
        host = await self._listen_host(member)
        machines = [
            asyncio.ensure_future(
                self._start_machine(
                    spec,
                    machine,
                    aliases[machine.image],
                    found.get(machine.name),
                    member,
                    host,
                    nets,
                    placed,
                )
            )
            for machine in spec.manifest.machines
        ]
        try:
            return await asyncio.gather(*machines)
        except BaseException:
            for task in machines:
                task.cancel()
            await asyncio.wait(machines)
            raise

    async def _image_alias(self, name: str) -> str:
        try:
            image = find_image(self.settings.images_dir, name)
        except NotFound:
            if name in await self._saved_images():
                return name
            raise
        return await images.ensure_image(self.lxd, image, self._image_locks[name])

    async def _place(
        self, spec: PlaygroundSpec, found: dict[str, dict[str, Any]]
    ) -> tuple[str | None, str]:
        """(member, notice): where a playground's machines run. Where they already are; else
        the online member of `spec.region` with the most free memory that holds them all,
        else such a member elsewhere, with a notice; None on a server that is no cluster."""
        if not (await self.lxd.server()).clustered:
            return None, ""
        for instance in found.values():
            where = str(instance.get("location"))
            state = {m.name: m.state for m in await self.members()}.get(where)
            if state != "online":
                raise Conflict(
                    f"the server holding this playground ({where}) is "
                    f"{'drained' if state == 'evacuated' else 'unreachable'}: start a new "
                    "playground instead, or this one again once that server is back",
                    reason="member_unavailable",
                )
            return where, ""
        need = sum(m.memory for m in spec.manifest.machines)
        roomy = [
            m for m in await self.members() if m.state == "online" and (m.memory_free or 0) >= need
        ]
        if spec.region:
            theirs = [m for m in roomy if spec.region in m.groups]
            if theirs:
                return _roomiest(theirs).name, ""
        if not roomy:
            raise LimitExceeded(
                "no server of the cluster has room for this playground now "
                f"({need >> 20} MiB of memory); try again in a few minutes",
                reason="cluster_full",
            )
        chosen = _roomiest(roomy)
        if not spec.region:
            return chosen.name, ""
        elsewhere = ", ".join(g for g in chosen.groups if g != "default") or chosen.name
        notice = (
            f"the servers of region {spec.region} are full or unreachable, so this "
            f"playground runs in {elsewhere}: it may feel slower"
        )
        return chosen.name, notice

    async def _listen_host(self, member: str | None) -> str:
        """The address a machine's proxy device listens on: its member's, as the cluster
        knows it; the server's own for a single server (127.0.0.1 over its unix socket)."""
        if member is not None:
            info = await self.lxd.get(f"/1.0/cluster/members/{member}", project=False)
            return str(urllib.parse.urlparse(str(info["url"])).hostname)
        parsed = urllib.parse.urlparse(self.lxd.endpoint.url)
        return "127.0.0.1" if parsed.scheme == "unix" else str(parsed.hostname)

    async def _ensure_networks(
        self, spec: PlaygroundSpec, found: dict[str, dict[str, Any]]
    ) -> list[tuple[str, ipaddress.IPv4Network]]:
        """(bridge, subnet) per playground network: those its machines use already (a start
        again), else a free bridge whose ACL holds the same egress, else a free one whose
        ACL is rewritten, else a new one. A cluster makes and changes no network or ACL in
        use while a member is down: bridges made ahead (SPARE_NETWORKS, with the default
        egress) keep starts going then. Ownership is use: a bridge is a playground's while
        its machines are attached (or, until they are, while this process's start holds it)."""
        manifest = spec.manifest
        key = egress_key(manifest.egress, self.settings.local.egress_allow)
        async with self._network_lock:
            bridges = await self._bridges()
            held = _held_bridges(spec, found, bridges)
            result = []
            for index, net in enumerate(manifest.networks):
                bridge = held.get(index)
                if bridge is None:
                    prefix = subnets.prefix_for(addresses_needed(manifest, net.name))
                    bridge = await self._free_bridge(bridges, spec, key, prefix)
                    self._claimed[bridge.name] = spec.id
                result.append((bridge.name, bridge.subnet))
        return result

    async def _free_bridge(
        self, bridges: dict[str, Bridge], spec: PlaygroundSpec, key: str, prefix: int
    ) -> Bridge:
        free = [
            b
            for b in bridges.values()
            if not b.users and b.name not in self._claimed and b.subnet.prefixlen <= prefix
        ]
        same = [b for b in free if b.egress == key]
        if same:
            return same[0]
        for bridge in free:  # rewritten: only while every member can be told
            try:
                await self._set_egress(bridge, spec.manifest.egress, key)
            except LxdError:
                break
            return dataclasses.replace(bridge, egress=key)
        return await self._make_bridge(bridges, prefix, spec.manifest.egress)

    async def _bridges(self) -> dict[str, Bridge]:
        """This project's bridges: their subnets, the egress their ACLs hold, and the
        playgrounds whose machines use them."""
        params = {"project": DEFAULT_PROJECT, "recursion": "1"}
        networks = await self.lxd.request("GET", "/1.0/networks", params=params)
        acls = {
            str(a["name"]): a
            for a in await self.lxd.request("GET", "/1.0/network-acls", params=params)
        }
        found = {}
        for network in networks:
            settings = network.get("config") or {}
            subnet = _subnet_of(network)
            if settings.get(config.PROJECT) != self.project or subnet is None:
                continue
            if network.get("status", "Created") != "Created":
                continue  # made while a member was down: pending on some, never usable
            name = str(network["name"])
            acl = acls.get(config.acl_of(name), {}).get("config") or {}
            users = {
                _owner_of({"name": url.split("?")[0].rsplit("/", 1)[-1], "config": None})[0]
                for url in network.get("used_by") or []
                if "/instances/" in url
            }
            found[name] = Bridge(name, subnet, str(acl.get(config.EGRESS, "")), users - {""})
        return found

    async def _make_bridge(
        self, bridges: dict[str, Bridge], prefix: int, egress_: bool | tuple[str, ...]
    ) -> Bridge:
        """A new bridge, its ACL holding `egress_` (every member must be up)."""
        every = await self.lxd.request(
            "GET", "/1.0/networks", params={"project": DEFAULT_PROJECT, "recursion": "1"}
        )
        used = [subnet for n in every if (subnet := _subnet_of(n)) is not None]
        used += await self._every_host_address(whole=True)  # LXD's or not
        subnet = subnets.allocate(
            self.settings.local.subnet_pool, (1 << (32 - prefix)) - subnets.RESERVED, used
        )
        name = config.new_bridge_name()
        key = egress_key(egress_, self.settings.local.egress_allow)
        acl = await self._acl_body(name, subnet, egress_, key)
        await self._create("/1.0/network-acls", {"name": config.acl_of(name), **acl})
        body = config.bridge(project=self.project, name=name, subnet=subnet)
        try:
            if (await self.lxd.server()).clustered:
                for each in await self._member_names():  # pending on every member, then made
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
        return bridges[name]

    async def _acl_body(
        self,
        bridge: str,
        subnet: ipaddress.IPv4Network,
        egress_: bool | tuple[str, ...],
        key: str,
    ) -> dict[str, Any]:
        gateway = subnet.network_address + 1
        policy = egress.policy(egress_, self.settings.local.egress_allow, [str(gateway)])
        never = [self.settings.local.subnet_pool, *await self._every_host_address()]
        return config.acl(project=self.project, key=key, subnet=subnet, policy=policy, never=never)

    async def _set_egress(self, bridge: Bridge, egress_: bool | tuple[str, ...], key: str) -> None:
        body = await self._acl_body(bridge.name, bridge.subnet, egress_, key)
        await self.lxd.request(
            "PUT",
            f"/1.0/network-acls/{config.acl_of(bridge.name)}",
            body=body,
            params={"project": DEFAULT_PROJECT},
        )

    async def _refill(self) -> None:
        """Keep SPARE_NETWORKS free bridges with the default egress on a cluster (none on a
        single server, which can always make one), removing free ones beyond that. Best
        effort: a cluster with a member down can do neither."""
        spares = SPARE_NETWORKS if (await self.lxd.server()).clustered else 0
        default = egress_key(True, self.settings.local.egress_allow)
        async with self._network_lock:
            bridges = await self._bridges()
            free = [b for b in bridges.values() if not b.users and b.name not in self._claimed]
            ready = [b for b in free if b.egress == default]
            with contextlib.suppress(LxdError):
                for _ in range(spares - len(ready)):
                    await self._make_bridge(bridges, subnets.MIN_PREFIX, True)
                for extra in [b for b in free if b not in ready[:spares]]:
                    await self._delete(f"/1.0/networks/{extra.name}")
                    await self._delete(f"/1.0/network-acls/{config.acl_of(extra.name)}")

    async def _create(self, path: str, body: dict[str, Any], target: str | None = None) -> None:
        """POST in the default project; one already there (a start that died half-way,
        or a concurrent one) is fine."""
        params = {"project": DEFAULT_PROJECT, **({"target": target} if target else {})}
        try:
            await self.lxd.request("POST", path, body=body, params=params)
        except LxdError as exc:
            if exc.status != 409 and "already exists" not in str(exc):
                raise

    async def _every_host_address(self, whole: bool = False) -> list[ipaddress.IPv4Network]:
        """`_host_addresses` of every member: a bridge exists on each of them, and a
        playground may be moved to any."""
        members: builtins.list[str | None] = [None]
        if (await self.lxd.server()).clustered:
            members = [*await self._member_names()]
        found = []
        for member in members:
            cached = self._host_cache.get((member, whole))
            if cached is None or time.monotonic() - cached[0] > HOST_ADDRESSES_TTL_S:
                with contextlib.suppress(LxdError, TimeoutError):
                    async with asyncio.timeout(MEMBER_TIMEOUT_S):
                        addresses = await self._host_addresses(member, whole)
                        cached = (time.monotonic(), addresses)
                        self._host_cache[(member, whole)] = cached
            found += cached[1] if cached else []
        return found

    async def _host_addresses(
        self, member: str | None, whole: bool = False
    ) -> list[ipaddress.IPv4Network]:
        """Every IPv4 address of the member's own interfaces (the host a machine must never
        reach, as the local driver's fib rule keeps it from its host); with `whole`, the
        networks they are on (which a new bridge's subnet must not overlap)."""
        params = {"project": DEFAULT_PROJECT, **({"target": member} if member else {})}
        names = await self.lxd.request("GET", "/1.0/networks", params=params)
        found = []
        for url in names:
            state = await self.lxd.request("GET", f"{url}/state", params=params)
            for address in (state or {}).get("addresses", []):
                if address.get("family") == "inet":
                    prefix = address.get("netmask", "32") if whole else "32"
                    interface = ipaddress.IPv4Interface(f"{address['address']}/{prefix}")
                    found.append(interface.network)
        return found

    async def _member_names(self) -> list[str]:
        members = await self.lxd.get("/1.0/cluster/members", recursion="1", project=False)
        return [str(m["server_name"]) for m in members]

    async def _start_machine(
        self,
        spec: PlaygroundSpec,
        machine: Machine,
        alias: str,
        found: dict[str, Any] | None,
        member: str | None,
        host: str,
        nets: list[tuple[str, ipaddress.IPv4Network]],
        placed: dict[str, list[tuple[str, ipaddress.IPv4Address]]],
    ) -> RecordedMachine:
        name = config.instance_name(spec.id, machine.name)
        mine = placed[machine.name]
        net_index = {n.name: i for i, n in enumerate(spec.manifest.networks)}
        bridges = [nets[net_index[net]][0] for net, _ in mine]
        machine_subnets = [nets[net_index[net]][1] for net, _ in mine]
        gateway = machine_subnets[0].network_address + 1 if machine_subnets else None
        self._starting.add(name)
        try:
            if found is None:
                port = random.randrange(*SSH_PORTS)
                body = config.instance(
                    project=self.project,
                    playground_id=spec.id,
                    machine=machine,
                    alias=alias,
                    pool=self.settings.lxd.pool,
                    bridges=bridges,
                    addresses=[address for _, address in mine],
                    subnets=machine_subnets,
                    ssh_listen=f"tcp:{host}:{port}",
                )
                target = {"target": member} if member else {}
                async with self._create_lock:
                    await uninterrupted(
                        self.lxd.request("POST", "/1.0/instances", body=body, params=target)
                    )
                resolvers = [str(gateway)] if gateway else []
                written = machine_files(spec, machine, placed, resolvers)
                await uninterrupted(self._write_files(name, machine.image, written))
            else:
                port = _port_of(found)
                if found.get("status") in ("Running", "Frozen"):
                    return RecordedMachine(name, host, port, str(mine[0][1]) if mine else "")
                await self._set_wanted(name, "running")
            port = await uninterrupted(self._start_instance(name, host, port))
        finally:
            self._starting.discard(name)
        return RecordedMachine(name, host, port, str(mine[0][1]) if mine else "")

    async def _start_instance(self, name: str, host: str, port: int) -> int:
        """Start it; when its proxy's port is taken on the member, move to another one."""
        for _ in range(5):
            try:
                await self.lxd.request(
                    "PUT", f"/1.0/instances/{name}/state", body={"action": "start"}
                )
                return port
            except LxdError as exc:
                if "address already in use" not in str(exc).lower():
                    raise RuntimeFailure(
                        f"machine {name} did not start: {exc}", detail=await self._errors(name)
                    ) from exc
            port = random.randrange(*SSH_PORTS)
            instance = await self.lxd.get(f"/1.0/instances/{name}")
            device = instance["devices"][config.SSH_DEVICE]
            device["listen"] = f"tcp:{host}:{port}"
            await self.lxd.request(
                "PATCH", f"/1.0/instances/{name}", body={"devices": instance["devices"]}
            )
        raise RuntimeFailure(f"no free port on {host} for the SSH proxy of {name}")

    async def _errors(self, name: str) -> str:
        """The error lines of the instance's liblxc log: why it did not start."""
        try:
            log = await self.lxd.download(f"/1.0/instances/{name}/logs/lxc.log")
        except LxdError:
            return ""
        lines = log.decode(errors="replace").splitlines()
        return "\n".join(line for line in lines if " ERROR " in line)[-4000:]

    async def _write_files(self, name: str, image: str, written: list[MachineFile]) -> None:
        made: set[str] = {"/", "/etc", "/root", "/etc/ssh"}
        for each in written:
            parents = []
            parent = each.path.rsplit("/", 1)[0] or "/"
            while parent not in made:
                parents.append(parent)
                parent = parent.rsplit("/", 1)[0] or "/"
            for directory in reversed(parents):
                mode = 0o700 if directory == "/root/.ssh" else 0o755
                await self._push(name, directory, b"", mode, (0, 0), "directory")
                made.add(directory)
            ids = self._owner_ids(image, each.owner)
            await self._push(name, each.path, each.data, each.mode, ids, "file")
        # binfmt_misc cannot be mounted in an LXD container, so systemd-binfmt fails and the
        # machine would boot `degraded`; nothing in a lab needs foreign binary formats.
        mask = "/etc/systemd/system/systemd-binfmt.service"
        await self._push(name, mask, b"/dev/null", 0o777, (0, 0), "symlink")

    async def _push(
        self, name: str, path: str, data: bytes, mode: int, ids: tuple[int, int], kind: str
    ) -> None:
        headers = await self.lxd.headers(
            uid=str(ids[0]), gid=str(ids[1]), mode=f"{mode:04o}", type=kind, write="overwrite"
        )
        await self.lxd.request(
            "POST",
            f"/1.0/instances/{name}/files",
            content=data,
            params={"path": path},
            headers={"Content-Type": "application/octet-stream", **headers},
        )

    def _owner_ids(self, image: str, owner: str) -> tuple[int, int]:
        """`user[:group]` as the machine's numeric ids, read from the image's own tables."""
        user, _, group = owner.partition(":")
        if user in ("root", "0") and group in ("", "root", "0"):
            return 0, 0
        try:
            rootfs = find_image(self.settings.images_dir, image).rootfs
        except NotFound as exc:
            raise InvalidInput(
                f"a startup file owned by {owner!r} needs image {image!r}'s user table, which "
                "only a built image has; give the owner as numbers (uid:gid)"
            ) from exc
        return owner_ids(rootfs, owner)

    # -- observe -------------------------------------------------------------------------

    async def _instances(self, playground_id: str) -> dict[str, dict[str, Any]]:
        """Machine name -> the instance's record (with its status and location)."""
        return {
            machine: i
            for i in await self.lxd.get("/1.0/instances", recursion="1")
            for owner, machine in [_owner_of(i)]
            if owner == playground_id
        }

    async def status(self, playground_id: str) -> dict[str, MachineStatus]:
        _check_id(playground_id)
        found = await self._instances(playground_id)
        return {machine: self._status(machine, i) for machine, i in sorted(found.items())}

    def _status(self, machine: str, instance: dict[str, Any]) -> MachineStatus:
        status = instance.get("status")
        if status in ("Running", "Frozen"):
            return MachineStatus(MachineState.RUNNING)
        if instance["name"] in self._starting or status == "Starting":
            return MachineStatus(MachineState.PENDING)
        if status == "Error":
            where = instance.get("location") or "the server"
            return MachineStatus(
                MachineState.FAILED,
                f"the server holding machine {machine} ({where}) is unreachable",
            )
        if (instance.get("config") or {}).get(config.WANTED) == "running":
            return MachineStatus(
                MachineState.FAILED, f"machine {machine} stopped by itself (its init ended)"
            )
        return MachineStatus(MachineState.STOPPED)

    def adopt(self, playground_id: str, state: DriverState) -> DriverState:
        _check_id(playground_id)
        if state.get("driver") != "lxd" or state.get("version") != VERSION:
            raise RuntimeFailure(
                f"playground {playground_id} was not started by this lxd driver "
                f"(its state says {state.get('driver')!r}, version {state.get('version')!r})"
            )
        machines = {
            name: RecordedMachine(**recorded) for name, recorded in state["machines"].items()
        }
        self._adopted[playground_id] = machines
        return _record(playground_id, str(state.get("project", self.project)), machines)

    async def dial(
        self, playground_id: str, machine: str, port: int = 22, timeout: float = 10.0
    ) -> socket.socket:
        recorded = self._adopted.get(playground_id, {}).get(machine)
        if recorded is None:
            raise NotFound(f"machine {machine!r} of playground {playground_id} is not known here")
        if port != 22:
            raise ConnectionRefusedError(
                f"the lxd driver reaches only a machine's sshd; port {port} rides on SSH"
            )
        return await connect_tcp(recorded.host, recorded.port, timeout)

    def images(self) -> dict[str, str]:
        return {**self._built(), **self._saved}

    async def _saved_images(self) -> dict[str, str]:
        self._saved = await images.saved_images(self.lxd)
        return self._saved

    async def machine_memory(self, playground_id: str) -> dict[str, int]:
        found = await self._instances(playground_id)
        used = {}
        for machine, instance in found.items():
            state = await self.lxd.get(f"/1.0/instances/{instance['name']}/state")
            used[machine] = int(((state or {}).get("memory") or {}).get("usage", 0))
        return used

    async def list(self) -> list[str]:
        found = await self.lxd.get("/1.0/instances", recursion="1")
        ids = {_owner_of(i)[0] for i in found}
        with contextlib.suppress(LxdError):
            await self._saved_images()  # images() then knows what another process saved
        return sorted(i for i in ids if ID_PATTERN.match(i))

    # -- stop and destroy ----------------------------------------------------------------

    async def stop(self, playground_id: str, now: bool = False) -> None:
        _check_id(playground_id)
        found = await self._instances(playground_id)
        await asyncio.gather(*(self._stop_instance(i["name"], now) for i in found.values()))

    async def _stop_instance(self, name: str, now: bool) -> None:
        await self._set_wanted(name, "stopped")  # its init ending from now on is this stop's
        body = {"action": "stop", "timeout": STOP_GRACE_S, "force": now}
        try:
            await self.lxd.request("PUT", f"/1.0/instances/{name}/state", body=body)
        except LxdError as exc:
            if "already stopped" in str(exc) or exc.status == 404:
                return
            if now:
                raise
            await self.lxd.request(  # it did not halt in time
                "PUT", f"/1.0/instances/{name}/state", body={"action": "stop", "force": True}
            )

    async def _set_wanted(self, name: str, wanted: str) -> None:
        await self.lxd.request(
            "PATCH", f"/1.0/instances/{name}", body={"config": {config.WANTED: wanted}}
        )

    async def destroy(self, playground_id: str) -> None:
        _check_id(playground_id)
        found = await self._instances(playground_id)
        await asyncio.gather(*(self._delete_instance(i) for i in found.values()))
        with contextlib.suppress(LxdError):
            await self._refill()  # its bridges are free now: kept as spares, or removed
        self._adopted.pop(playground_id, None)

    async def _delete_instance(self, instance: dict[str, Any]) -> None:
        name = instance["name"]
        if instance.get("status") != "Stopped":
            with contextlib.suppress(LxdError):
                await self.lxd.request(
                    "PUT", f"/1.0/instances/{name}/state", body={"action": "stop", "force": True}
                )
        try:
            await self.lxd.request("DELETE", f"/1.0/instances/{name}")
        except LxdError as exc:
            if exc.status != 404:
                raise

    async def _delete(self, path: str) -> None:
        try:
            await self.lxd.request("DELETE", path, params={"project": DEFAULT_PROJECT})
        except LxdError as exc:
            if exc.status != 404:
                raise

    # -- a cluster -----------------------------------------------------------------------

    async def members(self) -> builtins.list[ClusterMember]:
        server = await self.lxd.server()
        instances = await self.lxd.get("/1.0/instances", recursion="1")
        per_member: dict[str, set[str]] = collections.defaultdict(set)
        for instance in instances:
            playground = _owner_of(instance)[0]
            if playground:
                per_member[str(instance.get("location") or "none")].add(str(playground))
        if not server.clustered:
            memory = await self._memory(None)
            name = "none"
            return [ClusterMember(name, (), "online", len(per_member[name]), *memory, "127.0.0.1")]
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
                    len(per_member[name]),
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

    async def playgrounds_on(self, member: str) -> builtins.list[str]:
        instances = await self.lxd.get("/1.0/instances", recursion="1")
        return sorted({_owner_of(i)[0] for i in instances if i.get("location") == member} - {""})

    async def set_evacuated(self, member: str, evacuated: bool) -> None:
        action = "evacuate" if evacuated else "restore"
        await self.lxd.request(
            "POST", f"/1.0/cluster/members/{member}/state", body={"action": action}, project=False
        )

    # -- save-as and fork ----------------------------------------------------------------

    async def save_images(
        self,
        playground_id: str,
        images_: dict[str, str],
        *,
        running: bool,
        owner: str,
        description: str,
    ) -> None:
        if playground_id not in self._adopted:
            raise NotFound(f"playground {playground_id} is not known here")
        found = await self._instances(playground_id)
        made: list[str] = []
        try:
            for machine, image in images_.items():
                await self._publish(found[machine]["name"], image, running, owner, description)
                made.append(image)
        except BaseException:
            await self._remove(made)
            raise
        await self._saved_images()

    async def _publish(
        self, name: str, image: str, running: bool, owner: str, description: str
    ) -> None:
        source: dict[str, str] = {"type": "instance", "name": name}
        if running:  # a snapshot is the machine as a power cut would leave it
            await self.lxd.request(
                "POST", f"/1.0/instances/{name}/snapshots", body={"name": "labyard-save"}
            )
            source = {"type": "snapshot", "name": f"{name}/labyard-save"}
        try:
            await self.lxd.request(
                "POST",
                "/1.0/images",
                body={
                    "source": source,
                    "public": False,
                    "compression_algorithm": "none",  # gzip of a rootfs: minutes, for a copy
                    "properties": {
                        images.SAVED: "true",
                        images.OWNER: owner,
                        "description": description,
                    },
                    "aliases": [{"name": image, "description": description}],
                },
            )
        finally:
            if running:
                with contextlib.suppress(LxdError):
                    await self.lxd.request(
                        "DELETE", f"/1.0/instances/{name}/snapshots/labyard-save"
                    )

    def remove_images(self, images_: builtins.list[str]) -> None:
        asyncio.run(self._remove_with_own_client(images_))

    async def _remove_with_own_client(self, images_: builtins.list[str]) -> None:
        # Called in a thread of its own: a client of its own, on that thread's loop.
        lxd = Lxd(self.lxd.endpoint, self.project)
        try:
            await _remove_images(lxd, images_)
        finally:
            await lxd.aclose()
        for image in images_:
            self._saved.pop(image, None)

    async def _remove(self, images_: builtins.list[str]) -> None:
        await _remove_images(self.lxd, images_)
        for image in images_:
            self._saved.pop(image, None)


async def _remove_images(lxd: Lxd, names: list[str]) -> None:
    for name in names:
        fingerprint = await images.alias_target(lxd, name)
        if fingerprint is None:
            continue
        try:
            await lxd.request("DELETE", f"/1.0/images/{fingerprint}")
        except LxdError as exc:
            if exc.status != 404:
                raise


def _roomiest(members: builtins.list[ClusterMember]) -> ClusterMember:
    return min(members, key=lambda m: (-(m.memory_free or 0), m.playgrounds, m.name))


def _owner_of(instance: dict[str, Any]) -> tuple[str, str]:
    """(playground, machine) of an instance, "" for one not labyard's. From its config, or
    from its name when the server sends none (an instance on an unreachable member)."""
    found = instance.get("config") or {}
    if config.PLAYGROUND in found:
        return str(found[config.PLAYGROUND]), str(found.get(config.MACHINE, ""))
    name = str(instance.get("name", ""))
    prefix, playground, machine = [*name.split("-", 2), "", ""][:3]
    if instance.get("config") is None and prefix == "ly" and ID_PATTERN.match(playground):
        return playground, machine
    return "", ""


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


def _check_id(playground_id: str) -> None:
    if not ID_PATTERN.match(playground_id):
        raise NotFound(f"no playground {playground_id!r}")


def _subnet_of(network: dict[str, Any]) -> ipaddress.IPv4Network | None:
    address = network.get("config", {}).get("ipv4.address", "")
    try:
        return ipaddress.IPv4Interface(address).network
    except ValueError:
        return None


def _port_of(instance: dict[str, Any]) -> int:
    listen = instance.get("devices", {}).get(config.SSH_DEVICE, {}).get("listen", "")
    return int(listen.rsplit(":", 1)[1]) if listen else 0
