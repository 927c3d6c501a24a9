"""Machines share the host's CPU fairly: every machine has the same weight whatever it asks
for, none may use the whole host, and a machine cannot change either from inside.

How much that keeps other playgrounds responsive under a fork bomb is measured by
bench/fair_cpu.py, not here: these tests check the limits the host actually applied."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labyard.runtime.local import cgroups, oci
from labyard.runtime.local.names import cgroup_parent
from labyard.services import Playground
from labyard.settings import Settings
from tests.conftest import Starter
from tests.runtime.test_limits import keyed, python

HOST_CPUS = len(os.sched_getaffinity(0))

# A greedy machine (more CPUs than any host here has) and a modest one, in one playground.
TWO_MACHINES = """\
kind: playground
name: fair-cpu
machines:
  - name: greedy
    cpus: 64
  - name: modest
    cpus: 0.5
"""


def machine_cgroup(settings: Settings, playground: Playground, machine: str, *markers: str) -> Path:
    """The machine's host cgroup in the hierarchy with one of the files `markers`."""
    found = cgroups.machine_cgroups(cgroup_parent(settings.instance), f"{playground.id}-{machine}")
    with_marker = [p for m in markers for p in found if (p / m).exists()]
    assert with_marker, f"no cgroup with {markers} among {found}"
    return with_marker[0]


def cpu_cgroup(settings: Settings, playground: Playground, machine: str) -> Path:
    """The machine's host cgroup in the hierarchy with the cpu controller (v1, then v2)."""
    return machine_cgroup(settings, playground, machine, "cpu.cfs_quota_us", "cpu.max")


def quota_cpus(cg: Path) -> float:
    """The machine's CPU quota in CPUs (inf when unlimited)."""
    if (cg / "cpu.cfs_quota_us").exists():  # v1
        quota = int((cg / "cpu.cfs_quota_us").read_text())
        return quota / int((cg / "cpu.cfs_period_us").read_text()) if quota > 0 else float("inf")
    quota_text, period = (cg / "cpu.max").read_text().split()
    return float("inf") if quota_text == "max" else int(quota_text) / int(period)


def weight_file(cg: Path) -> Path:
    return cg / "cpu.shares" if (cg / "cpu.shares").exists() else cg / "cpu.weight"


def v1_shares_as_v2_weight(shares: int) -> int:
    """runc 1.1's conversion of OCI shares to cgroup v2 cpu.weight."""
    return 1 + ((shares - 2) * 9999) // 262142


# -- the ceiling, without machines -----------------------------------------------------------


@pytest.mark.parametrize(("host", "ceiling"), [(1, 0.5), (2, 1.5), (4, 3.5), (64, 63.5)])
def test_the_ceiling_leaves_the_host_half_a_core(host: int, ceiling: float) -> None:
    assert oci.cpu_ceiling(host) == ceiling


def test_a_machine_asking_for_less_than_the_ceiling_gets_what_it_asks() -> None:
    resources = oci.cpu_resources(0.5)
    assert resources["quota"] == resources["period"] // 2
    assert resources["shares"] == oci.CPU_SHARES


# -- on real machines ------------------------------------------------------------------------


async def test_machines_get_equal_weight_and_no_machine_the_whole_host(
    start: Starter, settings: Settings
) -> None:
    playground = await start(TWO_MACHINES)
    greedy = cpu_cgroup(settings, playground, "greedy")
    modest = cpu_cgroup(settings, playground, "modest")

    # Weights only compare siblings: both machines sit in the instance's one parent.
    assert greedy.parent == modest.parent
    assert greedy.parent.name == cgroup_parent(settings.instance)
    # Equal weight, whatever each asked for.
    weights = {weight_file(cg).read_text().strip() for cg in (greedy, modest)}
    expected = oci.CPU_SHARES
    if weight_file(greedy).name == "cpu.weight":
        expected = v1_shares_as_v2_weight(oci.CPU_SHARES)
    assert weights == {str(expected)}
    # A quota below the host's CPUs for the greedy one; the modest one gets what it asked.
    assert quota_cpus(greedy) == oci.cpu_ceiling(HOST_CPUS) < HOST_CPUS
    assert quota_cpus(modest) == 0.5
    # The process limit that bounds a fork bomb is still there.
    pids = machine_cgroup(settings, playground, "greedy", "pids.max")
    assert (pids / "pids.max").read_text().strip() == "1024"


# Spins one process per host CPU for 2 s, so a machine allowed the whole host would use it.
SPIN_EVERY_CPU = python(
    """
import os, time
kids = []
for _ in range(os.cpu_count()):
    pid = os.fork()
    if pid == 0:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2:
            pass
        os._exit(0)
    kids.append(pid)
for pid in kids:
    os.waitpid(pid, 0)
print('spun', len(kids))
"""
)


async def test_a_machine_busy_on_every_cpu_is_held_below_the_host(
    start: Starter, settings: Settings
) -> None:
    playground = await start(TWO_MACHINES)
    greedy = cpu_cgroup(settings, playground, "greedy")
    throttled_before = keyed(greedy / "cpu.stat")["nr_throttled"]

    code, out, err = await start.exec(playground, SPIN_EVERY_CPU, machine="greedy", timeout=60)

    assert (code, out.strip()) == (0, f"spun {HOST_CPUS}"), (code, out, err)
    # Throttled: it hit its quota, which a machine allowed every CPU of the host never does.
    assert keyed(greedy / "cpu.stat")["nr_throttled"] > throttled_before


async def test_root_in_a_machine_cannot_raise_its_own_weight_or_quota(
    start: Starter, settings: Settings
) -> None:
    playground = await start(TWO_MACHINES)
    greedy = cpu_cgroup(settings, playground, "greedy")
    weight = weight_file(greedy).read_text()
    # The machine's cgroup namespace makes its own cgroup the root of its /sys/fs/cgroup.
    script = (
        "for f in cpu/cpu.shares cpu/cpu.cfs_quota_us cpu.weight cpu.max; do "
        "  p=/sys/fs/cgroup/$f; [ -e $p ] || continue; "
        "  if echo 262144 > $p; then echo wrote $f; else echo refused $f; fi; "
        "done 2>/dev/null"
    )

    code, out, err = await start.exec(playground, script, machine="greedy")

    assert code == 0, (code, out, err)
    assert out.split() and "wrote" not in out, out
    assert weight_file(greedy).read_text() == weight
    assert quota_cpus(greedy) == oci.cpu_ceiling(HOST_CPUS)
