"""Playground networking on real bridges, veths, netns and nftables.

Every probe stays on this host: machines talk to each other, to the host's own addresses and
to an "outside" network namespace made here (198.19.255.0/30, outside the playground pool),
never to the internet or a LAN.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import shlex
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from labyard.runtime.local.names import nft_table
from labyard.services import Playground
from labyard.settings import Settings
from tests.conftest import Starter

DEADLINE_S = 10.0
CONNECT_TIMEOUT_S = 2.0
WEB_PORT = 8080


def manifest(name: str, egress: bool = True) -> str:
    return f"""
kind: playground
name: {name}
egress: {"true" if egress else "false"}
machines:
  - name: a
    memory: 256MiB
    disk: 1GiB
  - name: b
    memory: 256MiB
    disk: 1GiB
"""


async def wait_for(
    what: str, check: Callable[[], Awaitable[bool]], deadline_s: float = DEADLINE_S
) -> None:
    """Poll `check` until it holds; fail with `what` once the deadline passes."""
    end = time.monotonic() + deadline_s
    while not await check():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline_s:g} s waiting for {what}")
        await asyncio.sleep(0.1)


def run(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


# -- probing from inside a machine ---------------------------------------------------------

PROBE = """
import json, socket, subprocess, sys
from concurrent.futures import ThreadPoolExecutor

def probe(target):
    kind, host, *port = target.split(":")
    if kind == "ping":
        ping = subprocess.run(["ping", "-c1", "-W2", host], capture_output=True)
        return "open" if ping.returncode == 0 else "no-reply"
    try:
        socket.create_connection((host, int(port[0])), timeout=TIMEOUT).close()
        return "open"
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

REACHED = ("open", "refused")
"""Probe results that mean packets got through to the target's network stack."""


async def probe(
    start: Starter, playground: Playground, machine: str, targets: list[str]
) -> dict[str, str]:
    """Try every target (`tcp:HOST:PORT` or `ping:HOST`) at once from inside `machine`."""
    script = PROBE.replace("TIMEOUT", str(CONNECT_TIMEOUT_S))
    command = f"python3 -c {shlex.quote(script)} {shlex.quote(json.dumps(targets))}"
    code, out, err = await start.exec(playground, command, machine=machine)
    assert code == 0, err
    result: dict[str, str] = json.loads(out)
    return result


def address(playground: Playground, machine: str) -> str:
    return next(m.address for m in playground.machines if m.name == machine)


def gateway(playground: Playground) -> str:
    """The host's address on the playground's bridge (the first of its subnet, whatever size)."""
    words = run("ip", "-4", "-o", "addr", "show", "dev", f"lyb{playground.id}0").split()
    subnet = ipaddress.IPv4Interface(words[3]).network
    assert ipaddress.IPv4Address(address(playground, "a")) in subnet
    return str(subnet.network_address + 1)


# -- fixtures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Playgrounds:
    one: Playground
    two: Playground
    closed: Playground
    """egress: false"""


@pytest.fixture(scope="module")
async def playgrounds(starter: Starter) -> Playgrounds:
    async with asyncio.TaskGroup() as group:
        one = group.create_task(starter(manifest("net-one")))
        two = group.create_task(starter(manifest("net-two")))
        closed = group.create_task(starter(manifest("net-closed", egress=False)))
    return Playgrounds(one.result(), two.result(), closed.result())


