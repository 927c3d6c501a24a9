"""Egress reaches the internet and nothing else: real playgrounds against an "outside" netns.

The outside netns made here holds a cloud metadata address, a resolver on a link-local
address, an RFC 1918 address and a public-range test address (plus one IPv6 address), each
reached from the host by a /32 (/128) route into our own veth. Every probe goes to those
addresses only; the fixture proves each route leads into the veth before any traffic flows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import os
import re
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from labyard.errors import RuntimeFailure
from labyard.runtime import egress
from labyard.runtime.egress import Policy, Target
from labyard.runtime.local import driver as local_driver
from labyard.runtime.local.names import HostNames, nft_table
from labyard.services import Labyard, Playground
from labyard.settings import Settings
from tests.conftest import Starter

DEADLINE_S = 10.0
CONNECT_TIMEOUT_S = 2.0

METADATA = "169.254.169.254"
RESOLVER = "169.254.169.253"  # where AWS puts its resolver: private resolvers are common
PUBLIC = "203.0.113.10"  # TEST-NET-3: public-range, never routed on the internet
PRIVATE_CANDIDATES = ("192.168.250.10", "172.31.250.10", "10.255.77.10")
LINK_HOST, LINK_PEER = "198.19.254.1", "198.19.254.2"  # the veth itself, outside the pool
PUBLIC6, MACHINE6 = "2001:db8:77::10", "2001:db8:77:1::2"  # documentation prefix
PORTS = (53, 8000, 8001)

OPEN = "open"


def run(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def deadline_wait(what: str, check: Any, deadline_s: float = DEADLINE_S) -> None:
    end = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline_s:g} s waiting for {what}")
        time.sleep(0.05)


# -- policy, without the host ----------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test here sends a DNS query: names resolve only where a test says how (addresses
    still "resolve" to themselves, with no query, for SSH into the machines)."""
    real = socket.getaddrinfo

    def numeric_only(host: str, *args: Any, **kwargs: Any) -> Any:
        ipaddress.ip_address(host)  # ValueError for a name
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", numeric_only)


def targets(*entries: str) -> tuple[Target, ...]:
    return egress.resolve(entries, "test")


def test_no_egress_is_no_policy() -> None:
    assert egress.policy(False, ["10.1.2.3"], ["10.0.0.2"]) is None
    assert egress.policy((), ["10.1.2.3"], ["10.0.0.2"]) is None


def test_open_egress_keeps_the_operator_list_and_ipv4_resolvers() -> None:
    policy = egress.policy(True, ["10.1.2.3:443"], ["10.0.0.2", "fd00::1"])
    assert policy == Policy(targets("10.1.2.3:443"), None, (ipaddress.IPv4Address("10.0.0.2"),))


def test_a_manifest_list_narrows_the_operator_list_and_never_widens_it() -> None:
    policy = egress.policy(
        ("10.0.0.0/8", "192.168.5.0/24:80", "172.16.0.1:22", "203.0.113.10"),
        ["10.1.2.3:443", "192.168.0.0/16", "172.16.0.1:25"],
        [],
    )
    assert policy is not None
    assert policy.allowed == targets("10.1.2.3:443", "192.168.5.0/24:80")
    assert policy.only == targets("10.0.0.0/8", "192.168.5.0/24:80", "172.16.0.1:22", PUBLIC)


def test_names_resolve_to_every_ipv4_address(monkeypatch: pytest.MonkeyPatch) -> None:
    def getaddrinfo(host: str, *_: object, **__: object) -> list[tuple[Any, ...]]:
        assert host == "registry.lan"
        return [(2, 1, 6, "", (a, 0)) for a in ("10.9.0.2", "10.9.0.1", "10.9.0.2")]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    assert targets("registry.lan:5000") == targets("10.9.0.1:5000", "10.9.0.2:5000")


def test_bad_operator_entries_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeFailure, match=r"^LABYARD_EGRESS_ALLOW: '10.1.2.3:x': the port"):
        egress.policy(True, ["registry.lan", "10.1.2.3:x"], [])

    def unknown(*_: object, **__: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unknown)
    with pytest.raises(RuntimeFailure, match=r"'nowhere\.lan' does not resolve"):
        egress.policy(True, ["nowhere.lan"], [])
    with pytest.raises(RuntimeFailure, match=r"^the manifest's egress: 'nowhere\.lan' does not"):
        egress.policy(("nowhere.lan",), [], [])


