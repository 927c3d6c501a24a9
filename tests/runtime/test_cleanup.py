"""Nothing of a playground outlives it on the host: not after destroy, not after a failed or
cancelled start, not when many start and go at once.

The host is inspected with its own tools (mountinfo, /var/run/netns, `ip`, cgroupfs, runc,
nft, losetup, /proc), not through the driver, so a driver that forgets a resource also
forgets to look for it and cannot hide it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import secrets
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import labyard.services.playgrounds as playgrounds_service
from labyard.errors import LabyardError
from labyard.manifest import Manifest, manifest_from_text
from labyard.runtime import new_playground_id
from labyard.runtime.local import userns
from labyard.runtime.local.names import USERNS_DIR, netns_prefix, nft_table
from labyard.services import Labyard
from labyard.services.reconciler import reconcile
from labyard.settings import Settings
from tests.conftest import Starter

DEADLINE_S = 10.0
CGROUP_ROOT = Path("/sys/fs/cgroup")
NETNS_DIR = Path("/var/run/netns")


def manifest(name: str, machines: int = 2, init: str = "") -> Manifest:
    text = f"kind: playground\nname: {name}\nmachines:\n"
    for index in range(machines):
        text += f"  - name: m{index}\n    memory: 256MiB\n    disk: 1GiB\n"
    return manifest_from_text(text + init, "test.yaml")


async def wait_for(
    what: str,
    check: Callable[[], Awaitable[bool]],
    deadline_s: float = DEADLINE_S,
    interval_s: float = 0.05,
) -> None:
    """Poll `check` until it holds; fail with `what` once the deadline passes."""
    end = time.monotonic() + deadline_s
    while not await check():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline_s:g} s waiting for {what}")
        await asyncio.sleep(interval_s)


def _out(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=False).stdout


def bridge_subnet(playground_id: str) -> str:
    """The subnet of the playground's first network, from its bridge's address on the host."""
    bridge = _out("ip", "-4", "-o", "addr", "show", "dev", f"lyb{playground_id}0").split()
    return str(ipaddress.IPv4Interface(bridge[3]).network)


# -- what a playground leaves on the host ---------------------------------------------------


def host_resources(
    settings: Settings, playground_id: str, subnets: list[str]
) -> dict[str, list[str]]:
    """Every host resource of the playground, by kind; a kind with nothing is left out."""
    directory = settings.playgrounds_dir / playground_id
    found: dict[str, list[str]] = {
        "mount": _mounts_under(directory),
        "netns": _netns(settings, playground_id),
        "link": [line for line in _out("ip", "-o", "link").splitlines() if playground_id in line],
        "cgroup": _cgroups(playground_id),
        "runc": [
            c
            for c in _out("runc", "--root", str(settings.runc_root), "list", "-q").split()
            if c.startswith(f"{playground_id}-")
        ],
        "nft": _nft_leftovers(settings, playground_id, subnets),
        "loop": [line for line in _out("losetup", "-a").splitlines() if str(directory) in line],
        "process": _processes_in_cgroups_of(playground_id),
        "dir": [str(directory)] if directory.exists() else [],
        "userns": _userns(settings, playground_id),
        "ids": _id_ranges(settings, playground_id),
    }
    return {kind: items for kind, items in found.items() if items}


ALL_KINDS = {
    "mount",
    "netns",
    "link",
    "cgroup",
    "runc",
    "nft",
    "loop",
    "process",
    "dir",
    "userns",
    "ids",
}


def _mounts_under(directory: Path) -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point == str(directory) or point.startswith(f"{directory}/"):
            points.append(point)
    return points


def _netns(settings: Settings, playground_id: str) -> list[str]:
    if not NETNS_DIR.exists():
        return []
    prefix = f"{netns_prefix(settings.instance)}{playground_id}"
    return [p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix)]


def _userns(settings: Settings, playground_id: str) -> list[str]:
    """Kept user namespaces of the playground's machines (nsfs bind mounts)."""
    if not USERNS_DIR.exists():
        return []
    prefix = f"{netns_prefix(settings.instance)}{playground_id}"
    return [p.name for p in USERNS_DIR.iterdir() if p.name.startswith(prefix)]


