"""What the driver asks LXD for, as the request bodies of `/1.0`: a machine's instance, a
playground network's bridge and the network ACL that is its egress policy. Pure functions:
nothing here talks to a server.

Names: instances `ly-<playground>-<machine>` (LXD refuses names that start with a digit)
in the driver's project; bridges `lyx<9 random>` and their ACLs `lya<the same>` in the
default project, where bridges must live, marked with the project they serve. A bridge
serves one playground at a time (the one whose machines are attached); its ACL holds that
playground's egress.
"""

from __future__ import annotations

import ipaddress
import math
import secrets
from collections.abc import Iterable
from typing import Any

from labyard.manifest import Machine
from labyard.runtime import seccomp
from labyard.runtime.base import ID_ALPHABET, ID_PATTERN
from labyard.runtime.egress import BLOCKED, Policy

DEFAULT_PROJECT = "default"
"""Where bridges and ACLs live: LXD makes only OVN networks inside other projects."""

PLAYGROUND = "user.labyard.playground"
MACHINE = "user.labyard.machine"
PROJECT = "user.labyard.project"
WANTED = "user.labyard.wanted"
"""`running` from the start that made or started it until a stop says `stopped`: an
instance that is not running while this says `running` ended by itself (`failed`)."""
EGRESS = "user.labyard.egress"
"""On a bridge's ACL: which egress it holds (bridges.egress_key)."""
SSH_DEVICE = "labyard-ssh"
"""The proxy device through which the control plane reaches the machine's sshd."""
INTERNET = ipaddress.IPv4Network("0.0.0.0/0")


def instance_name(playground_id: str, machine: str) -> str:
    return f"ly-{playground_id}-{machine}"


def new_bridge_name() -> str:
    # Not `lyb`: the local driver's nftables rules match its bridges by that prefix, and a
    # host may run both drivers. Bridges are reused by one playground after another, so
    # their names say nothing of a playground.
    return "lyx" + "".join(secrets.choice(ID_ALPHABET) for _ in range(9))


def acl_of(bridge: str) -> str:
    """The ACL of a bridge: its egress rules, the playground that holds it."""
    return "lya" + bridge[3:]


def instance(
    *,
    project: str,
    playground_id: str,
    machine: Machine,
    alias: str,
    pool: str,
    bridges: list[str],
    addresses: list[ipaddress.IPv4Address],
    subnets: list[ipaddress.IPv4Network],
    ssh_listen: str,
) -> dict[str, Any]:
    """The body of `POST /1.0/instances` for one machine: its limits, its own id range, its
    static addresses (set by liblxc before init, as the local driver does: no DHCP), its disk
    and the proxy device to its sshd."""
    devices: dict[str, dict[str, str]] = {
        "root": {"type": "disk", "path": "/", "pool": pool, "size": f"{machine.disk}B"},
        # The local driver's fixed device set beyond LXD's own: VPNs and FUSE filesystems.
        "tun": {"type": "unix-char", "path": "/dev/net/tun"},
        "fuse": {"type": "unix-char", "path": "/dev/fuse"},
        SSH_DEVICE: {
            "type": "proxy",
            "listen": ssh_listen,
            "connect": "tcp:127.0.0.1:22",
            "bind": "host",
        },
    }
    raw_lxc = []
    for index, (bridge, address, subnet) in enumerate(
        zip(bridges, addresses, subnets, strict=True)
    ):
        devices[f"eth{index}"] = {
            "type": "nic",
            "nictype": "bridged",
            "parent": bridge,
            "name": f"eth{index}",
        }
        raw_lxc.append(f"lxc.net.{index}.ipv4.address = {address}/{subnet.prefixlen}")
        if index == 0:
            raw_lxc.append(f"lxc.net.0.ipv4.gateway = {subnet.network_address + 1}")
    return {
        "name": instance_name(playground_id, machine.name),
        "type": "container",
        "source": {"type": "image", "alias": alias},
        "config": {
            PLAYGROUND: playground_id,
            MACHINE: machine.name,
            PROJECT: project,
            WANTED: "running",
            "security.idmap.isolated": "true",
            "cluster.evacuate": "stop",  # labyard stops them first (services/cluster)
            "security.nesting": "true",  # dockerd, podman and k3s run their own containers
            "limits.memory": f"{machine.memory}B",
            "limits.memory.swap": "false",
            "limits.cpu": str(max(1, math.ceil(machine.cpus))),
            "limits.cpu.allowance": f"{max(1, round(machine.cpus * 100))}ms/100ms",
            "limits.processes": str(machine.processes),
            "raw.lxc": "\n".join(raw_lxc),
            "raw.seccomp": seccomp.lxc_policy(),  # the local driver's allow-list
        },
        "devices": devices,
    }


