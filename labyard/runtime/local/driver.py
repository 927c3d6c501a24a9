"""The `local` driver: each machine a runc system container on this host.

Start order for one machine: disk (ext4 file, the disk limit) -> overlayfs root -> netns and
veths on the playground's bridges -> files written in (hostname, hosts, keys, startup files)
-> config.json -> `runc run --detach`. Every step is idempotent, which is what lets `start`
bring a stopped playground back and `destroy` clean up after a start that died half-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import shutil
import signal
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from labyard.errors import NotFound, RuntimeFailure
from labyard.images import Image, find_image
from labyard.manifest import Machine, Manifest
from labyard.runtime.base import (
    ID_PATTERN,
    Driver,
    MachineEndpoint,
    MachineState,
    PlaygroundSpec,
    Started,
)
from labyard.runtime.local import cgroups, egress, files, firewall, host_limits, network, storage
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
from labyard.settings import Settings

T = TypeVar("T")

STOP_GRACE_S = 10.0
"""How long systemd in a machine gets to shut down cleanly before it is killed."""


class LocalDriver(Driver):
    name = "local"
    version = "1"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runc = Runc(settings.runc_root)
        self.table = nft_table(settings.instance)
        self.ids = Registry(settings.id_ranges_dir)
        storage.make_traversable(settings.playgrounds_dir)
        host_limits.raise_host_limits()

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
        subnets = await _uninterrupted(asyncio.to_thread(self._ensure_networks, names, manifest))
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
        return Started(list(endpoints), self._saved_state(names, manifest, images, subnets))

    def _ensure_networks(self, names: HostNames, manifest: Manifest) -> list[ipaddress.IPv4Network]:
        """A bridge per network, its block sized for the machine addresses it must hold."""
        resolvers = [line.split()[1] for line in _resolv_conf().splitlines()]
        policy = egress.policy(manifest.egress, self.settings.egress_allow, resolvers)
        subnets = []
        for index, net in enumerate(manifest.networks):
            hosts = _machine_addresses_needed(manifest, net.name)
            subnet = network.ensure_bridge(names, index, self.settings.subnet_pool, hosts)
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
        state = await self.runc.state(container)
        address = _addresses(spec.manifest, subnets)[machine.name][0][1]
        if state is not None and state.get("status") == "running":
            return MachineEndpoint(machine.name, str(address))
        if state is not None:
            await self.runc.delete(container)
        bundle, ids = await _uninterrupted(
            asyncio.to_thread(self._prepare_machine, names, spec, index, machine, image, subnets)
        )
        await _uninterrupted(self._run_machine(container, bundle, ids))
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
        _write_machine_files(rootfs, spec, machine, _addresses(spec.manifest, subnets), ids)
        config = machine_config(
            machine,
            ids=ids,
            userns=userns_path,
            netns=network.NETNS_DIR / netns_name,
            cgroup=names.cgroup(machine.name),
            volumes={v: storage.volume_dir(bundle, v) for v in volumes},
            nodes=storage.device_nodes(bundle, devices(self.settings.kvm), ids),
            kvm=self.settings.kvm,
        )
        (bundle / "config.json").write_text(json.dumps(config, indent=1))
        return bundle, ids

    def _saved_state(
        self,
        names: HostNames,
        manifest: Manifest,
        images: dict[str, Image],
        subnets: list[ipaddress.IPv4Network],
    ) -> dict[str, Any]:
        return {
            "driver": self.name,
            "version": self.version,
            "instance": self.settings.instance,
            "networks": [
                {"name": n.name, "bridge": names.bridge(i), "subnet": str(subnets[i])}
                for i, n in enumerate(manifest.networks)
            ],
            "machines": [
                {
                    "name": m.name,
                    "container": names.container(m.name),
                    "netns": names.netns(m.name),
                    "image": f"{m.image}-{images[m.image].digest}",
                }
                for m in manifest.machines
            ],
        }

    # -- observe -------------------------------------------------------------------------

    def _machine_names(self, names: HostNames) -> list[str]:
        machines = names.dir / "machines"
        return sorted(p.name for p in machines.iterdir()) if machines.exists() else []

    async def status(self, playground_id: str) -> dict[str, MachineState]:
        names = self._names(playground_id)
        machines = self._machine_names(names)
        states = await asyncio.gather(*(self._machine_state(names, m) for m in machines))
        return dict(zip(machines, states, strict=True))

    async def _machine_state(self, names: HostNames, machine: str) -> MachineState:
        state = await self.runc.state(names.container(machine))
        if state is not None and state.get("status") == "running":
            return MachineState.RUNNING
        if (names.machine_dir(machine) / "disk.img").exists():
            return MachineState.STOPPED
        return MachineState.MISSING

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
        if not now and await self.runc.state(container) is not None:
            await self.runc.kill(container, str(signal.SIGRTMIN + 3))  # systemd: halt cleanly
            for _ in range(int(STOP_GRACE_S / 0.1)):
                state = await self.runc.state(container)
                if state is None or state.get("status") == "stopped":
                    break
                await asyncio.sleep(0.1)
        await self.runc.delete(container)
        await asyncio.to_thread(storage.unmount_all, names.machine_dir(machine))

    async def destroy(self, playground_id: str) -> None:
        names = self._names(playground_id)
        instance = self.settings.instance
        containers = [
            c for c in await self.runc.list() if playground_of_container(c) == playground_id
        ]
        await asyncio.gather(*(self.runc.delete(c) for c in containers))
        await asyncio.to_thread(self._destroy_host_side, names, instance)

    def _destroy_host_side(self, names: HostNames, instance: str) -> None:
        storage.unmount_all(names.dir)
        pg_prefix = f"{netns_prefix(instance)}{names.playground_id}-"
        for ns in network.list_netns(pg_prefix):
            network.remove_netns(ns)
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
            if storage.mounted_under(names.dir):
                raise RuntimeFailure(f"playground {names.playground_id}: a mount is still busy")
            shutil.rmtree(names.dir)
        self.ids.release(names.id_owner(""))  # only once nothing owned by them is left


async def _uninterrupted(step: Awaitable[T]) -> T:
    """Await a host-changing step to its end even when cancelled, then pass the cancel on.

    A cancelled to_thread() or subprocess keeps running unseen; a rollback started meanwhile
    would race it (mounting after the unmount, a container appearing after the delete).
    """
    task = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():  # gather() and its caller may cancel more than once
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([task])
        raise


def _machine_addresses_needed(manifest: Manifest, network_name: str) -> int:
    """How many machine addresses (`.2 + manifest index`, see _addresses) a network spans: up
    to its highest-indexed machine, so machines 0 and 14 alone on a network still need 15."""
    attached = [
        index
        for index, machine in enumerate(manifest.machines)
        if network_name in [n.name for n in manifest.machine_networks(machine.name)]
    ]
    return max(attached, default=-1) + 1


def _addresses(
    manifest: Manifest, subnets: list[ipaddress.IPv4Network]
) -> dict[str, list[tuple[str, ipaddress.IPv4Address]]]:
    """Machine -> [(network, address)] in the order of its interfaces."""
    result: dict[str, list[tuple[str, ipaddress.IPv4Address]]] = {}
    net_index = {n.name: i for i, n in enumerate(manifest.networks)}
    for index, machine in enumerate(manifest.machines):
        result[machine.name] = [
            (n.name, subnets[net_index[n.name]].network_address + 2 + index)
            for n in manifest.machine_networks(machine.name)
        ]
    return result


def _hosts_file(machine: str, addresses: dict[str, list[tuple[str, ipaddress.IPv4Address]]]) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    mine = {net for net, _ in addresses[machine]}
    for other, attached in addresses.items():
        shared = [addr for net, addr in attached if net in mine]
        if shared:
            lines.append(f"{shared[0]}\t{other}")
    return "\n".join(lines) + "\n"


def _resolv_conf() -> str:
    """The host's upstream resolvers; a loopback one would be the machine's own loopback."""
    try:
        host = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        host = []
    servers = [
        line
        for line in host
        if line.startswith("nameserver") and not line.split()[1].startswith(("127.", "::1"))
    ]
    return "\n".join(servers) + "\n"


def _write_machine_files(
    rootfs: Path,
    spec: PlaygroundSpec,
    machine: Machine,
    addresses: dict[str, list[tuple[str, ipaddress.IPv4Address]]],
    ids: IdRange,
) -> None:
    host_key = spec.host_keys[machine.name]
    files.write(rootfs, "/etc/hostname", machine.name + "\n", ids=ids)
    files.write(rootfs, "/etc/hosts", _hosts_file(machine.name, addresses), ids=ids)
    files.write(rootfs, "/etc/resolv.conf", _resolv_conf(), ids=ids)
    files.write(rootfs, "/etc/ssh/ssh_host_ed25519_key", host_key, mode=0o600, ids=ids)
    files.write(
        rootfs, "/root/.ssh/authorized_keys", spec.authorized_key + "\n", mode=0o600, ids=ids
    )
    (files.inside(rootfs, "/root/.ssh")).chmod(0o700)
    for startup in machine.files:
        files.write(
            rootfs, startup.path, startup.data(), int(startup.mode, 8), startup.owner, ids=ids
        )
