"""A machine cannot exhaust the host: its memory, process and disk limits hold against a
deliberate attack, and the host stays responsive while they are hit."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from tests.security.conftest import DISK_MIB, MEMORY_MIB, PROCESSES, Machine

pytestmark = pytest.mark.asyncio(loop_scope="session")


def host_responds() -> float:
    """Seconds the host takes to fork and run a process: it must stay small."""
    start = time.monotonic()
    subprocess.run(["true"], check=True)
    return time.monotonic() - start


async def test_memory_hog_is_killed_inside(machine: Machine) -> None:
    await machine.ok("head -c 64M /dev/zero | tail > /dev/null")  # control: a modest use
    hog = f"python3 -c 'x = bytearray({2 * MEMORY_MIB} << 20); print(len(x))'"
    await machine.refused(hog)
    assert host_responds() < 1.0
    await machine.ok("systemctl is-system-running --wait >/dev/null; true")
    code, out = await machine.sh("echo still-here")
    assert code == 0 and "still-here" in out


async def test_fork_bomb_meets_the_process_limit(machine: Machine) -> None:
    await machine.ok("for i in $(seq 20); do sleep 1 & done; wait")  # control: 20 processes
    bomb = (
        "python3 -c '\nimport os, time\nn = 0\ntry:\n"
        f"    for _ in range({PROCESSES * 4}):\n"
        "        if os.fork() == 0:\n            time.sleep(20); os._exit(0)\n        n += 1\n"
        'except OSError as e:\n    print("stopped at", n, e.strerror, flush=True); os._exit(1)\n\''
    )
    out = await machine.refused(bomb, timeout=120)
    assert "stopped at" in out and "Resource temporarily unavailable" in out, out
    assert host_responds() < 1.0
    await machine.ok("pkill -f 'time[.]sleep'; true")


async def test_disk_fill_stops_at_the_disk_limit(machine: Machine) -> None:
    free_before = shutil.disk_usage("/").free
    await machine.ok("dd if=/dev/zero of=/root/small bs=1M count=16 status=none && rm /root/small")
    out = await machine.refused(
        f"dd if=/dev/zero of=/root/fill bs=4M count={DISK_MIB} status=none", timeout=300
    )
    # ENOSPC from a disk of its own (local), EDQUOT from a quota on a shared pool (lxd)
    assert "No space left" in out or "Disk quota exceeded" in out, out
    # The host lost at most the machine's disk, never its own free space.
    assert free_before - shutil.disk_usage("/").free < (DISK_MIB + 256) << 20
    await machine.ok("rm -f /root/fill && sync")
    assert os.path.exists("/")  # the host filesystem is still there and writable
    assert host_responds() < 1.0
