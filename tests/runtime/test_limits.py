"""A machine's manifest limits hold from inside it (memory, processes, disk, CPU), and
hitting one hurts neither the machine's own systemd nor the host."""

from __future__ import annotations

import asyncio
import os
import shlex
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from labyard.runtime.local import cgroups
from labyard.runtime.local.names import cgroup_parent
from labyard.services import Playground
from labyard.settings import Settings
from tests.conftest import Starter

T = TypeVar("T")
MiB = 1 << 20
GiB = 1 << 30


# -- helpers ---------------------------------------------------------------------------------


def manifest(**limits: str | int | float) -> str:
    """A one-machine playground (`m`, image linux) with the given machine limits."""
    fields = "".join(f"    {key}: {value}\n" for key, value in limits.items())
    return f"kind: playground\nname: limits\nmachines:\n  - name: m\n{fields}"


async def wait_for(
    probe: Callable[[], Awaitable[tuple[bool, T]]], what: str, timeout_s: float = 30
) -> T:
    """Poll `probe` (-> (done, observation)) until done; fail with the last observation."""
    deadline = time.monotonic() + timeout_s
    while True:
        done, seen = await probe()
        if done:
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout_s:g} s; last saw {seen!r}")
        await asyncio.sleep(0.25)


def machine_cgroup(settings: Settings, playground: Playground, *markers: str) -> Path:
    """The machine's cgroup dir (host side) in the hierarchy with one of the files `markers`
    (the v1 name, then the v2 one)."""
    found = cgroups.machine_cgroups(cgroup_parent(settings.instance), f"{playground.id}-m")
    with_marker = [p for m in markers for p in found if (p / m).exists()]
    assert with_marker, f"no cgroup with {markers} among {found}"
    return with_marker[0]


def read_int(path: Path) -> int:
    return int(path.read_text().split()[0])


def keyed(path: Path) -> dict[str, int]:
    """A flat keyed cgroup file ("name value" lines) as a dict."""
    return {k: int(v) for k, v in (line.split() for line in path.read_text().splitlines())}


def oom_kills(memcg: Path) -> int:
    """OOM kills in the machine: v2 counts them hierarchically, v1 in the victim's own cgroup."""
    if (memcg / "memory.events").exists():
        return keyed(memcg / "memory.events").get("oom_kill", 0)
    return sum(keyed(f).get("oom_kill", 0) for f in memcg.rglob("memory.oom_control"))


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemAvailable in /proc/meminfo")


def host_free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


async def machine_is_healthy(start: Starter, playground: Playground) -> None:
    """A new exec works and systemd (PID 1) is still running with no failed units."""
    code, out, err = await start.exec(
        playground, "ps -o comm= -p 1; systemctl is-system-running --wait", timeout=30
    )
    assert (code, out.split()) == (0, ["systemd", "running"]), (code, out, err)


def python(script: str) -> str:
    return f"python3 -c {shlex.quote(script)}"


# -- memory ----------------------------------------------------------------------------------

HOG = python("b = b'x' * (600 << 20); print('allocated', len(b))")


async def test_memory_hog_is_oom_killed_and_the_machine_survives(
    start: Starter, settings: Settings
) -> None:
    playground = await start(manifest(memory="256MiB"))
    memcg = machine_cgroup(settings, playground, "memory.limit_in_bytes", "memory.max")
    v1 = (memcg / "memory.limit_in_bytes").exists()
    assert read_int(memcg / ("memory.limit_in_bytes" if v1 else "memory.max")) == 256 * MiB
    kills_before = oom_kills(memcg)

    code, out, err = await start.exec(playground, HOG, timeout=60)

    assert code == 128 + 9, (code, out, err)  # SIGKILL from the OOM killer
    assert "allocated" not in out
    assert oom_kills(memcg) > kills_before
    peak = memcg / ("memory.max_usage_in_bytes" if v1 else "memory.peak")
    if peak.exists():
        assert read_int(peak) <= 256 * MiB
    await machine_is_healthy(start, playground)
    assert mem_available() > 1 * GiB


# -- processes -------------------------------------------------------------------------------

