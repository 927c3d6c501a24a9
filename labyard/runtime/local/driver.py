"""The `local` driver: each machine a runc system container on this host.

Start order for one machine: disk (ext4 file, the disk limit) -> overlayfs root -> netns and
veths on the playground's bridges -> files written in (hostname, hosts, keys, startup files)
-> config.json -> `runc run --detach`. Every step is idempotent, which is what lets `start`
bring a stopped playground back and `destroy` clean up after a start that died half-way.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import shutil
import signal
import socket
from pathlib import Path
from typing import TypeVar

from labyard.errors import NotFound, RuntimeFailure
from labyard.images import BuiltImages, Image, find_image
from labyard.manifest import Machine, Manifest
from labyard.runtime import egress
from labyard.runtime.base import (
    ID_PATTERN,
    Driver,
    DriverState,
    MachineEndpoint,
    MachineStatus,
    PlaygroundSpec,
    Started,
)
from labyard.runtime.dialing import connect_tcp, uninterrupted
from labyard.runtime.local import (
    cgroups,
    files,
    firewall,
    host_limits,
    network,
    saving,
    state,
    storage,
)
from labyard.runtime.local.idmap import IdRange, Registry
from labyard.runtime.local.names import (
    HostNames,
    cgroup_parent,
    netns_prefix,
    nft_table,
    playground_of_container,
)
from labyard.runtime.local.oci import devices, machine_config
from labyard.runtime.local.runc import Runc
from labyard.runtime.machine_setup import (
    Addresses,
    addresses,
    addresses_needed,
    host_resolvers,
    machine_files,
)
from labyard.settings import Settings
from labyard.types import MachineState

T = TypeVar("T")

STOP_GRACE_S = 10.0
"""How long systemd in a machine gets to shut down cleanly before it is killed."""
STOPPING = "stopping"
"""In a machine's directory while a stop is under way (by any process): its init ending
then is the stop's doing, and the machine reads `stopped`, never `failed`."""