def bridge(*, project: str, name: str, subnet: ipaddress.IPv4Network) -> dict[str, Any]:
    """A bridge for playground networks, one playground at a time: no DHCP (addresses are
    static), no IPv6, NAT out, and its ACL the only way out (anything it does not allow is
    rejected)."""
    return {
        "name": name,
        "type": "bridge",
        "config": {
            PROJECT: project,
            "ipv4.address": f"{subnet.network_address + 1}/{subnet.prefixlen}",
            "ipv4.nat": "true",
            "ipv4.dhcp": "false",
            "ipv6.address": "none",
            "security.acls": acl_of(name),
            "security.acls.default.egress.action": "reject",
            "security.acls.default.ingress.action": "reject",
        },
    }


def acl(
    *,
    project: str,
    key: str,
    subnet: ipaddress.IPv4Network,
    policy: Policy | None,
    never: Iterable[ipaddress.IPv4Network],
) -> dict[str, Any]:
    """The egress policy as allow rules only: LXD applies every reject before any allow, so
    the exceptions the operator grants inside BLOCKED are cut into the allowed ranges rather
    than layered on top. `never` (the member's own addresses, every playground's subnets) is
    cut out of everything, the operator's exceptions included.

    LXD filters traffic between instances on one bridge too: the playground's own network
    is allowed both ways, all of it but the gateway (the host), egress or not."""
    gateway = ipaddress.IPv4Network(f"{subnet.network_address + 1}/32")
    neighbours = _without(subnet, [gateway])
    rules = _allow(neighbours, None)
    if policy is not None:
        never = list(never)
        for target in policy.allowed:
            rules += _allow(_without(target.network, never), target.port)
        if policy.only is None:
            open_ = _without(INTERNET, [*BLOCKED, *never])
            rules += _allow(open_, None)
        else:
            for target in policy.only:
                rules += _allow(_without(target.network, [*BLOCKED, *never]), target.port)
        for resolver in policy.resolvers:
            rules += _allow([ipaddress.IPv4Network(resolver)], 53)
    return {
        "description": "egress of a labyard playground network",
        "config": {PROJECT: project, EGRESS: key},
        "egress": rules,
        "ingress": [
            {"action": "allow", "source": ",".join(map(str, neighbours)), "state": "enabled"}
        ],
    }


def _without(
    network: ipaddress.IPv4Network, holes: Iterable[ipaddress.IPv4Network]
) -> list[ipaddress.IPv4Network]:
    pieces = [network]
    for hole in holes:
        next_pieces: list[ipaddress.IPv4Network] = []
        for piece in pieces:
            if not piece.overlaps(hole):
                next_pieces.append(piece)
            elif not piece.subnet_of(hole):
                next_pieces += piece.address_exclude(hole)
        pieces = next_pieces
    return sorted(ipaddress.collapse_addresses(pieces))


def _allow(networks: list[ipaddress.IPv4Network], port: int | None) -> list[dict[str, str]]:
    if not networks:
        return []
    destination = ",".join(str(n) for n in networks)
    if port is None:
        return [{"action": "allow", "destination": destination, "state": "enabled"}]
    return [
        {
            "action": "allow",
            "destination": destination,
            "protocol": protocol,
            "destination_port": str(port),
            "state": "enabled",
        }
        for protocol in ("tcp", "udp")
    ]


def owner_of(instance: dict[str, Any]) -> tuple[str, str]:
    """(playground, machine) of an instance, "" for one not labyard's. From its config, or
    from its name when the server sends none (an instance on an unreachable member)."""
    found = instance.get("config")
    if found is None:
        return owner_by_name(str(instance.get("name", "")))
    if PLAYGROUND in found:
        return str(found[PLAYGROUND]), str(found.get(MACHINE, ""))
    return "", ""


def owner_by_name(name: str) -> tuple[str, str]:
    """(playground, machine) that an instance's name says (`instance_name`), "" for a name
    that is not one of labyard's."""
    prefix, playground, machine = [*name.split("-", 2), "", ""][:3]
    if prefix == "ly" and ID_PATTERN.match(playground) and machine:
        return playground, machine
    return "", ""