def test_settings_read_the_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABYARD_EGRESS_ALLOW", " 10.1.2.3:443, registry.lan ,,")
    assert Settings.from_env().local.egress_allow == ("10.1.2.3:443", "registry.lan")
    monkeypatch.delenv("LABYARD_EGRESS_ALLOW")
    assert Settings.from_env().local.egress_allow == ()


# -- the outside world, inside this host -----------------------------------------------------

SERVER = """
import socket, sys, threading
def serve(sock, port):
    while True:
        conn, _ = sock.accept()
        conn.sendall(f"outside:{port}\\n".encode())
        conn.close()
for port in map(int, sys.argv[1:]):
    sock = socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
    threading.Thread(target=serve, args=(sock, port), daemon=True).start()
threading.Event().wait()
"""


@dataclass(frozen=True)
class Outside:
    ns: str
    host_if: str
    private: str
    """An RFC 1918 address this host neither has nor routes anywhere but the default route."""


def _unused_private() -> str:
    addresses = run("ip", "-4", "-o", "addr").split()
    used = [
        ipaddress.IPv4Network(a, strict=False) for a in addresses if re.fullmatch(r"[\d.]+/\d+", a)
    ]
    for line in run("ip", "-4", "-o", "route", "show", "table", "all").splitlines():
        first = line.split()[0]
        if first not in ("default", "local", "broadcast", "unreachable", "blackhole"):
            used.append(ipaddress.IPv4Network(first, strict=False))
    for candidate in PRIVATE_CANDIDATES:
        if not any(ipaddress.IPv4Address(candidate) in net for net in used):
            return candidate
    pytest.fail(f"every candidate private address is in use on this host: {PRIVATE_CANDIDATES}")


def _route_dev(address: str) -> str:
    words = run("ip", "-o", "route", "get", address).split()
    return words[words.index("dev") + 1]


@pytest.fixture(scope="module")
def outside() -> Iterator[Outside]:
    tag = str(os.getpid() % 100000)
    ns, host_if = f"lytest-eg-{tag}", f"lyte{tag}"
    private = _unused_private()
    ipv4 = (METADATA, RESOLVER, private, PUBLIC)
    server: subprocess.Popen[bytes] | None = None
    run("ip", "netns", "add", ns)
    try:
        _wire(ns, host_if, ipv4)
        for address in (*ipv4, PUBLIC6):  # nothing below may leave the host
            assert _route_dev(address) == host_if, f"{address} would leave the host"
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns, "python3", "-c", SERVER, *map(str, PORTS)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for address in (*ipv4, PUBLIC6):  # the host itself reaches every one: the listener is real
            deadline_wait(f"the outside listener on {address}", lambda a=address: _answers(a, 8000))
        yield Outside(ns, host_if, private)
    finally:
        if server is not None:
            server.kill()
            server.wait(5)
        for address in ipv4:
            subprocess.run(
                ["ip", "route", "del", f"{address}/32", "dev", host_if],
                capture_output=True,
                check=False,
            )
        subprocess.run(
            ["ip", "-6", "route", "del", f"{PUBLIC6}/128", "dev", host_if],
            capture_output=True,
            check=False,
        )
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)


