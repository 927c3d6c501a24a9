"""Playground subnets sized by their machines, the pool they come from, and host limits.

The allocator is tested as a pure function, then against a real (private) network
namespace, then once through a real playground start.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labyard.errors import InvalidInput, LimitExceeded
from labyard.manifest import manifest_from_text
from labyard.runtime.local import host_limits
from labyard.runtime.local.driver import LocalDriver
from labyard.runtime.machine_setup import addresses_needed
from labyard.runtime.subnets import MIN_PREFIX, allocate, free_block, prefix_for
from labyard.settings import DEFAULT_SUBNET_POOL, Settings
from tests.conftest import REPO, Starter

Net = ipaddress.IPv4Network
POOL = Net("198.18.0.0/16")


def nets(*texts: str) -> list[Net]:
    return [Net(t) for t in texts]


# -- sizes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hosts", "prefix"),
    [(0, 28), (1, 28), (2, 28), (13, 28), (14, 27), (16, 27), (29, 27), (30, 26), (253, 24)],
)
def test_blocks_hold_network_gateway_machines_and_broadcast(hosts: int, prefix: int) -> None:
    assert prefix_for(hosts) == prefix
    assert 2 ** (32 - prefix) >= hosts + 3
    assert prefix == MIN_PREFIX or 2 ** (32 - prefix - 1) < hosts + 3  # and no larger


def test_a_network_spans_up_to_its_highest_indexed_machine() -> None:
    machines = "".join(f"  - name: m{i}\n" for i in range(16))
    manifest = manifest_from_text(
        "kind: playground\nname: sizes\nmachines:\n"
        + machines
        + "networks:\n  - name: all\n  - name: ends\n    machines: [m0, m15]\n"
        + "  - name: first\n    machines: [m0]\n",
        "test.yaml",
    )
    needed = {n.name: addresses_needed(manifest, n.name) for n in manifest.networks}
    assert needed == {"all": 16, "ends": 16, "first": 1}
    assert [prefix_for(n) for n in needed.values()] == [27, 27, 28]


# -- finding free blocks ---------------------------------------------------------------------


def test_first_block_of_an_empty_pool() -> None:
    assert free_block(POOL, 28, []) == Net("198.18.0.0/28")


def test_blocks_are_aligned_to_their_size() -> None:
    used = nets("198.18.0.0/28")
    assert free_block(POOL, 27, used) == Net("198.18.0.32/27")
    assert free_block(POOL, 28, used) == Net("198.18.0.16/28")


def test_gaps_between_mixed_sizes_are_filled() -> None:
    used = nets("198.18.0.0/28", "198.18.0.32/27", "198.18.0.64/28")
    assert free_block(POOL, 28, used) == Net("198.18.0.16/28")
    assert free_block(POOL, 27, used) == Net("198.18.0.96/27")
    assert free_block(POOL, 26, used) == Net("198.18.0.128/26")


def test_host_networks_of_any_size_are_avoided() -> None:
    # another instance's old /24, a VPN's /20 route, a host address, all out of order
    used = nets("198.18.16.0/20", "198.18.0.0/24", "198.18.1.7/32", "198.18.1.0/30")
    assert free_block(POOL, 28, used) == Net("198.18.1.16/28")
    # a network nested in a larger one does not hide the larger one's end
    used = nets("198.18.0.0/23", "198.18.0.16/28")
    assert free_block(POOL, 28, used) == Net("198.18.2.0/28")


def test_networks_outside_the_pool_do_not_count_and_covering_ones_block_it() -> None:
    assert free_block(POOL, 28, nets("10.0.0.0/8", "198.17.255.0/24")) == Net("198.18.0.0/28")
    assert free_block(POOL, 28, nets("198.16.0.0/12")) is None
    assert free_block(Net("198.18.0.0/28"), 27, []) is None  # larger than the pool


def brute_force(pool: Net, prefix: int, used: list[Net]) -> Net | None:
    return next(
        (b for b in pool.subnets(new_prefix=prefix) if not any(b.overlaps(u) for u in used)), None
    )


def test_the_sweep_agrees_with_trying_every_block() -> None:
    rng = random.Random(7)
    pool = Net("10.20.0.0/22")
    for _ in range(300):
        used = [
            Net(
                (int(pool.network_address) + rng.randrange(1024), rng.randint(20, 32)), strict=False
            )
            for _ in range(rng.randrange(12))
        ]
        prefix = rng.choice([26, 27, 28])
        assert free_block(pool, prefix, used) == brute_force(pool, prefix, used), used


def test_filling_a_pool_with_mixed_sizes_never_overlaps() -> None:
    rng = random.Random(11)
    pool = Net("10.30.0.0/20")
    used: list[Net] = []
    while True:
        hosts = rng.choice([1, 1, 1, 2, 5, 13, 16])
        try:
            block = allocate(pool, hosts, used)
        except LimitExceeded:
            break
        assert block.subnet_of(pool) and int(block.network_address) % block.num_addresses == 0
        assert not any(block.overlaps(u) for u in used)
        used.append(block)
    assert sum(b.num_addresses for b in used) > 0.9 * pool.num_addresses


def test_one_allocation_among_thousands_of_networks_is_quick() -> None:
    used = [Net((int(POOL.network_address) + 16 * i, 28)) for i in range(4000)]
    began = time.perf_counter()
    block = free_block(POOL, 28, used)
    assert block == Net("198.18.250.0/28")
    assert time.perf_counter() - began < 0.5  # ~5 ms; trying each block would take seconds


def test_an_exhausted_pool_says_so() -> None:
    pool = Net("10.40.0.0/27")
    with pytest.raises(LimitExceeded) as caught:
        allocate(pool, 1, nets("10.40.0.0/28", "10.40.0.16/28"))
    assert str(caught.value).startswith(
        "no free /28 subnet left in the playground address pool 10.40.0.0/27"
    )
    assert "LABYARD_SUBNET_POOL" in str(caught.value)
    assert caught.value.reason == "subnet_pool_exhausted"


# -- LABYARD_SUBNET_POOL ---------------------------------------------------------------------


def test_the_pool_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABYARD_SUBNET_POOL", raising=False)
    assert Settings.from_env().local.subnet_pool == DEFAULT_SUBNET_POOL == POOL
    monkeypatch.setenv("LABYARD_SUBNET_POOL", " 10.77.0.0/20 ")
    assert Settings.from_env().local.subnet_pool == Net("10.77.0.0/20")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("lots", "is not an IPv4 network in CIDR form"),
        ("10.0.0.1/16", "is not an IPv4 network in CIDR form"),  # host bits set
        ("fd00::/64", "is not an IPv4 network in CIDR form"),
        ("10.0.0.0/29", "is smaller than one playground network (a /28)"),
    ],
)
def test_a_bad_pool_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    monkeypatch.setenv("LABYARD_SUBNET_POOL", value)
    with pytest.raises(InvalidInput) as caught:
        Settings.from_env()
    assert str(caught.value).startswith(f"LABYARD_SUBNET_POOL={value!r} {says}")


# -- the allocator on a real (private) network namespace -------------------------------------

IN_A_NETNS = """
import ipaddress, json, subprocess
from labyard.runtime.local import network
from labyard.runtime.local.names import HostNames

