"""Private networks: a bridge per playground network, a netns + veth per machine (pyroute2).

Subnets are chosen host-wide under a lock by looking at what addresses and routes the host
already has, so two labyard instances on one host (a server and a test run) never pick
overlapping blocks; their sizes and the search are in subnets.py.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute, NetlinkError, NetNS

from labyard.errors import RuntimeFailure
from labyard.runtime import subnets
from labyard.runtime.local import userns
from labyard.runtime.local.idmap import IdRange
from labyard.runtime.local.names import USERNS_DIR, HostNames

NETNS_DIR = Path("/var/run/netns")
HOST_LOCK = Path("/run/labyard/network.lock")
ROUTES = Path("/proc/net/route")


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


def share_namespace_dir() -> None:
    """Make the network namespace directory a shared mount of its own, as `ip netns add` does
    the first time it runs on a host.

    If `ip netns add` did it later, it would bind the directory over itself recursively with
    labyard's namespaces in it: their mounts copied on top, the originals hidden underneath,
    and their files impossible to remove until the host reboots. Done while the directory is
    still empty (the host's first labyard), nothing is hidden, and `ip netns` later finds a
    mount there and binds nothing. With namespaces in it already and no mount, it is left as
    it is: binding now would be that very hiding (destroy copes: it leaves what is held to the
    reconciler).
    """
    directory = NETNS_DIR.resolve() if NETNS_DIR.exists() else NETNS_DIR
    with host_lock():
        directory.mkdir(parents=True, exist_ok=True)
        directory = directory.resolve()
        if not _is_mount_point(directory):
            if any(directory.iterdir()):
                return
            subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
        subprocess.run(["mount", "--make-shared", str(directory)], check=True)


def _is_mount_point(path: Path) -> bool:
    with open("/proc/self/mountinfo") as mountinfo:
        return any(line.split()[4] == str(path) for line in mountinfo)


def _used_networks(ipr: IPRoute) -> list[ipaddress.IPv4Network]:
    """Every IPv4 network on the host: its addresses' subnets (all instances' bridges, up or
    down) and the main table's routes (a VPN's routed networks have no local address)."""
    used = [
        ipaddress.IPv4Network(f"{addr.get('IFA_ADDRESS')}/{addr['prefixlen']}", strict=False)
        for addr in ipr.get_addr(family=2)
    ]
    return used + _routed_networks()


def _routed_networks() -> list[ipaddress.IPv4Network]:
    """Destinations of the main table except the default route, from /proc/net/route: with
    1,000 bridges a text read takes ~2 ms where a pyroute2 route dump takes ~130 ms."""
    try:
        lines = ROUTES.read_text().splitlines()[1:]
    except OSError:
        return []
    routed = []
    for line in lines:  # Iface Destination Gateway Flags RefCnt Use Metric Mask ...
        fields = line.split()  # addresses in hex, in the host's (little-endian) byte order
        mask = int.from_bytes(bytes.fromhex(fields[7]), "little")
        if mask:
            destination = int.from_bytes(bytes.fromhex(fields[1]), "little")
            routed.append(ipaddress.IPv4Network((destination, mask.bit_count()), strict=False))
    return routed


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
    names: HostNames, index: int, pool: ipaddress.IPv4Network, hosts: int
) -> ipaddress.IPv4Network:
    """The bridge of network `index`, created if it is not there with a free block of `pool`
    sized for `hosts` machine addresses (subnets.prefix_for); LimitExceeded when none is."""
    bridge = names.bridge(index)
    existing = bridge_subnet(bridge)
    if existing is not None:
        return existing
    with host_lock(), IPRoute() as ipr:
        subnet = subnets.allocate(pool, hosts, _used_networks(ipr))
        try:
            ipr.link("add", ifname=bridge, kind="bridge")
            link = _link_index(ipr, bridge)
            ipr.link("set", index=link, ifalias=names.link_alias, state="up")
            ipr.addr(
                "add",
                index=link,
                address=str(subnet.network_address + 1),
                prefixlen=subnet.prefixlen,
            )
            _acknowledge_at_once(ipr, link, subnet)
        except NetlinkError as exc:
            raise RuntimeFailure(f"cannot create network bridge {bridge}", detail=str(exc)) from exc
    return subnet


def _acknowledge_at_once(ipr: IPRoute, link: int | None, subnet: ipaddress.IPv4Network) -> None:
    """The bridge's route, with delayed ACKs off (`ip route ... quickack 1`).

    sshd turns Nagle off only when a connection's first session starts. Until then its
    channel-open reply waits behind its own unacknowledged host-keys notice, for an ACK this
    host would delay by 40 ms: every new connection's first command took 40 ms longer.
    """
    ipr.route(
        "replace",
        dst=str(subnet),
        oif=link,
        prefsrc=str(subnet.network_address + 1),
        scope=253,  # link
        proto=2,  # kernel: the connected route the address made, changed in place
        table=254,
        metrics={"quickack": 1},
    )


def ensure_namespaces(netns_name: str, userns_path: Path, ids: IdRange) -> None:
    """The machine's user namespace and the network namespace it owns, made if missing.

    A network namespace left without its user namespace (a crash between the two) is
    remade: one owned by the host's user namespace would give the machine no network rights.
    """
    netns_path = NETNS_DIR / netns_name
    if netns_path.exists() and userns_path.exists():
        return
    userns.remove(netns_path)
    userns.remove(userns_path)
    NETNS_DIR.mkdir(parents=True, exist_ok=True)
    # No loopback set-up here: systemd brings `lo` up itself as PID 1 starts.
    userns.create(userns_path, netns_path, ids)


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


def remove_netns(name: str) -> bool:
    """Let go of a machine's kept network and user namespaces; False when a file stays,
    held by a mount this namespace cannot reach (userns.remove), for a later destroy."""
    released = [userns.remove(NETNS_DIR / name), userns.remove(USERNS_DIR / name)]
    return all(released)  # both tried: one held file does not keep the other


def list_netns(prefix: str) -> list[str]:
    """Names of kept machine namespaces (network or user, either left alone by a crash, or
    left by a destroy while still held: listed, so that the reconciler destroys again)."""
    found = {p.name for d in (NETNS_DIR, USERNS_DIR) if d.exists() for p in d.iterdir()}
    return sorted(n for n in found if n.startswith(prefix))


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


def namespace_address(netns_name: str) -> str | None:
    """The IPv4 address of eth0 in a machine's network namespace, if it still has one.
    (`ip`, not pyroute2's NetNS: this is asked from inside a running event loop.)"""
    if not (NETNS_DIR / netns_name).exists():
        return None
    shown = subprocess.run(
        ["ip", "-n", netns_name, "-4", "-j", "addr", "show", "dev", "eth0"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        found = [a["local"] for link in json.loads(shown.stdout) for a in link["addr_info"]]
    except (ValueError, KeyError, TypeError):
        return None
    return str(found[0]) if found else None