class LocalDriver(Driver):
    name = "local"
    version = state.VERSION

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runc = Runc(settings.runc_root)
        self.table = nft_table(settings.instance)
        self.ids = Registry(settings.local.id_ranges_dir)
        self._adopted: dict[str, state.Recorded] = {}
        self._built = BuiltImages(settings.images_dir)
        self._starting: set[str] = set()
        """Containers this process is making right now: pending, not stopped."""
        storage.make_traversable(settings.playgrounds_dir)
        host_limits.raise_host_limits()
        network.share_namespace_dir()

    def _names(self, playground_id: str) -> HostNames:
        if not ID_PATTERN.match(playground_id):
            raise NotFound(f"no playground {playground_id!r}")
        return HostNames(self.settings.instance, playground_id, self.settings.playgrounds_dir)

    # -- start ---------------------------------------------------------------------------

    async def start(self, spec: PlaygroundSpec) -> Started:
        names = self._names(spec.id)
        manifest = spec.manifest
        images = {m.image: find_image(self.settings.images_dir, m.image) for m in manifest.machines}
        names.dir.mkdir(parents=True, exist_ok=True)
        subnets = await uninterrupted(asyncio.to_thread(self._ensure_networks, names, manifest))
        machines = [
            asyncio.ensure_future(
                self._start_machine(names, spec, index, machine, images[machine.image], subnets)
            )
            for index, machine in enumerate(manifest.machines)
        ]
        try:
            endpoints = await asyncio.gather(*machines)
        except BaseException:
            for task in machines:  # gather leaves the others running on a failure
                task.cancel()
            await asyncio.wait(machines)  # so the rollback that follows does not race them
            raise
        recorded = state.record(
            self.settings.instance, names, manifest, images, subnets, list(endpoints)
        )
        self._adopted[spec.id] = recorded
        return Started(list(endpoints), recorded.to_json())

    def _ensure_networks(self, names: HostNames, manifest: Manifest) -> list[ipaddress.IPv4Network]:
        """A bridge per network, its block sized for the machine addresses it must hold."""
        resolvers = host_resolvers()
        policy = egress.policy(manifest.egress, self.settings.local.egress_allow, resolvers)
        subnets = []
        for index, net in enumerate(manifest.networks):
            hosts = addresses_needed(manifest, net.name)
            subnet = network.ensure_bridge(names, index, self.settings.local.subnet_pool, hosts)
            firewall.add_bridge(self.table, names.bridge(index), subnet, policy)
            subnets.append(subnet)
        return subnets

    async def _start_machine(
        self,
        names: HostNames,
        spec: PlaygroundSpec,
        index: int,
        machine: Machine,
        image: Image,
        subnets: list[ipaddress.IPv4Network],
    ) -> MachineEndpoint:
        container = names.container(machine.name)
        found = await self.runc.state(container)
        address = addresses(spec.manifest, subnets)[machine.name][0][1]
        if found is not None and found.get("status") in ("running", "created", "paused"):
            return MachineEndpoint(machine.name, str(address))  # up, or another start's
        if found is not None:
            await self.runc.delete(container)
        self._starting.add(container)
        try:
            bundle, ids = await uninterrupted(
                asyncio.to_thread(
                    self._prepare_machine, names, spec, index, machine, image, subnets
                )
            )
            await uninterrupted(self._run_machine(container, bundle, ids))
        finally:
            self._starting.discard(container)
        return MachineEndpoint(machine.name, str(address))

    async def _run_machine(self, container: str, bundle: Path, ids: IdRange) -> None:
        """runc create, hand the machine its cgroups, then let systemd run."""
        pid = await self.runc.create(container, bundle, bundle / "console.log")
        await asyncio.to_thread(cgroups.delegate, pid, ids.host(0), ids.host(0))
        await self.runc.start(container)

    def _prepare_machine(
        self,
        names: HostNames,
        spec: PlaygroundSpec,
        index: int,
        machine: Machine,
        image: Image,
        subnets: list[ipaddress.IPv4Network],
    ) -> tuple[Path, IdRange]:
        bundle = names.machine_dir(machine.name)
        bundle.mkdir(parents=True, exist_ok=True)
        ids = self.ids.allocate(names.id_owner(machine.name))
        userns_path = names.userns(machine.name)
        netns_name = names.netns(machine.name)
        network.ensure_namespaces(netns_name, userns_path, ids)
        storage.mount_disk(bundle, machine.disk)
        volumes = image.recipe.machine.volumes
        rootfs = storage.mount_rootfs(bundle, image.rootfs, volumes, ids, userns_path)
        for net in spec.manifest.machine_networks(machine.name):
            net_index = [n.name for n in spec.manifest.networks].index(net.name)
            network.attach(names, index, netns_name, net_index, subnets[net_index])
        _write_machine_files(rootfs, spec, machine, addresses(spec.manifest, subnets), ids)
        config = machine_config(
            machine,
            ids=ids,
            userns=userns_path,
            netns=network.NETNS_DIR / netns_name,
            cgroup=names.cgroup(machine.name),
            volumes={v: storage.volume_dir(bundle, v) for v in volumes},
            nodes=storage.device_nodes(bundle, devices(self.settings.local.kvm), ids),
            kvm=self.settings.local.kvm,
        )
        (bundle / "config.json").write_text(json.dumps(config, indent=1))
        return bundle, ids

    # -- observe -------------------------------------------------------------------------

    def _machine_names(self, names: HostNames) -> list[str]:
        machines = names.dir / "machines"
        return sorted(p.name for p in machines.iterdir()) if machines.exists() else []

    async def status(self, playground_id: str) -> dict[str, MachineStatus]:
        names = self._names(playground_id)
        machines = self._machine_names(names)
        states = await asyncio.gather(*(self._machine_status(names, m) for m in machines))
        return dict(zip(machines, states, strict=True))

    async def _machine_status(self, names: HostNames, machine: str) -> MachineStatus:
        container = names.container(machine)
        found = await self.runc.state(container)
        status = found.get("status") if found is not None else None
        if status in ("running", "paused"):  # paused: frozen for a moment by a save
            return MachineStatus(MachineState.RUNNING)
        if status == "created" or container in self._starting:
            return MachineStatus(MachineState.PENDING)
        if status == "stopped" and not (names.machine_dir(machine) / STOPPING).exists():
            console = names.machine_dir(machine) / "console.log"  # its init ended by itself
            return MachineStatus(MachineState.FAILED, state.ended_by_itself(machine, console))
        if (names.machine_dir(machine) / "disk.img").exists():
            return MachineStatus(MachineState.STOPPED)
        return MachineStatus(MachineState.MISSING)

    def adopt(self, playground_id: str, saved: DriverState) -> DriverState:
        names = self._names(playground_id)
        recorded = state.load(saved, names)
        self._adopted[playground_id] = recorded
        return recorded.to_json()

    async def dial(
        self, playground_id: str, machine: str, port: int = 22, timeout: float = 10.0
    ) -> socket.socket:
        recorded = self._adopted.get(playground_id)
        address = recorded.address(machine) if recorded else None
        if address is None:
            raise NotFound(f"machine {machine!r} of playground {playground_id} is not known here")
        return await connect_tcp(address, port, timeout)

    def images(self) -> dict[str, str]:
        return self._built()

    async def save_images(
        self,
        playground_id: str,
        images: dict[str, str],
        *,
        running: bool,
        owner: str,
        description: str,
    ) -> None:
        recorded = self._adopted.get(playground_id)
        if recorded is None:
            raise NotFound(f"playground {playground_id} is not known here")
        await asyncio.to_thread(
            saving.save_images,
            self.settings,
            playground_id,
            recorded,
            images,
            running=running,
            owner=owner,
            description=description,
        )

    def remove_images(self, images: list[str]) -> None:
        saving.remove_images(self.settings.images_dir, images)

    async def machine_memory(self, playground_id: str) -> dict[str, int]:
        names = self._names(playground_id)
        parent = cgroup_parent(self.settings.instance)
        return {
            m: cgroups.memory_in_use(parent, names.container(m)) for m in self._machine_names(names)
        }

    async def list(self) -> list[str]:
        ids = {playground_of_container(c) for c in await self.runc.list()}
        ids |= await asyncio.to_thread(self._host_side_ids)
        return sorted(i for i in ids if ID_PATTERN.match(i))

    def _host_side_ids(self) -> set[str]:
        instance = self.settings.instance
        prefix = netns_prefix(instance)
        ids = {n[len(prefix) :].split("-", 1)[0] for n in network.list_netns(prefix)}
        aliases = network.links_with_alias(f"labyard:{instance}:").values()
        ids |= {alias.split(":")[2] for alias in aliases}
        ids |= {bridge[3:11] for bridge in firewall.bridges_with_rules(self.table)}
        if self.settings.playgrounds_dir.exists():
            ids |= {p.name for p in self.settings.playgrounds_dir.iterdir()}
        for parent in cgroups.parents(cgroup_parent(instance)):
            ids |= {playground_of_container(p.name) for p in parent.iterdir() if p.is_dir()}
        ids |= {owner.split("/")[1] for owner in self.ids.owners(f"{instance}/")}
        return ids

    # -- stop and destroy ----------------------------------------------------------------

    async def stop(self, playground_id: str, now: bool = False) -> None:
        names = self._names(playground_id)
        await asyncio.gather(
            *(self._stop_machine(names, machine, now) for machine in self._machine_names(names))
        )

    async def _stop_machine(self, names: HostNames, machine: str, now: bool) -> None:
        container = names.container(machine)
        stopping = names.machine_dir(machine) / STOPPING
        if names.machine_dir(machine).exists():
            stopping.touch()  # its init ending from now on is this stop's doing, not a failure
        if not now and await self.runc.state(container) is not None:
            await self.runc.kill(container, str(signal.SIGRTMIN + 3))  # systemd: halt cleanly
            for _ in range(int(STOP_GRACE_S / 0.1)):
                found = await self.runc.state(container)
                if found is None or found.get("status") == "stopped":
                    break
                await asyncio.sleep(0.1)
        await self.runc.delete(container)
        await asyncio.to_thread(storage.unmount_all, names.machine_dir(machine))
        stopping.unlink(missing_ok=True)

    async def destroy(self, playground_id: str) -> None:
        names = self._names(playground_id)
        instance = self.settings.instance
        containers = [
            c for c in await self.runc.list() if playground_of_container(c) == playground_id
        ]
        await asyncio.gather(*(self.runc.delete(c) for c in containers))
        await asyncio.to_thread(self._destroy_host_side, names, instance)
        self._adopted.pop(playground_id, None)

    def _destroy_host_side(self, names: HostNames, instance: str) -> None:
        # Copies of the mounts that other mount namespaces hold (PrivateTmp= services,
        # `unshare -m`) are theirs: they stop nothing here. Only a mount of this namespace
        # hidden under another one (`ip netns add` binds /run/netns over itself) keeps its
        # file. That inert rest stays, and the id range with it, so list() reports the
        # playground until the reconciler's orphan pass, destroying again, can remove it.
        hidden = storage.unmount_all(names.dir)
        pg_prefix = f"{netns_prefix(instance)}{names.playground_id}-"
        released = [network.remove_netns(ns) for ns in network.list_netns(pg_prefix)]
        links = network.links_with_alias(names.link_alias)
        for link in links:
            network.remove_link(link)
        bridges = [
            b for b in firewall.bridges_with_rules(self.table) if b[3:11] == names.playground_id
        ]
        firewall.remove_bridges(self.table, bridges)
        for parent in cgroups.parents(cgroup_parent(instance)):
            for child in parent.glob(f"{names.playground_id}-*"):
                cgroups.remove_tree(child)
        if names.dir.exists():
            if set(storage.mounted_under(names.dir)) - set(hidden):  # rmtree would empty it
                raise RuntimeFailure(f"playground {names.playground_id}: a mount is still busy")
            shutil.rmtree(names.dir, onerror=storage.leave_held)
        if all(released) and not names.dir.exists():
            self.ids.release(names.id_owner(""))  # only once nothing owned by them is left


def _write_machine_files(
    rootfs: Path,
    spec: PlaygroundSpec,
    machine: Machine,
    addresses: Addresses,
    ids: IdRange,
) -> None:
    for written in machine_files(spec, machine, addresses, host_resolvers()):
        files.write(
            rootfs,
            written.path,
            written.data,
            written.mode,
            written.owner,
            ids=ids,
            folder_mode=written.folder_mode,
        )
