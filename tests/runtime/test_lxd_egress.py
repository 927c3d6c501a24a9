"""Egress on the lxd driver, against the same "outside" netns as the local driver's test
(test_egress.py): the internet yes; metadata, private and link-local addresses, the host and
other playgrounds no; LABYARD_EGRESS_ALLOW and manifest lists as documented. The rules are
the network ACL of each playground bridge, enforced by LXD; machines resolve names through
their gateway (LXD's dnsmasq on the bridge), which egress always lets them ask. LXD lets
DNS and DHCP to any of the host's addresses through (its own rules, ahead of the ACL): what
else of the host a machine may reach is tested in test_other_playgrounds_and_the_host...
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from labyard.services import Labyard, Playground
from tests.conftest import Starter, starting
from tests.runtime.test_egress import (
    METADATA,
    PUBLIC,
    RESOLVER,
    Outside,
    manifest,
    no_dns,
    outside,
    probe,
    reached,
)

__all__ = ["no_dns", "outside"]  # fixtures of test_egress.py, used here as they are

DNS_QUERY = """
import socket, sys
query = bytes.fromhex("abcd01000001000000000000076578616d706c650000010001")  # example. A
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(2)
sock.sendto(query, (sys.argv[1], 53))
try:
    answer = sock.recv(512)
    print("answered" if answer[:2] == query[:2] else "someone else")
except OSError as exc:
    print(type(exc).__name__)
"""


@dataclass(frozen=True)
class Playgrounds:
    open: Playground
    allowed: Playground
    narrowed: Playground
    closed: Playground


@pytest.fixture(scope="module")
async def lxd_starter(lxd_labyard: Labyard) -> AsyncIterator[Starter]:
    async with starting(lxd_labyard) as starter:
        yield starter


@pytest.fixture(scope="module")
async def playgrounds(lxd_starter: Starter, lxd_labyard: Labyard, outside: Outside) -> Playgrounds:
    settings = lxd_labyard.driver.settings  # type: ignore[attr-defined]
    narrow = json.dumps([outside.private, METADATA, f"{PUBLIC}:8001"])
    open_ = await lxd_starter(manifest("lx-open"))
    closed = await lxd_starter(manifest("lx-closed", "false"))
    local = dataclasses.replace(settings.local, egress_allow=(f"{outside.private}:8000",))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lxd_labyard.driver, "settings", dataclasses.replace(settings, local=local))
        allowed = await lxd_starter(manifest("lx-allowed"))
        narrowed = await lxd_starter(manifest("lx-narrowed", narrow))
    return Playgrounds(open_, allowed, narrowed, closed)


def gateway(playground: Playground) -> str:
    address = playground.machines[0].address
    return address.rsplit(".", 1)[0] + "." + str(int(address.rsplit(".", 1)[1]) - 1)


async def dns(starter: Starter, playground: Playground, server: str) -> str:
    command = f"python3 -c {shlex.quote(DNS_QUERY)} {server}"
    code, out, err = await starter.exec(playground, command)
    assert code == 0, err
    return out.strip()


async def test_the_internet_is_reachable_and_private_and_metadata_addresses_are_not(
    lxd_starter: Starter, playgrounds: Playgrounds, outside: Outside
) -> None:
    want = {f"{PUBLIC}:8000", f"{PUBLIC}:8001"}
    result = await probe(
        lxd_starter,
        playgrounds.open,
        [
            *want,
            f"{METADATA}:8000",
            f"{outside.private}:8000",
            f"{RESOLVER}:8000",
            f"{RESOLVER}:53",
        ],
    )
    assert reached(result) == want, result


async def test_machines_resolve_through_their_gateway(
    lxd_starter: Starter, playgrounds: Playgrounds
) -> None:
    code, out, err = await lxd_starter.exec(playgrounds.open, "cat /etc/resolv.conf")
    assert (code, out.split()) == (0, ["nameserver", gateway(playgrounds.open)]), err
    assert await dns(lxd_starter, playgrounds.open, gateway(playgrounds.open)) == "answered"


async def test_the_operator_allow_list_reaches_a_private_destination(
    lxd_starter: Starter, playgrounds: Playgrounds, outside: Outside
) -> None:
    want = {f"{outside.private}:8000", f"{PUBLIC}:8000"}
    result = await probe(
        lxd_starter, playgrounds.allowed, [*want, f"{outside.private}:8001", f"{METADATA}:8000"]
    )
    assert reached(result) == want, result


async def test_a_manifest_list_narrows_egress_and_cannot_widen_it(
    lxd_starter: Starter, playgrounds: Playgrounds, outside: Outside
) -> None:
    want = {f"{outside.private}:8000", f"{PUBLIC}:8001"}
    not_listed = [f"{PUBLIC}:8000"]
    listed_but_not_allowed = [f"{outside.private}:8001", f"{METADATA}:8000"]
    result = await probe(
        lxd_starter, playgrounds.narrowed, [*want, *not_listed, *listed_but_not_allowed]
    )
    assert reached(result) == want, result


async def test_no_egress_reaches_nothing_outside(
    lxd_starter: Starter, playgrounds: Playgrounds, outside: Outside
) -> None:
    result = await probe(
        lxd_starter, playgrounds.closed, [f"{PUBLIC}:8000", f"{outside.private}:8000"]
    )
    assert reached(result) == set(), result
    # The control: the same probe from a playground with egress gets out.
    assert reached(await probe(lxd_starter, playgrounds.open, [f"{PUBLIC}:8000"]))


async def test_other_playgrounds_and_the_host_are_out_of_reach(
    lxd_starter: Starter, playgrounds: Playgrounds
) -> None:
    other = playgrounds.allowed.machines[0].address
    own = playgrounds.open.machines[0].address
    check = (
        "import socket, sys\n"
        "for host in sys.argv[1:]:\n"
        "    try:\n"
        "        socket.create_connection((host, 22), timeout=2).close(); print(host, 'open')\n"
        "    except OSError as exc:\n"
        "        print(host, type(exc).__name__)\n"
    )
    targets = [own, other, gateway(playgrounds.open)]
    command = f"python3 -c {shlex.quote(check)} {' '.join(targets)}"
    code, out, err = await lxd_starter.exec(playgrounds.open, command)
    assert code == 0, err
    seen = dict(line.split() for line in out.splitlines())
    assert seen[own] == "open", seen  # the control: its own sshd
    assert seen[other] != "open" and seen[gateway(playgrounds.open)] != "open", seen
