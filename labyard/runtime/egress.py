"""What a playground may reach beyond its own networks, resolved when it starts.

    policy = the manifest's `egress` ∩ (the internet - BLOCKED + the operator's allow-list)
             + the host's resolvers on port 53 (machines use them: machine_setup.host_resolvers)

Names (in LABYARD_EGRESS_ALLOW or a manifest) are resolved here with getaddrinfo, IPv4
only: machines get no IPv6 beyond their bridge (firewall.py drops all of it).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from labyard.errors import RuntimeFailure
from labyard.manifest.models import parse_destination

BLOCKED = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # RFC 1918
        "100.64.0.0/10",  # carrier-grade NAT, often a cloud's internal network
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local: cloud metadata (169.254.169.254) and DNS
        "172.16.0.0/12",  # RFC 1918
        "192.168.0.0/16",  # RFC 1918
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the limited broadcast 255.255.255.255
    )
)
"""Never reached by egress unless the operator allows a destination in them by name."""


@dataclass(frozen=True)
class Target:
    network: ipaddress.IPv4Network
    port: int | None
    """TCP and UDP to this port; None: every port and protocol."""

    def narrowed_to(self, other: Target) -> Target | None:
        """What both allow, if anything."""
        if self.network.subnet_of(other.network):
            network = self.network
        elif other.network.subnet_of(self.network):
            network = other.network
        else:
            return None
        if self.port is not None and other.port is not None and self.port != other.port:
            return None
        return Target(network, self.port if self.port is not None else other.port)


@dataclass(frozen=True)
class Policy:
    """Egress for one playground; none at all is `None` where a Policy is expected."""

    allowed: tuple[Target, ...]
    """Passed even inside BLOCKED: the operator's allow-list (narrowed to `only`)."""
    only: tuple[Target, ...] | None
    """The manifest's list: nothing else is reachable. None: anything not blocked."""
    resolvers: tuple[ipaddress.IPv4Address, ...]
    """Always reachable on port 53 (udp and tcp)."""


def policy(
    egress: bool | tuple[str, ...], operator_allow: Iterable[str], resolvers: Iterable[str]
) -> Policy | None:
    """The policy for a manifest's `egress`, with LABYARD_EGRESS_ALLOW and the host's
    resolvers; None when the playground gets no egress at all (`false` or `[]`)."""
    if egress is False or egress == ():
        return None
    allowed = resolve(operator_allow, "LABYARD_EGRESS_ALLOW")
    servers = tuple(_ipv4s(resolvers))
    if egress is True:
        return Policy(allowed, None, servers)
    only = resolve(egress, "the manifest's egress")
    narrowed = (a.narrowed_to(o) for a in allowed for o in only)
    return Policy(tuple(d for d in narrowed if d is not None), only, servers)


def resolve(entries: Iterable[str], where: str) -> tuple[Target, ...]:
    """Each `HOST[:PORT]` or CIDR entry as targets; a name gives one per address. Every entry
    is checked before any name is looked up."""
    try:
        parsed = [parse_destination(entry) for entry in entries]
    except ValueError as exc:
        raise RuntimeFailure(f"{where}: {exc}", reason="invalid_egress") from exc
    found: list[Target] = []
    for destination in parsed:
        if destination.network is not None:
            found.append(Target(destination.network, destination.port))
            continue
        for address in _lookup(destination.host, where):
            found.append(Target(ipaddress.IPv4Network(address), destination.port))
    return tuple(dict.fromkeys(found))


def _lookup(name: str, where: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(name, None, family=socket.AF_INET, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise RuntimeFailure(
            f"{where}: {name!r} does not resolve to an IPv4 address",
            detail=str(exc),
            reason="invalid_egress",
        ) from exc
    return sorted({str(info[4][0]) for info in infos})


def _ipv4s(addresses: Iterable[str]) -> Iterable[ipaddress.IPv4Address]:
    for text in addresses:
        try:
            yield ipaddress.IPv4Address(text)
        except ValueError:
            continue  # an IPv6 resolver: unreachable anyway, there is no IPv6 egress
