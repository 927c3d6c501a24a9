"""What every driver gives a machine before it boots, the same whatever runs it: its
addresses on the playground's networks, and the files written into it (hostname, hosts,
resolvers, the pinned host key, the control plane's key, the manifest's startup files)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from labyard.errors import InvalidInput
from labyard.images.layers import resolve_inside
from labyard.manifest import Machine, Manifest
from labyard.runtime.base import PlaygroundSpec

Addresses = dict[str, list[tuple[str, ipaddress.IPv4Address]]]
"""Machine -> [(network, address)], in the order of its interfaces."""


@dataclass(frozen=True)
class MachineFile:
    path: str
    data: bytes
    mode: int = 0o644
    owner: str = "root"
    """A user of the machine (`user` or `user:group`, names or numbers)."""
    folder_mode: int = 0o755
    """Of the folder it is in, when that is made for it (other folders made are 0755; all are
    root's; a folder the image has is left as it is)."""


def addresses_needed(manifest: Manifest, network_name: str) -> int:
    """How many machine addresses (`.2 + manifest index`, see `addresses`) a network spans: up
    to its highest-indexed machine, so machines 0 and 14 alone on a network still need 15."""
    attached = [
        index
        for index, machine in enumerate(manifest.machines)
        if network_name in [n.name for n in manifest.machine_networks(machine.name)]
    ]
    return max(attached, default=-1) + 1


def addresses(manifest: Manifest, subnets: list[ipaddress.IPv4Network]) -> Addresses:
    """Each machine's address on each of its networks: `.2 + its index in the manifest` (the
    gateway is `.1`), so a machine keeps its addresses however often it starts."""
    result: Addresses = {}
    net_index = {n.name: i for i, n in enumerate(manifest.networks)}
    for index, machine in enumerate(manifest.machines):
        result[machine.name] = [
            (n.name, subnets[net_index[n.name]].network_address + 2 + index)
            for n in manifest.machine_networks(machine.name)
        ]
    return result


def hosts_file(machine: str, addresses: Addresses) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    mine = {net for net, _ in addresses[machine]}
    for other, attached in addresses.items():
        shared = [addr for net, addr in attached if net in mine]
        if shared:
            lines.append(f"{shared[0]}\t{other}")
    return "\n".join(lines) + "\n"


def host_resolvers() -> list[str]:
    """The host's upstream resolvers; a loopback one would be the machine's own loopback."""
    try:
        host = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        host = []
    return [
        line.split()[1]
        for line in host
        if line.startswith("nameserver")
        and len(line.split()) > 1
        and not line.split()[1].startswith(("127.", "::1"))
    ]


def machine_files(
    spec: PlaygroundSpec, machine: Machine, addresses: Addresses, resolvers: list[str]
) -> list[MachineFile]:
    """Every file written into `machine` before it boots, parents first where it matters."""
    resolv = "".join(f"nameserver {server}\n" for server in resolvers)
    written = [
        MachineFile("/etc/hostname", f"{machine.name}\n".encode()),
        MachineFile("/etc/hosts", hosts_file(machine.name, addresses).encode()),
        MachineFile("/etc/resolv.conf", resolv.encode()),
        MachineFile("/etc/ssh/ssh_host_ed25519_key", spec.host_keys[machine.name].encode(), 0o600),
        MachineFile(
            "/root/.ssh/authorized_keys", f"{spec.authorized_key}\n".encode(), 0o600, "root", 0o700
        ),
    ]
    written += [MachineFile(f.path, f.data(), int(f.mode, 8), f.owner) for f in machine.files]
    return written


def owner_ids(rootfs: Path, owner: str) -> tuple[int, int]:
    """`user[:group]` (names or numbers) as numeric ids, from the image's own tables; the
    user's primary group when no group is given."""
    user, _, group = owner.partition(":")
    uid = _lookup(rootfs, "passwd", user)
    gid = _lookup(rootfs, "group", group) if group else _primary_gid(rootfs, user, uid)
    return uid, gid


def _table(rootfs: Path, table: str) -> list[list[str]]:
    path = resolve_inside(rootfs, list(PurePosixPath("/etc", table).parts[1:]), f"/etc/{table}")
    return [line.split(":") for line in path.read_text().splitlines()]


def _lookup(rootfs: Path, table: str, name: str) -> int:
    if name.isdigit():
        return int(name)
    for fields in _table(rootfs, table):
        if fields[0] == name:
            return int(fields[2])
    raise InvalidInput(f"no {'user' if table == 'passwd' else 'group'} {name!r} in the machine")


def _primary_gid(rootfs: Path, user: str, uid: int) -> int:
    for fields in _table(rootfs, "passwd"):
        if fields[0] == user or fields[2] == str(uid):
            return int(fields[3])
    return uid