def _wire(ns: str, host_if: str, ipv4: tuple[str, ...]) -> None:
    """A veth into `ns`; the outside addresses on its end; /32 routes to them on ours."""
    run("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns)
    run("sysctl", "-qw", f"net.ipv6.conf.{host_if}.accept_dad=0")
    run("sysctl", "-qw", f"net.ipv6.conf.{host_if}.force_forwarding=1")  # for the v6 control only
    run("ip", "addr", "add", f"{LINK_HOST}/30", "dev", host_if)
    run("ip", "link", "set", host_if, "up")
    run("ip", "-n", ns, "link", "set", "lo", "up")
    run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0")
    run("ip", "-n", ns, "addr", "add", f"{LINK_PEER}/30", "dev", "eth0")
    for address in ipv4:
        run("ip", "-n", ns, "addr", "add", f"{address}/32", "dev", "eth0")
    run("ip", "-n", ns, "-6", "addr", "add", f"{PUBLIC6}/128", "dev", "eth0", "nodad")
    run("ip", "-n", ns, "link", "set", "eth0", "up")
    for address in ipv4:
        run("ip", "route", "add", f"{address}/32", "via", LINK_PEER, "dev", host_if)
    run("ip", "-6", "route", "add", f"{PUBLIC6}/128", "dev", host_if)
    host_ll = _link_local(host_if)
    words = run("ip", "-6", "-o", "route", "get", PUBLIC6).split()
    for back in (MACHINE6, words[words.index("src") + 1]):  # replies, to us and the machine
        run("ip", "-n", ns, "-6", "route", "add", f"{back}/128", "via", host_ll, "dev", "eth0")


def _link_local(interface: str, ns: str | None = None) -> str:
    found: list[str] = []

    def ready() -> bool:
        where = ["-n", ns] if ns else []
        out = run("ip", *where, "-6", "-o", "addr", "show", "dev", interface, "scope", "link")
        found[:] = [
            line.split()[3].split("/")[0] for line in out.splitlines() if "tentative" not in line
        ]
        return bool(found)

    deadline_wait(f"a link-local address on {interface}", ready)
    return found[0]


def _answers(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=CONNECT_TIMEOUT_S) as conn:
            return conn.recv(64) == f"outside:{port}\n".encode()
    except OSError:
        return False


# -- playgrounds -----------------------------------------------------------------------------


def manifest(name: str, egress_yaml: str = "true") -> str:
    return f"""
kind: playground
name: {name}
egress: {egress_yaml}
machines:
  - name: a
    memory: 256MiB
    disk: 1GiB
"""


@dataclass(frozen=True)
class Playgrounds:
    open: Playground
    """egress: true, no operator allow-list"""
    allowed: Playground
    """egress: true, LABYARD_EGRESS_ALLOW=<private>:8000"""
    narrowed: Playground
    """the same allow-list; egress: [<private>, 169.254.169.254, 203.0.113.10:8001]"""


@pytest.fixture(scope="module")
async def playgrounds(
    starter: Starter, labyard: Labyard, settings: Settings, outside: Outside
) -> Playgrounds:
    allow = (f"{outside.private}:8000",)
    narrow = json.dumps([outside.private, METADATA, f"{PUBLIC}:8001"])
    with pytest.MonkeyPatch.context() as patch:  # machines, and the rules, get our resolver
        patch.setattr(local_driver, "host_resolvers", lambda: [RESOLVER])
        open_ = await starter(manifest("eg-open"))
        local = dataclasses.replace(settings.local, egress_allow=allow)
        patch.setattr(labyard.driver, "settings", dataclasses.replace(settings, local=local))
        async with asyncio.TaskGroup() as group:
            allowed = group.create_task(starter(manifest("eg-allowed")))
            narrowed = group.create_task(starter(manifest("eg-narrowed", narrow)))
    return Playgrounds(open_, allowed.result(), narrowed.result())


PROBE = """
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor

def probe(target):
    host, port = target.rsplit(":", 1)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=TIMEOUT) as conn:
            return "open" if conn.recv(64) == f"outside:{port}\\n".encode() else "someone else"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return type(exc).__name__

targets = json.loads(sys.argv[1])
with ThreadPoolExecutor(len(targets)) as pool:
    print(json.dumps(dict(zip(targets, pool.map(probe, targets)))))
"""


async def probe(start: Starter, playground: Playground, targets: list[str]) -> dict[str, str]:
    """Connect to every `HOST:PORT` at once from inside machine `a`: `open` means the outside
    listener answered; anything else means the packets did not get through."""
    script = PROBE.replace("TIMEOUT", str(CONNECT_TIMEOUT_S))
    command = f"python3 -c {shlex.quote(script)} {shlex.quote(json.dumps(targets))}"
    code, out, err = await start.exec(playground, command)
    assert code == 0, err
    result: dict[str, str] = json.loads(out)
    return result


def reached(result: dict[str, str]) -> set[str]:
    return {target for target, status in result.items() if status == OPEN}


async def test_the_internet_is_reachable_and_private_and_metadata_addresses_are_not(
    starter: Starter, playgrounds: Playgrounds, outside: Outside
) -> None:
    want = {f"{PUBLIC}:8000", f"{PUBLIC}:8001", f"{RESOLVER}:53"}
    result = await probe(
        starter,
        playgrounds.open,
        [*want, f"{METADATA}:8000", f"{outside.private}:8000", f"{RESOLVER}:8000"],
    )
    assert reached(result) == want, result


async def test_machines_use_the_resolver_that_egress_lets_through(
    starter: Starter, playgrounds: Playgrounds
) -> None:
    code, out, err = await starter.exec(playgrounds.open, "cat /etc/resolv.conf")
    assert (code, out.split()) == (0, ["nameserver", RESOLVER]), err


async def test_the_operator_allow_list_reaches_a_private_destination(
    starter: Starter, playgrounds: Playgrounds, outside: Outside
) -> None:
    want = {f"{outside.private}:8000", f"{PUBLIC}:8000"}
    result = await probe(
        starter, playgrounds.allowed, [*want, f"{outside.private}:8001", f"{METADATA}:8000"]
    )
    assert reached(result) == want, result


async def test_a_manifest_list_narrows_egress_and_cannot_widen_it(
    starter: Starter, playgrounds: Playgrounds, outside: Outside
) -> None:
    want = {f"{outside.private}:8000", f"{PUBLIC}:8001", f"{RESOLVER}:53"}
    not_listed = [f"{PUBLIC}:8000"]
    listed_but_not_allowed = [f"{outside.private}:8001", f"{METADATA}:8000"]
    result = await probe(
        starter, playgrounds.narrowed, [*want, *not_listed, *listed_but_not_allowed]
    )
    assert reached(result) == want, result


# -- IPv6 ------------------------------------------------------------------------------------


def _chain(settings: Settings, playground: Playground) -> tuple[str, str]:
    return nft_table(settings.instance), f"br_lyb{playground.id}0"


def ipv6_drops(settings: Settings, playground: Playground) -> int:
    listing = run("nft", "list", "chain", "inet", *_chain(settings, playground))
    match = re.search(r"meta nfproto ipv6 counter packets (\d+)", listing)
    assert match is not None, listing
    return int(match.group(1))


@pytest.fixture
def machine_ipv6(settings: Settings, playgrounds: Playgrounds) -> Iterator[None]:
    """What a root learner could try: give machine `a` an IPv6 address and a route out via its
    bridge. The host forwards IPv6 on that bridge (only there, only for this test), and static
    neighbour entries stand in for neighbour discovery, which the input chain already drops:
    this test is about the second line, the forward chain."""
    playground = playgrounds.open
    bridge = f"lyb{playground.id}0"
    netns = HostNames(settings.instance, playground.id, settings.playgrounds_dir).netns("a")
    in_machine = ["ip", "-n", netns, "-6"]
    try:
        run("sysctl", "-qw", f"net.ipv6.conf.{bridge}.force_forwarding=1")
        run(*in_machine, "addr", "add", f"{MACHINE6}/128", "dev", "eth0", "nodad")
        gateway, gateway_mac = _link_local(bridge), _mac(bridge)
        run(*in_machine, "neigh", "replace", gateway, "lladdr", gateway_mac, "dev", "eth0")
        run(*in_machine, "route", "add", f"{PUBLIC6}/128", "via", gateway, "dev", "eth0")
        run("ip", "-6", "route", "add", f"{MACHINE6}/128", "dev", bridge)
        machine_mac = _mac("eth0", netns)
        run("ip", "-6", "neigh", "replace", MACHINE6, "lladdr", machine_mac, "dev", bridge)
        yield
    finally:
        for undo in (
            ["ip", "-6", "neigh", "del", MACHINE6, "dev", bridge],
            ["ip", "-6", "route", "del", f"{MACHINE6}/128", "dev", bridge],
            [*in_machine, "addr", "del", f"{MACHINE6}/128", "dev", "eth0"],
            ["sysctl", "-qw", f"net.ipv6.conf.{bridge}.force_forwarding=0"],
        ):
            subprocess.run(undo, capture_output=True, check=False)


def _mac(interface: str, ns: str | None = None) -> str:
    where = ["-n", ns] if ns else []
    words = run("ip", *where, "-o", "link", "show", "dev", interface).split()
    return words[words.index("link/ether") + 1]


async def test_no_ipv6_leaves_a_playground(
    starter: Starter,
    settings: Settings,
    playgrounds: Playgrounds,
    outside: Outside,
    machine_ipv6: None,
) -> None:
    target = f"[{PUBLIC6}]:8000"
    table, chain = _chain(settings, playgrounds.open)
    control = run(
        "nft",
        "--echo",
        "--handle",
        "insert",
        "rule",
        "inet",
        table,
        chain,
        "meta",
        "nfproto",
        "ipv6",
        "accept",
    )
    handle = re.search(r"# handle (\d+)", control)
    assert handle is not None, control
    try:  # the control: with labyard's IPv6 drop bypassed, the path really works
        assert await probe(starter, playgrounds.open, [target]) == {target: OPEN}
    finally:
        run("nft", "delete", "rule", "inet", table, chain, "handle", handle.group(1))
    before = ipv6_drops(settings, playgrounds.open)
    assert await probe(starter, playgrounds.open, [target]) == {target: "timeout"}
    assert ipv6_drops(settings, playgrounds.open) > before, "the drop was not labyard's rule"