def _id_ranges(settings: Settings, playground_id: str) -> list[str]:
    """Host id ranges still allocated to the playground's machines."""
    directory = settings.local.id_ranges_dir
    if not directory.exists():
        return []
    mine = f"@{settings.instance}:{playground_id}:"  # files are <start>@<owner, / as :>
    return [p.name for p in directory.iterdir() if mine in p.name]


def _cgroups(playground_id: str) -> list[str]:
    found = []
    for parent, dirs, _ in os.walk(CGROUP_ROOT):
        found += [f"{parent}/{d}" for d in dirs if d.startswith(f"{playground_id}-")]
    return found


def _nft_leftovers(settings: Settings, playground_id: str, subnets: list[str]) -> list[str]:
    table = nft_table(settings.instance)
    listing = _out("nft", "list", "table", "inet", table)
    found = [line.strip() for line in listing.splitlines() if f"lyb{playground_id}" in line]
    for subnet in subnets:  # a stale egress entry would give NAT to the subnet's next owner
        element = f"{{ {ipaddress.IPv4Network(subnet).network_address + 2} }}"
        get = ["nft", "get", "element", "inet", table, "egress_nets", element]
        if subprocess.run(get, capture_output=True, check=False).returncode == 0:
            found.append(f"egress_nets has {subnet}")
    return found