def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True)

ip("link", "add", "lytestbr", "type", "bridge")
ip("addr", "add", "198.18.0.1/24", "dev", "lytestbr")  # another instance's old /24
ip("link", "set", "lytestbr", "up")
ip("route", "add", "198.18.1.0/28", "dev", "lytestbr")  # routed only: no address
names = HostNames("test00", "density1", "/nonexistent")
pool = ipaddress.IPv4Network("198.18.0.0/22")
first = network.ensure_bridge(names, 0, pool, 1)
second = network.ensure_bridge(names, 1, pool, 15)
again = network.ensure_bridge(names, 0, pool, 1)
on_host = network.bridge_subnet(names.bridge(1))
print(json.dumps([str(first), str(second), str(again), str(on_host)]))
"""


def test_blocks_avoid_the_hosts_addresses_and_routes() -> None:
    """In a network namespace of its own (`unshare -n`), so the host's networking is untouched."""
    result = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", IN_A_NETNS],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    first, second, again, second_on_host = json.loads(result.stdout)
    assert first == "198.18.1.16/28"
    assert second == second_on_host == "198.18.1.32/27"
    assert again == first


# -- host limits -----------------------------------------------------------------------------


def test_host_limits_are_raised_never_lowered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(host_limits, "SYSCTL", tmp_path)
    low, high = "kernel.pid_max", "net.ipv4.neigh.default.gc_thresh3"
    for name, value in ((low, 32768), (high, 10**6)):
        host_limits.sysctl_path(name).parent.mkdir(parents=True, exist_ok=True)
        host_limits.sysctl_path(name).write_text(f"{value}\n")
    host_limits.raise_host_limits()  # the others are missing: warned about, not fatal
    assert int(host_limits.sysctl_path(low).read_text()) == host_limits.MINIMUMS[low]
    assert int(host_limits.sysctl_path(high).read_text()) == 10**6


def test_setup_makes_the_same_limits_permanent() -> None:
    script = (REPO / "scripts/setup.sh").read_text()
    block = script.split("\nLIMITS=(\n", 1)[1].split("\n)\n", 1)[0]
    pairs = [line.strip().split("=") for line in block.splitlines()]
    assert {name: int(value) for name, value in pairs} == host_limits.MINIMUMS


def test_this_host_has_the_limits_raised(settings: Settings) -> None:
    LocalDriver(settings)  # raises them, as at every driver start
    for name, minimum in host_limits.MINIMUMS.items():
        path = host_limits.sysctl_path(name)
        if path.exists():
            assert int(path.read_text()) >= minimum, name


# -- a real playground -----------------------------------------------------------------------

SMALL = """
kind: playground
name: density-small
machines:
  - name: a
    memory: 256MiB
    disk: 1GiB
  - name: b
    memory: 256MiB
    disk: 1GiB
  - name: c
    memory: 256MiB
    disk: 1GiB
"""


async def test_a_small_playground_gets_a_28_and_its_machines_answer(start: Starter) -> None:
    playground = await start(SMALL)
    bridge = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "dev", f"lyb{playground.id}0"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    gateway = ipaddress.IPv4Interface(bridge[3])
    assert gateway.network.prefixlen == 28 and gateway.ip == gateway.network.network_address + 1
    for index, machine in enumerate(playground.machines):
        assert ipaddress.IPv4Address(machine.address) == gateway.ip + 1 + index
        code, out, err = await start.exec(
            playground, "ip -4 -o addr show dev eth0 && ping -c1 -W2 a >/dev/null", machine.name
        )
        assert code == 0, err
        assert f"{machine.address}/28" in out.split()
