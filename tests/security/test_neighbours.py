"""A machine reaches neither another playground (files, processes, sockets, network) nor
the host's own services; its own playground's machines stay reachable (the control)."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from labyard.manifest import manifest_from_text
from labyard.services import Labyard, Playground
from tests.security.conftest import Machine

pytestmark = pytest.mark.asyncio(loop_scope="session")

PORT = 7777
NEIGHBOUR = """
kind: playground
name: neighbour
machines:
  - name: a
    memory: 256MiB
  - name: b
    memory: 256MiB
"""


@pytest.fixture(scope="package")
async def neighbour(engine: Labyard) -> AsyncIterator[Playground]:
    """Another learner's playground, with a secret file, a process and a listening port."""
    labyard = engine
    playground = await labyard.playgrounds.start(manifest_from_text(NEIGHBOUR, "n.yaml"))
    async with await labyard.playgrounds.connect(playground.id, "a") as connection:
        await connection.run(
            "echo neighbour-secret > /root/secret; "
            f"(setsid nohup python3 -m http.server {PORT} -d /root >/dev/null 2>&1 &); "
            "(setsid nohup sleep 600 neighbour-marker >/dev/null 2>&1 &)",
            timeout=30,
        )
    try:
        yield playground
    finally:
        await labyard.playgrounds.destroy(playground.id)


@pytest.fixture(scope="module")
def host_listener() -> Iterator[int]:
    """A service on every host address (as the API, sshd or a database would listen)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", 0))
    server.listen(16)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.sendall(b"host-service\n")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def host_addresses(own_gateway: str) -> list[str]:
    """The host's IPv4 addresses but loopback (inside, that is the machine's own) and other
    playgrounds' bridges (other test instances add and remove those while this runs; the
    machine's own gateway stands for them)."""
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    found = [(line.split()[1], line.split()[3].split("/")[0]) for line in out.splitlines()]
    others = [a for link, a in found if not link.startswith(("lo", "lyb", "lyx"))]
    return [own_gateway, *others]


async def test_another_playground_is_out_of_reach(machine: Machine, neighbour: Playground) -> None:
    labyard = machine.labyard
    a, b = neighbour.machines[0].address, neighbour.machines[1].address
    # Control: inside the neighbour's own playground, b reaches a's port.
    fetch = f"curl -s --retry 20 --retry-delay 0 --retry-all-errors -m 2 http://{a}:{PORT}/secret"
    async with await labyard.playgrounds.connect(neighbour.id, "b") as connection:
        result = await connection.run(fetch, timeout=60)
    assert result.stdout.strip() == "neighbour-secret", result
    await machine.refused(f"curl -s -m 2 http://{a}:{PORT}/secret")
    await machine.refused(f"ping -c 1 -W 1 {b}")
    await machine.refused("grep -rs neighbour-secret /root /home /srv /tmp")
    await machine.refused("pgrep -f neighbour-marker")
    # Abstract unix sockets are per network namespace: a's are not listed here.
    out = await machine.ok("cat /proc/net/unix | wc -l")
    assert int(out) >= 1


async def test_host_services_are_out_of_reach(machine: Machine, host_listener: int) -> None:
    gateway = str(ipaddress.IPv4Address(machine.address) - 1)  # the bridge: the host
    # Control: the machine's own listening service answers on its own address.
    await machine.ok(
        f"(nc -l -p {PORT} -q 1 <<< own-service &) ; sleep 0.3; "
        f"nc -w 2 {machine.address} {PORT} | grep -q own-service"
    )
    for address in host_addresses(gateway):
        await machine.refused(f"nc -w 1 {address} {host_listener} | grep -q host-service")
        await machine.refused(f"nc -z -w 1 {address} 22")