def _processes_in_cgroups_of(playground_id: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cgroups = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            continue  # it exited meanwhile
        if f"/{playground_id}-" in cgroups:
            found.append(pid)
    return found


async def assert_nothing_left(settings: Settings, playground_id: str, subnets: list[str]) -> None:
    left: dict[str, list[str]] = {}

    async def gone() -> bool:
        nonlocal left
        left = await asyncio.to_thread(host_resources, settings, playground_id, subnets)
        return not left

    try:
        await wait_for(f"playground {playground_id} to leave nothing behind", gone)
    except pytest.fail.Exception:
        pytest.fail(f"playground {playground_id} left behind: {left}")


def egress_nets(settings: Settings) -> set[str]:
    """The elements of the instance's egress set (JSON listing: no text-format guessing)."""
    table = nft_table(settings.instance)
    listing = _out("nft", "-j", "list", "set", "inet", table, "egress_nets")
    if not listing:
        return set()
    elements: set[str] = set()
    for item in json.loads(listing)["nftables"]:
        for element in item.get("set", {}).get("elem", []):
            prefix = element.get("prefix", element)
            elements.add(f"{prefix['addr']}/{prefix['len']}" if "addr" in prefix else str(prefix))
    return elements


# -- tests -----------------------------------------------------------------------------------


async def test_destroy_leaves_nothing_behind(
    labyard: Labyard, settings: Settings, start: Starter
) -> None:
    playground = await start(manifest("cleanup-destroy"))
    subnets = [bridge_subnet(playground.id)]
    before = await asyncio.to_thread(host_resources, settings, playground.id, subnets)
    assert set(before) == ALL_KINDS, f"the checks must see a live playground: {before}"

    await labyard.playgrounds.destroy(playground.id)
    await assert_nothing_left(settings, playground.id, subnets)
    assert playground.id not in [p.id for p in await labyard.playgrounds.list()]
    assert playground.id not in await labyard.driver.list()

    await labyard.driver.destroy(playground.id)  # again: nothing to do, no error
    await assert_nothing_left(settings, playground.id, subnets)


def _runc_running(container_prefix: str) -> bool:
    """Whether a `runc ... create|start ... <container>` process is running right now."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        starting = b"create" in argv or b"start" in argv
        if starting and any(a.startswith(container_prefix.encode()) for a in argv):
            return True
    return False


@pytest.fixture
def issued_ids(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records the ids the playground service hands out (the real generator still makes them)."""
    issued: list[str] = []

    def recording() -> str:
        issued.append(new_playground_id())
        return issued[-1]

    monkeypatch.setattr(playgrounds_service, "new_playground_id", recording)
    return issued


async def test_failed_init_task_rolls_the_start_back(
    labyard: Labyard, settings: Settings, issued_ids: list[str]
) -> None:
    existing, egress = set(await labyard.driver.list()), egress_nets(settings)
    boom = manifest("cleanup-boom", init="init:\n  - name: boom\n    run: exit 1\n")
    with pytest.raises(LabyardError, match="boom"):
        await labyard.playgrounds.start(boom)

    assert len(issued_ids) == 1
    assert issued_ids[0] not in [p.id for p in await labyard.playgrounds.list()]
    assert set(await labyard.driver.list()) - existing == set()
    await assert_nothing_left(settings, issued_ids[0], [])
    assert egress_nets(settings) <= egress


@pytest.mark.parametrize("attempt", [1, 2])  # a race: two tries catch a regression more often
async def test_cancelled_start_rolls_back(
    labyard: Labyard, settings: Settings, issued_ids: list[str], attempt: int
) -> None:
    """Cancelled half-way: while runc starts one machine and the others are being made."""
    existing, egress = set(await labyard.driver.list()), egress_nets(settings)
    starting = asyncio.create_task(labyard.playgrounds.start(manifest("cleanup-cancel", 3)))

    async def half_way() -> bool:
        if starting.done():  # finished or failed before it could be caught: say how
            raise AssertionError(f"the start ended before runc ran: {starting.result()}")
        return bool(issued_ids) and _runc_running(f"{issued_ids[0]}-")

    await wait_for("runc starting a machine", half_way, interval_s=0.002)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting

    assert issued_ids[0] not in [p.id for p in await labyard.playgrounds.list()]
    await assert_nothing_left(settings, issued_ids[0], [])
    assert set(await labyard.driver.list()) - existing == set()
    assert egress_nets(settings) <= egress


async def test_concurrent_starts_and_destroys(
    labyard: Labyard, settings: Settings, start: Starter
) -> None:
    started = await asyncio.gather(*(start(manifest(f"cleanup-many-{i}", 1)) for i in range(3)))
    assert all(p.state == "running" for p in started)
    subnets = {p.id: bridge_subnet(p.id) for p in started}
    assert len(set(subnets.values())) == 3, subnets
    for playground in started:
        address = ipaddress.IPv4Address(playground.machines[0].address)
        assert address in ipaddress.IPv4Network(subnets[playground.id])

    await asyncio.gather(*(labyard.playgrounds.destroy(p.id) for p in started))
    for playground_id, subnet in subnets.items():
        await assert_nothing_left(settings, playground_id, [subnet])
    remaining = {p.id for p in await labyard.playgrounds.list()}
    assert remaining.isdisjoint(subnets)


# -- destroy finishes while something on the host holds the playground's mounts -------------

MACHINE_KINDS = {"runc", "process", "cgroup", "link", "nft", "mount"}
"""What a destroy removes at once whatever holds the playground's namespaces and mounts."""


async def assert_destroyed_at_once(
    labyard: Labyard, settings: Settings, playground_id: str, subnets: list[str]
) -> None:
    """The row is gone as soon as destroy returns; no machine is left running."""
    assert playground_id not in [p.id for p in await labyard.playgrounds.list()]
    left: dict[str, list[str]] = {}

    async def machines_gone() -> bool:
        nonlocal left
        found = await asyncio.to_thread(host_resources, settings, playground_id, subnets)
        left = {kind: items for kind, items in found.items() if kind in MACHINE_KINDS}
        return not left

    try:
        await wait_for(f"the machines of {playground_id} to be gone", machines_gone)
    except pytest.fail.Exception:
        pytest.fail(f"playground {playground_id} left machines behind: {left}")


def _mount_points(mountinfo: Path) -> list[str]:
    return [line.split()[4] for line in mountinfo.read_text().splitlines()]


async def test_destroy_finishes_while_another_mount_namespace_holds_copies(
    labyard: Labyard, settings: Settings, start: Starter
) -> None:
    """A process that unshared its mount namespace while the playground ran (a service with
    PrivateTmp=, `unshare -m`) holds copies of its mounts: destroy returns, the row is gone
    at once, no machine is left; once the holder is gone, a reconcile round leaves nothing
    of the playground on the host. The control, no holder: test_destroy_leaves_nothing_behind.
    """
    playground = await start("linux")
    subnets = [bridge_subnet(playground.id)]
    directory = str(settings.playgrounds_dir / playground.id)
    netns = f"{NETNS_DIR.resolve()}/{netns_prefix(settings.instance)}{playground.id}-"
    holder = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sleep", "600"])

    async def holds_copies() -> bool:  # its disk and its network namespace, at least
        points = _mount_points(Path(f"/proc/{holder.pid}/mountinfo"))
        on_disk = any(p.startswith(f"{directory}/") for p in points)
        return on_disk and any(p.startswith(netns) for p in points)

    try:
        await wait_for("the holder to hold copies of the playground's mounts", holds_copies)
        await labyard.playgrounds.destroy(playground.id)
        await assert_destroyed_at_once(labyard, settings, playground.id, subnets)
    finally:
        holder.kill()
        holder.wait()

    await reconcile(labyard.playgrounds)
    await assert_nothing_left(settings, playground.id, subnets)
    assert playground.id not in await labyard.driver.list()


def _binds_on(directory: Path) -> int:
    """How many mounts sit on `directory` itself (what `ip netns add` may bind there)."""
    return _mount_points(Path("/proc/self/mountinfo")).count(str(directory.resolve()))


def _ip_netns(*args: str) -> None:
    subprocess.run(["ip", "netns", *args], capture_output=True, check=True)


async def test_destroy_finishes_after_ip_netns_add(
    labyard: Labyard, settings: Settings, start: Starter
) -> None:
    """`ip netns add` on the host, the first time, binds /run/netns over itself (recursively:
    labyard's namespace mounts copied on top, the originals hidden underneath, their files
    impossible to remove). The local driver makes /run/netns a shared mount of its own when it
    first starts on a host (as `ip netns` does), so `ip netns add` then binds nothing and a
    destroy after it leaves nothing, at once. The control, no `ip netns add`:
    test_destroy_leaves_nothing_behind; the hidden case itself:
    test_a_hidden_namespace_mount_is_left_for_later."""
    playground = await start("linux")
    subnets = [bridge_subnet(playground.id)]
    binds = _binds_on(NETNS_DIR)
    assert binds >= 1, "the driver should have made /run/netns a mount of its own"
    name = f"lytest-held-{secrets.token_hex(4)}"  # not labyard's: no instance prefix
    _ip_netns("add", name)
    try:
        assert _binds_on(NETNS_DIR) == binds  # nothing bound over labyard's namespaces
        await labyard.playgrounds.destroy(playground.id)
        await assert_nothing_left(settings, playground.id, subnets)
        assert playground.id not in await labyard.driver.list()
    finally:
        _ip_netns("delete", name)


def test_a_hidden_namespace_mount_is_left_for_later(tmp_path: Path) -> None:
    """What destroy does where /run/netns was bound over itself before labyard came (its
    namespaces hidden, as `ip netns add` hides them): the file is left, not an error, and
    removed by a later try once the bind is gone. On a private directory, with a bind mount
    standing in for a namespace file; the control is the same file with nothing hiding it."""
    directory = tmp_path / "netns"
    directory.mkdir()
    held, free = directory / "held", directory / "free"
    for path in (held, free):
        path.touch()
        subprocess.run(["mount", "--bind", "/dev/null", str(path)], check=True)
    subprocess.run(["mount", "--rbind", str(directory), str(directory)], check=True)
    try:
        assert userns.remove(held) is False and held.exists()
    finally:
        subprocess.run(["umount", "--lazy", str(directory)], check=True)
    assert userns.remove(held) is True and not held.exists()
    assert userns.remove(free) is True and not free.exists()  # the control