class _Counting(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    accepted = 0


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        assert isinstance(self.server, _Counting)
        self.server.accepted += 1


@pytest.fixture
def host_listener() -> Iterator[_Counting]:
    """A TCP service on the host, on every address, that counts the connections it accepts."""
    server = _Counting(("0.0.0.0", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def host_main_address() -> str:
    """The source address the host uses for the outside world (a route lookup, no traffic)."""
    words = run("ip", "-4", "-o", "route", "get", "1.1.1.1").split()
    return words[words.index("src") + 1]


@dataclass(frozen=True)
class Outside:
    address: str
    port: int
    marker: str


OUTSIDE_HOST = "198.19.255.1"
OUTSIDE_PEER = "198.19.255.2"


@pytest.fixture(scope="module")
def outside() -> Iterator[Outside]:
    """An "outside world" inside this host: a netns behind a veth, serving HTTP.

    Packets to it are routed like any non-playground destination (NAT, egress rules), yet
    never leave the host: the route lookup below proves they go into our veth.
    """
    tag = str(os.getpid() % 100000)
    ns, host_if = f"lytest-out-{tag}", f"lyto{tag}"
    run("ip", "netns", "add", ns)
    server: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryDirectory() as www:
        try:
            run("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns)
            run("ip", "addr", "add", f"{OUTSIDE_HOST}/30", "dev", host_if)
            run("ip", "link", "set", host_if, "up")
            run("ip", "-n", ns, "addr", "add", f"{OUTSIDE_PEER}/30", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
            route = run("ip", "-4", "-o", "route", "get", OUTSIDE_PEER).split()
            assert route[route.index("dev") + 1] == host_if, f"would leave the host: {route}"
            marker = f"outside-{tag}"
            Path(www, "marker").write_text(marker)
            http = [sys.executable, "-m", "http.server", "--bind", OUTSIDE_PEER, "8000"]
            server = subprocess.Popen(
                ["ip", "netns", "exec", ns, *http, "--directory", www],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            end = time.monotonic() + DEADLINE_S
            while not _can_connect(OUTSIDE_PEER, 8000):
                assert server.poll() is None, "the outside HTTP server died"
                assert time.monotonic() < end, "the outside HTTP server never listened"
                time.sleep(0.05)
            yield Outside(OUTSIDE_PEER, 8000, marker)
        finally:
            if server is not None:
                server.terminate()
                server.wait(5)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
            subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)


def _can_connect(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError:
        return False
    return True


# -- inside a playground -------------------------------------------------------------------


async def serve_web(start: Starter, playground: Playground, machine: str) -> None:
    """Serve /etc over HTTP in `machine` (so /hostname names it); return once it answers."""
    code, _, err = await start.exec(
        playground,
        f"systemd-run --unit=lytest-web python3 -m http.server {WEB_PORT} --directory /etc",
        machine=machine,
    )
    assert code == 0, err

    async def answers() -> bool:
        code, _, _ = await start.exec(
            playground, f"curl -sf http://127.0.0.1:{WEB_PORT}/hostname", machine=machine
        )
        return code == 0

    await wait_for(f"the web server in {machine}", answers)


async def test_machines_in_a_playground_reach_each_other_by_name(
    starter: Starter, playgrounds: Playgrounds
) -> None:
    for playground in (playgrounds.one, playgrounds.two):
        await serve_web(starter, playground, "b")
        code, out, err = await starter.exec(
            playground,
            "ping -c1 -W2 b >/dev/null && getent hosts b | cut -d' ' -f1 && "
            f"curl -sf --max-time 3 http://b:{WEB_PORT}/hostname",
            machine="a",
        )
        assert code == 0, err
        assert out.split() == [address(playground, "b"), "b"]


async def test_playgrounds_cannot_reach_each_other(
    starter: Starter, playgrounds: Playgrounds
) -> None:
    pairs = [(playgrounds.one, playgrounds.two), (playgrounds.two, playgrounds.one)]
    results = await asyncio.gather(
        *(probe(starter, here, "a", _cross_targets(here, there)) for here, there in pairs)
    )
    for (here, there), result in zip(pairs, results, strict=True):
        assert result.pop(f"tcp:{address(here, 'b')}:22") == "open", "positive control failed"
        reached = {target: status for target, status in result.items() if status in REACHED}
        assert not reached, f"{here.name} reached {there.name}: {reached}"


def _cross_targets(here: Playground, there: Playground) -> list[str]:
    """Its own neighbour's sshd (must answer), then every way into the other playground."""
    targets = [f"tcp:{address(here, 'b')}:22"]
    for machine in ("a", "b"):
        ip = address(there, machine)
        targets += [f"ping:{ip}", f"tcp:{ip}:22", f"tcp:{ip}:{WEB_PORT}"]
    return targets


# -- the host ------------------------------------------------------------------------------


async def test_machines_cannot_reach_host_services(
    starter: Starter, playgrounds: Playgrounds, host_listener: _Counting
) -> None:
    port = host_listener.server_address[1]
    host_addresses = [gateway(playgrounds.one), host_main_address()]
    for host_address in host_addresses:  # the listener is real: the host itself gets in
        assert _can_connect(host_address, port)
    await wait_for("the listener to count them", _counted(host_listener, len(host_addresses)))

    targets = [f"tcp:{a}:{port}" for a in host_addresses]
    results = await asyncio.gather(
        *(probe(starter, p, "a", targets) for p in (playgrounds.one, playgrounds.closed))
    )
    for result in results:
        assert not any(status in REACHED for status in result.values()), result
    assert host_listener.accepted == len(host_addresses)


def _counted(server: _Counting, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return server.accepted >= count

    return check


# -- egress --------------------------------------------------------------------------------


def _nft(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nft", *args], capture_output=True, text=True, check=False)


def in_egress_nets(settings: Settings, ip: str) -> bool:
    table = nft_table(settings.instance)
    found = _nft("get", "element", "inet", table, "egress_nets", f"{{ {ip} }}")
    return found.returncode == 0


def test_the_host_acknowledges_machines_at_once(playgrounds: Playgrounds) -> None:
    """The host's route to a playground's bridge has delayed ACKs off: sshd's first reply on
    a connection otherwise waits 40 ms for one (network.py says why)."""
    for playground in (playgrounds.one, playgrounds.closed):
        bridge = f"lyb{playground.id}0"
        routes = run("ip", "-4", "-o", "route", "show", "dev", bridge, "proto", "kernel")
        assert routes.strip(), f"no route to {bridge}"
        assert " quickack 1" in routes, routes
    # The main interface's route is the host's own business, left as it was.
    outside = run("ip", "-4", "-o", "route", "get", "1.1.1.1")
    assert "quickack" not in outside, outside


def bridge_rules(settings: Settings, playground: Playground) -> list[str]:
    table = nft_table(settings.instance)
    listing = _nft("list", "chain", "inet", table, f"br_lyb{playground.id}0")
    assert listing.returncode == 0, listing.stderr
    body = listing.stdout.split(f"chain br_lyb{playground.id}0 {{", 1)[1]
    return [line.strip() for line in body.splitlines() if line.strip() not in ("", "}")]


def test_egress_rules_follow_the_manifest(settings: Settings, playgrounds: Playgrounds) -> None:
    assert bridge_rules(settings, playgrounds.closed)[-1] == "drop"
    assert bridge_rules(settings, playgrounds.one)[-1] != "drop"
    assert not in_egress_nets(settings, address(playgrounds.closed, "a"))
    assert in_egress_nets(settings, address(playgrounds.one, "a"))
    assert in_egress_nets(settings, address(playgrounds.two, "b"))


async def test_egress_reaches_outside_only_when_on(
    starter: Starter, playgrounds: Playgrounds, outside: Outside
) -> None:
    url = f"http://{outside.address}:{outside.port}/marker"
    code, out, err = await starter.exec(
        playgrounds.one, f"curl -sf --max-time 3 {url}", machine="a"
    )
    assert (code, out) == (0, outside.marker), err

    neighbour = address(playgrounds.closed, "b")
    result = await probe(
        starter,
        playgrounds.closed,
        "a",
        [f"tcp:{outside.address}:{outside.port}", f"tcp:{neighbour}:22"],
    )
    assert result[f"tcp:{neighbour}:22"] == "open", "inside its own network it still works"
    assert result[f"tcp:{outside.address}:{outside.port}"] not in REACHED, result
