"""The `lxd` driver: each machine a system container on an LXD (>= 5.0) or Incus (>= 6.0)
server or cluster, through its REST API.

A start: the image uploaded once (images.py) -> a member chosen (members.py) -> a bridge per
playground network, its ACL holding the playground's egress (bridges.py) -> per machine, an
instance made from the image with its limits, its own id range and a static address
(config.py), the files written in, then started. All of a playground's machines run on one
member. The control plane reaches each machine's sshd through a `proxy` device listening on
its member's address (`dial`): the only port it needs, since everything else rides on SSH.
Instances carry the playground's id and the project in `user.labyard.*` keys (and in their
names), which is how `list` and `destroy` find them with or without adoption.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import ipaddress
import random
import socket
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from labyard.errors import InvalidInput, NotFound, RuntimeFailure
from labyard.images import BuiltImages, find_image
from labyard.manifest import Machine
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
from labyard.runtime.lxd import config, images, instances
from labyard.runtime.lxd.bridges import Bridges
from labyard.runtime.lxd.client import Endpoint, Lxd, LxdError
from labyard.runtime.lxd.members import Members
from labyard.runtime.machine_setup import (
    MachineFile,
    addresses,
    machine_files,
    owner_ids,
)
from labyard.settings import Settings
from labyard.types import MachineState

T = TypeVar("T")

VERSION = "1"
STOP_GRACE_S = 10
SETTLE_READS = 10
SETTLE_S = 0.2
"""How long `status` waits for a machine that reads failed to read so twice in a row."""
SSH_PORTS = (20000, 60000)
"""Member ports the proxy devices to machines' sshd listen on (picked at random, again
when the one picked is taken)."""
QUOTA_POOLS = ("btrfs", "zfs", "lvm", "ceph")
"""Storage drivers that keep a root disk's `size`; `dir` ignores it with a warning."""


@dataclass(frozen=True)
class RecordedMachine:
    instance: str
    host: str
    """The member address its proxy device listens on."""
    port: int
    address: str
    """On its first playground network, for users."""


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
        self._members = Members(self.lxd)
        self._bridges = Bridges(self.lxd, self.project, self._members)
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
        found = await self._instances(spec.id, [m.name for m in manifest.machines])
        placed = await self._members.place(spec, found)
        member = placed.name if placed else None
        try:
            nets = await uninterrupted(self._bridges.ensure(spec, found, self.settings.local))
            recorded = await self._start_machines(spec, aliases, found, member, nets)
        finally:  # attached now (or rolled back): use says whose the bridges are
            for bridge in [b for b, owner in self._bridges.claimed.items() if owner == spec.id]:
                del self._bridges.claimed[bridge]
        if placed is not None:  # a cluster: spares for the next starts, while all are up
            with contextlib.suppress(LxdError):
                await self._bridges.refill(self.settings.local)
        by_name = {m.name: r for m, r in zip(manifest.machines, recorded, strict=True)}
        self._adopted[spec.id] = by_name
        endpoints = [MachineEndpoint(name, r.address) for name, r in by_name.items()]
        placed_in = placed.groups if placed else None
        return Started(endpoints, _record(spec.id, self.project, by_name), placed_in)

    async def _start_machines(
        self,
        spec: PlaygroundSpec,
        aliases: dict[str, str],
        found: dict[str, dict[str, Any]],
        member: str | None,
        nets: builtins.list[tuple[str, ipaddress.IPv4Network]],
    ) -> builtins.list[RecordedMachine]:
        placed = addresses(spec.manifest, [subnet for _, subnet in nets])
        host = await self._members.listen_host(member)
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
                mode = each.folder_mode if directory == parents[0] else 0o755
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

    async def _instances(
        self, playground_id: str, machines: builtins.list[str] | None = None
    ) -> dict[str, dict[str, Any]]:
        """Machine name -> the instance's record (with its status and location). The machines
        are the start's, or those adopted, or else whatever instances carry the id."""
        if machines is None and playground_id in self._adopted:
            machines = builtins.list(self._adopted[playground_id])
        return await instances.of_playground(self.lxd, playground_id, machines)

    async def status(self, playground_id: str) -> dict[str, MachineStatus]:
        _check_id(playground_id)
        found = await self._instances(playground_id)
        for _ in range(SETTLE_READS):
            # A failure is read twice: Incus 6.0 reads a container whose init died as
            # stopped, then running for half a second, then stopped for good. (Not those
            # on an unreachable member: they read `Error`, with no config, at once.)
            failing = {m for m, i in found.items() if self._dead(m, i)}
            if not failing:
                break
            await asyncio.sleep(SETTLE_S)
            found = await self._instances(playground_id)
            if all(self._dead(m, found[m]) for m in failing if m in found):
                break
        return {machine: self._status(machine, i) for machine, i in sorted(found.items())}

    def _dead(self, machine: str, instance: dict[str, Any]) -> bool:
        """It reads failed, on a member that answers."""
        failed = self._status(machine, instance).state == MachineState.FAILED
        return failed and not instances.unreachable(instance)

    def _status(self, machine: str, instance: dict[str, Any]) -> MachineStatus:
        status = instance.get("status")
        if status in ("Running", "Frozen"):
            return MachineStatus(MachineState.RUNNING)
        if instance["name"] in self._starting or status == "Starting":
            return MachineStatus(MachineState.PENDING)
        if status == "Error" and instances.unreachable(instance):
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
        ids = {config.owner_by_name(name)[0] for name in await instances.names(self.lxd)}
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
        """Delete its instances. Those on an unreachable member are left: no playground owns
        them any more, so the reconciler removes them once their member is back (`list`
        names them), and a learner is not kept waiting on a server that is gone."""
        _check_id(playground_id)
        found = await self._instances(playground_id)
        reachable = [i for i in found.values() if not instances.unreachable(i)]
        await asyncio.gather(*(self._delete_instance(i) for i in reachable))
        with contextlib.suppress(LxdError):
            await self._bridges.refill(
                self.settings.local
            )  # its bridges are free now: kept as spares, or removed
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

    # -- a cluster -----------------------------------------------------------------------

    async def members(self) -> builtins.list[ClusterMember]:
        return await self._members.members()

    async def playgrounds_on(self, member: str) -> builtins.list[str]:
        return await self._members.playgrounds_on(member)

    async def set_evacuated(self, member: str, evacuated: bool) -> None:
        await self._members.set_evacuated(member, evacuated)

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


def _check_id(playground_id: str) -> None:
    if not ID_PATTERN.match(playground_id):
        raise NotFound(f"no playground {playground_id!r}")


def _port_of(instance: dict[str, Any]) -> int:
    listen = instance.get("devices", {}).get(config.SSH_DEVICE, {}).get("listen", "")
    return int(listen.rsplit(":", 1)[1]) if listen else 0