# Forks sleepers until fork fails (at most 1000; each sleeper exits by itself after 30 s),
# reports how many it got, why it stopped and the machine's pids.current, then kills them.
FORKER = python(
    """
import errno, os, signal, time
kids, failure = [], 0
for _ in range(1000):
    try:
        pid = os.fork()
    except OSError as e:
        failure = e.errno
        break
    if pid == 0:
        try:
            time.sleep(30)
        finally:
            os._exit(0)
    kids.append(pid)
current = open('/sys/fs/cgroup/pids/pids.current').read().split()[0]
for pid in kids:
    os.kill(pid, signal.SIGKILL)
for pid in kids:
    os.waitpid(pid, 0)
print(len(kids), errno.errorcode.get(failure, 'none'), current)
"""
)


async def test_fork_loop_stops_at_the_process_limit(start: Starter, settings: Settings) -> None:
    playground = await start(manifest(processes=200))
    pids_cg = machine_cgroup(settings, playground, "pids.max")
    assert pids_cg.joinpath("pids.max").read_text().strip() == "200"

    code, out, err = await start.exec(playground, FORKER, timeout=60)

    assert code == 0, (code, out, err)
    forked, failure, current = out.split()
    assert failure == "EAGAIN", out  # "Resource temporarily unavailable"
    # The whole machine's budget (less systemd, sshd, ...), not a per-unit share of it.
    assert 150 <= int(forked) < 200, out
    assert 190 <= int(current) <= 200, out
    if (pids_cg / "pids.peak").exists():
        assert read_int(pids_cg / "pids.peak") <= 200

    async def sleepers_gone() -> tuple[bool, int]:
        count = read_int(pids_cg / "pids.current")
        return count < 50, count

    await wait_for(sleepers_gone, "machine back to a few processes", timeout_s=20)
    await machine_is_healthy(start, playground)


# -- disk ------------------------------------------------------------------------------------


async def df_root(start: Starter, playground: Playground) -> tuple[int, int]:
    """(size, available) bytes of / in the machine."""
    code, out, err = await start.exec(playground, "df -B1 --output=size,avail / | tail -1")
    assert code == 0, (code, out, err)
    size, avail = out.split()
    return int(size), int(avail)


async def test_disk_fills_up_at_the_disk_limit_not_the_host(
    start: Starter, settings: Settings
) -> None:
    playground = await start(manifest(disk="1GiB"))
    host_before = host_free(settings.data_dir)

    code, out, err = await start.exec(
        playground, "dd if=/dev/zero of=/root/fill bs=1M count=2048", timeout=90
    )

    assert code != 0, (code, out, err)
    assert "No space left on device" in err
    size, avail = await df_root(start, playground)
    assert 0.9 * GiB <= size <= 1 * GiB
    assert avail < 32 * MiB
    assert host_before - host_free(settings.data_dir) < 1.2 * GiB

    code, out, err = await start.exec(playground, "rm /root/fill")
    assert code == 0, (code, out, err)

    async def freed() -> tuple[bool, int]:
        _, avail = await df_root(start, playground)
        return avail > 0.9 * GiB, avail

    await wait_for(freed, "space back after rm", timeout_s=20)


# -- cpu -------------------------------------------------------------------------------------

# Spins for 2 s of wall time; prints the share of one core it got.
SPIN = python(
    """
import time
t0, c0 = time.monotonic(), time.process_time()
while time.monotonic() - t0 < 2:
    pass
print((time.process_time() - c0) / (time.monotonic() - t0))
"""
)


async def test_half_a_cpu_gets_about_half_a_core(start: Starter, settings: Settings) -> None:
    playground = await start(manifest(cpus=0.5))
    cpu_cg = machine_cgroup(settings, playground, "cpu.cfs_quota_us", "cpu.max")
    throttled_before = keyed(cpu_cg / "cpu.stat")["nr_throttled"]

    code, out, err = await start.exec(playground, SPIN, timeout=30)

    assert code == 0, (code, out, err)
    assert 0.2 <= float(out) <= 0.6, out
    assert keyed(cpu_cg / "cpu.stat")["nr_throttled"] > throttled_before
