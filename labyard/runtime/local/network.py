"""Private networks: a bridge per playground network, a netns + veth per machine (pyroute2).

Subnets are chosen host-wide under a lock by looking at what addresses the host already has,
so two labyard instances on one host (a server and a test run) never pick the same /24.
"""

from __future__ import annotations

import fcntl
import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute, NetlinkError, NetNS, netns

from labyard.errors import LimitExceeded, RuntimeFailure
from labyard.runtime.local.names import HostNames

NETNS_DIR = Path("/var/run/netns")
HOST_LOCK = Path("/run/labyard/network.lock")


@dataclass(frozen=True)
class Attachment:
    """One machine's interface on one network."""

    network_index: int
    bridge: str
    interface: str
    address: ipaddress.IPv4Address
    subnet: ipaddress.IPv4Network

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address + 1


@contextmanager
def host_lock() -> Iterator[None]:
    """Serialises changes to host-wide networking across every labyard process."""
    HOST_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(HOST_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _used_networks(ipr: IPRoute) -> list[ipaddress.IPv4Network]:
    used = []
    for addr in ipr.get_addr(family=2):
        used.append(
            ipaddress.IPv4Network(f"{addr.get('IFA_ADDRESS')}/{addr['prefixlen']}", strict=False)
        )
    return used


def _link_index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def bridge_subnet(name: str) -> ipaddress.IPv4Network | None:
    with IPRoute() as ipr:
        index = _link_index(ipr, name)
        if index is None:
            return None
        for addr in ipr.get_addr(family=2, index=index):
            return ipaddress.IPv4Network(
                f"{addr.get('IFA_ADDRESS')}/{addr['prefixlen']}", strict=False
            )
    return None


def ensure_bridge(
    names: HostNames, index: int, pool: ipaddress.IPv4Network
) -> ipaddress.IPv4Network:
    """The bridge of network `index`, created with a free /24 from `pool` if it is not there."""
    bridge = names.bridge(index)
    existing = bridge_subnet(bridge)
    if existing is not None:
        return existing
    with host_lock(), IPRoute() as ipr:
        used = _used_networks(ipr)
        subnet = next(
            (s for s in pool.subnets(new_prefix=24) if not any(s.overlaps(u) for u in used)), None
        )
        if subnet is None:
            raise LimitExceeded(f"no free /24 left in the playground address pool {pool}")
        try:
            ipr.link("add", ifname=bridge, kind="bridge")
            link = _link_index(ipr, bridge)
            ipr.link("set", index=link, ifalias=names.link_alias, state="up")
            ipr.addr("add", index=link, address=str(subnet.network_address + 1), prefixlen=24)
        except NetlinkError as exc:
            raise RuntimeFailure(f"cannot create network bridge {bridge}", detail=str(exc)) from exc
    return subnet


def ensure_netns(name: str) -> None:
    if not (NETNS_DIR / name).exists():
        netns.create(name)
        with NetNS(name) as ns:
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")


def attach(
    names: HostNames,
    machine_index: int,
    netns_name: str,
    network_index: int,
    subnet: ipaddress.IPv4Network,
) -> Attachment:
    """Plug the machine's netns into the network's bridge (idempotent)."""
    bridge = names.bridge(network_index)
    host_end = names.veth(machine_index, network_index)
    peer = names.veth_peer(machine_index, network_index)
    interface = f"eth{network_index}"
    address = subnet.network_address + 2 + machine_index
    attachment = Attachment(network_index, bridge, interface, address, subnet)
    try:
        with IPRoute() as ipr:
            if _link_index(ipr, host_end) is not None:
                return attachment
            ipr.link(
                "add", ifname=host_end, kind="veth", peer={"ifname": peer, "net_ns_fd": netns_name}
            )
            ipr.link(
                "set",
                index=_link_index(ipr, host_end),
                master=_link_index(ipr, bridge),
                ifalias=names.link_alias,
                state="up",
            )
        with NetNS(netns_name) as ns:
            link = ns.link_lookup(ifname=peer)[0]
            ns.link("set", index=link, ifname=interface)
            ns.addr("add", index=link, address=str(address), prefixlen=subnet.prefixlen)
            ns.link("set", index=link, state="up")
            if network_index == 0:
                ns.route("add", dst="default", gateway=str(attachment.gateway))
    except NetlinkError as exc:
        raise RuntimeFailure(f"cannot attach {netns_name} to {bridge}", detail=str(exc)) from exc
    return attachment


def remove_netns(name: str) -> None:
    if (NETNS_DIR / name).exists():
        netns.remove(name)


def list_netns(prefix: str) -> list[str]:
    if not NETNS_DIR.exists():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))


def links_with_alias(prefix: str) -> dict[str, str]:
    """Link name -> alias, for every host link whose alias starts with `prefix`."""
    with IPRoute() as ipr:
        return {
            link.get("ifname"): link.get("ifalias")
            for link in ipr.get_links()
            if (link.get("ifalias") or "").startswith(prefix)
        }


def remove_link(name: str) -> None:
    with IPRoute() as ipr:
        index = _link_index(ipr, name)
        if index is not None:
            try:
                ipr.link("del", index=index)
            except NetlinkError as exc:
                if exc.code != 19:  # ENODEV: its netns took it with it meanwhile
                    raise RuntimeFailure(f"cannot remove link {name}", detail=str(exc)) from exc
