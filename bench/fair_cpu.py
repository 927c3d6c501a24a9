"""Fair CPU between machines: how fast one playground answers while another runs a fork bomb.

Two playgrounds on a private labyard instance: the hog (`docker` by default, the one users
saw take the host) and the victim (`linux`). Once both have booted:
  control: for --seconds, `true` over a fresh SSH connection to the victim (as `labyard
           exec` does), again and again, each followed by `/bin/true` spawned on the host
  hog:     the same, while root in the hog machine runs a fork bomb (or N busy loops);
           the bomb is bounded by the machine's own process limit, and by `timeout` as a
           backstop; the hog playground is destroyed at the end, which ends it
Reported per phase: the victim's exec median and p95 (nearest rank), the host's spawn
median and p95, the load average and the CPUs each machine used; and the ratio hog/control.

`--old-limits` starts the machines with the CPU limits of before the fair-CPU change (quota
= the manifest's `cpus`, no shares), for a before/after comparison in one checkout.

Run as root: `.venv/bin/python bench/fair_cpu.py`. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from start_latency import (  # beside this script
    check_images,
    machine_facts,
    nearest_rank,
    private_settings,
    teardown,
)

from labyard.errors import LabyardError
from labyard.manifest import load_manifest
from labyard.runtime.local import cgroups, oci
from labyard.runtime.local.names import cgroup_parent
from labyard.services import Labyard, Playground

REPO = Path(__file__).resolve().parent.parent
TARGET_P95_S = 1.0
"""The victim's exec p95 while the hog runs."""
EXEC_TIMEOUT_S = 30.0
"""An exec (connect + `true`) slower than this counts as failed, and as this long."""
PAUSE_S = 0.2
"""Between two samples: a user typing commands, not a tight loop competing with the hog."""
BOOT_DEADLINE_S = 90.0
PENDING_STATES = ("", "offline", "unknown", "initializing", "starting")

# A fork bomb that spins: every process forks for ever and ignores failures, so at the
# machine's pids limit all of them stay runnable, retrying fork(). (Bash's `:(){ :|:& };:`
# sleeps between failed forks, which leaves the host idle: not what users ran.) It never
# ends by itself: SIGKILL of its process group (timeout) or destroying the playground ends
# it. perl is in every Debian image (perl-base is essential).
HOGS = {
    "fork": "exec perl -e 'fork while 1'",
    "spin": "for i in $(seq 32); do (while :; do :; done) & done; wait",
}

console = Console()


@dataclass
class Phase:
    name: str
    exec_s: list[float] = field(default_factory=list)
    spawn_s: list[float] = field(default_factory=list)
    failed: int = 0
    loadavg_1m: list[float] = field(default_factory=list)
    runnable: list[int] = field(default_factory=list)
    cpus_used: dict[str, float] = field(default_factory=dict)
    hog_pids: list[int] = field(default_factory=list)


# -- the private instance ------------------------------------------------------------------


# The private instance (private_settings, check_images, teardown) is start_latency.py's.


def use_old_limits() -> None:
    """Machines started from now on get the CPU limits of before the fair-CPU change: a
    quota of the manifest's `cpus` whatever the host's size, and no shares."""

    def old(cpus: float) -> dict[str, int]:
        return {"quota": int(cpus * oci.CPU_PERIOD_US), "period": oci.CPU_PERIOD_US}

    oci.cpu_resources = old


# -- the host side of a machine ------------------------------------------------------------


def machine_cgroup(labyard: Labyard, playground: Playground, marker: str) -> Path | None:
    """The machine's host cgroup dir in the hierarchy that has the file `marker`."""
    machine = playground.machines[0].name
    found = cgroups.machine_cgroups(
        cgroup_parent(labyard.settings.instance), f"{playground.id}-{machine}"
    )
    return next((p for p in found if (p / marker).exists()), None)


def cpu_seconds(labyard: Labyard, playground: Playground) -> float:
    """CPU time the machine has used so far (v1 cpuacct, or v2 cpu.stat)."""
    v1 = machine_cgroup(labyard, playground, "cpuacct.usage")
    if v1 is not None:
        return int((v1 / "cpuacct.usage").read_text()) / 1e9
    v2 = machine_cgroup(labyard, playground, "cpu.stat")
    if v2 is not None:
        for line in (v2 / "cpu.stat").read_text().splitlines():
            key, value = line.split()
            if key == "usage_usec":
                return int(value) / 1e6
    return math.nan


def pids_current(labyard: Labyard, playground: Playground) -> int:
    found = machine_cgroup(labyard, playground, "pids.current")
    return int((found / "pids.current").read_text()) if found else -1


def applied_cpu_limits(labyard: Labyard, playground: Playground) -> dict[str, Any]:
    """What the host cgroup of the machine says: quota in CPUs, and shares (v1) or weight."""
    limits: dict[str, Any] = {}
    if (v1 := machine_cgroup(labyard, playground, "cpu.cfs_quota_us")) is not None:
        quota = int((v1 / "cpu.cfs_quota_us").read_text())
        period = int((v1 / "cpu.cfs_period_us").read_text())
        limits["quota_cpus"] = quota / period if quota > 0 else "max"
        limits["shares"] = int((v1 / "cpu.shares").read_text())
    elif (v2 := machine_cgroup(labyard, playground, "cpu.max")) is not None:
        quota_text, period_text = (v2 / "cpu.max").read_text().split()
        limits["quota_cpus"] = "max" if quota_text == "max" else int(quota_text) / int(period_text)
        limits["weight"] = int((v2 / "cpu.weight").read_text())
    if (pids := machine_cgroup(labyard, playground, "pids.max")) is not None:
        limits["pids_max"] = (pids / "pids.max").read_text().strip()
    return limits


def host_load() -> tuple[float, int]:
    """(1-minute load average, tasks runnable right now) from /proc/loadavg."""
    fields = Path("/proc/loadavg").read_text().split()
    return float(fields[0]), int(fields[3].split("/")[0])


# -- measuring -----------------------------------------------------------------------------


async def wait_booted(labyard: Labyard, playground: Playground) -> str:
    """Until `systemctl is-system-running` is past `starting` (dockerd up in `docker`)."""
    deadline = time.monotonic() + BOOT_DEADLINE_S
    state = ""
    async with await labyard.playgrounds.connect(playground.id) as connection:
        while time.monotonic() < deadline:
            result = await connection.run("systemctl is-system-running", timeout=10)
            state = result.stdout.strip()
            if state not in PENDING_STATES:
                break
            await asyncio.sleep(0.2)
    return state


async def timed_exec(labyard: Labyard, playground: Playground) -> float | None:
    """A fresh SSH connection and `true` over it, as `labyard exec` does; None if it failed."""

    async def once() -> int | None:
        async with await labyard.playgrounds.connect(playground.id) as connection:
            result = await connection.run("true", timeout=EXEC_TIMEOUT_S)
        return result.exit_code

    t0 = time.perf_counter()
    try:
        code = await asyncio.wait_for(once(), EXEC_TIMEOUT_S)
    except (TimeoutError, LabyardError, OSError):
        return None
    return time.perf_counter() - t0 if code == 0 else None


async def timed_spawn() -> float:
    """/bin/true spawned on the host: how the host's own processes fare."""
    t0 = time.perf_counter()
    process = await asyncio.create_subprocess_exec("/bin/true")
    await process.wait()
    return time.perf_counter() - t0


async def measure(
    labyard: Labyard, phase: Phase, victim: Playground, hog: Playground, seconds: float
) -> Phase:
    used_before = {"victim": cpu_seconds(labyard, victim), "hog": cpu_seconds(labyard, hog)}
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        took = await timed_exec(labyard, victim)
        if took is None:
            phase.failed += 1
        phase.exec_s.append(EXEC_TIMEOUT_S if took is None else took)
        phase.spawn_s.append(await timed_spawn())
        load, runnable = host_load()
        phase.loadavg_1m.append(load)
        phase.runnable.append(runnable)
        phase.hog_pids.append(pids_current(labyard, hog))
        await asyncio.sleep(PAUSE_S)
    wall = time.monotonic() - t0
    for key, playground in (("victim", victim), ("hog", hog)):
        used = cpu_seconds(labyard, playground) - used_before[key]
        phase.cpus_used[key] = round(used / wall, 2)
    return phase


async def start_hog(labyard: Labyard, hog: Playground, kind: str, backstop_s: int) -> None:
    """Start the hog as root in the hog machine, detached from the SSH session that starts
    it (setsid, no terminal), and killed with its whole process group after `backstop_s`."""
    script = shlex.quote(HOGS[kind])
    command = (
        f"setsid timeout -s KILL {backstop_s} bash -c {script} "
        "</dev/null >/dev/null 2>&1 & echo started"
    )
    async with await labyard.playgrounds.connect(hog.id) as connection:
        result = await connection.run(command, timeout=30)
    if "started" not in result.stdout:
        raise RuntimeError(f"the hog did not start: {result.stderr}")


# -- figures -------------------------------------------------------------------------------


def summarize(phase: Phase) -> dict[str, Any]:
    return {
        "exec_median_s": round(statistics.median(phase.exec_s), 3),
        "exec_p95_s": round(nearest_rank(phase.exec_s, 95), 3),
        "exec_max_s": round(max(phase.exec_s), 3),
        "samples": len(phase.exec_s),
        "failed": phase.failed,
        "host_spawn_median_ms": round(statistics.median(phase.spawn_s) * 1000, 1),
        "host_spawn_p95_ms": round(nearest_rank(phase.spawn_s, 95) * 1000, 1),
        "loadavg_1m_end": phase.loadavg_1m[-1],
        "loadavg_1m_max": max(phase.loadavg_1m),
        "runnable_median": round(statistics.median(phase.runnable)),
        "cpus_used": phase.cpus_used,
        "hog_pids_median": round(statistics.median(phase.hog_pids)),
        "exec_samples_s": [round(s, 4) for s in phase.exec_s],
        "spawn_samples_ms": [round(s * 1000, 2) for s in phase.spawn_s],
        "loadavg_samples": phase.loadavg_1m,
    }


def print_table(results: dict[str, Any]) -> None:
    title = f"`true` over SSH in the victim; hog: {results['hog']}"
    table = Table(title=title, box=box.SIMPLE, pad_edge=False)
    columns = {
        "exec_median_s": "med s",
        "exec_p95_s": "p95 s",
        "exec_max_s": "max s",
        "failed": "fail",
        "loadavg_1m_end": "load",
        "runnable_median": "run",
    }
    table.add_column("phase", no_wrap=True)
    for heading in (*columns.values(), "host ms", "CPU v/h"):
        table.add_column(heading, justify="right", no_wrap=True)
    for name in ("control", "hog_running"):
        row = results[name]
        host = f"{row['host_spawn_median_ms']}/{row['host_spawn_p95_ms']}"
        used = f"{row['cpus_used']['victim']}/{row['cpus_used']['hog']}"
        table.add_row(name.split("_")[0], *(str(row[c]) for c in columns), host, used)
    console.print(table)
    console.print(
        "  load: 1-minute load average at the end; run: tasks runnable (median); host ms:"
        " /bin/true spawned on the host, median/p95; CPU v/h: CPUs the victim/the hog used;"
        f" hog pids: {results['hog_running']['hog_pids_median']:g}"
    )
    console.print(f"  hog machine's applied limits: {results['hog_limits']}")
    console.print(f"  victim machine's applied limits: {results['victim_limits']}")
    console.print(
        f"  p95 ratio hog/control: {results['p95_ratio']}, "
        f"median ratio: {results['median_ratio']}; hog destroyed in {results['destroy_hog_s']} s"
    )
    hog_self = results["hog_self_exec_s"]
    answered = f"{hog_self} s" if hog_self is not None else f"no answer in {EXEC_TIMEOUT_S:g} s"
    console.print(f"  `true` in the hog's own machine, bomb running: {answered}")
    p95 = results["hog_running"]["exec_p95_s"]
    verdict = "[green]PASS[/]" if p95 <= TARGET_P95_S else "[red]MISS[/]"
    console.print(f"  {verdict}  exec p95 with the hog = {p95} s (target <= {TARGET_P95_S} s)")


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=45, help="length of each phase (default 45)"
    )
    parser.add_argument("--hog", choices=sorted(HOGS), default="fork", help="what the hog runs")
    parser.add_argument("--hog-playground", default="docker", help="built-in playground")
    parser.add_argument("--victim-playground", default="linux", help="built-in playground")
    parser.add_argument(
        "--old-limits", action="store_true", help="CPU limits of before the fair-CPU change"
    )
    parser.add_argument(
        "--json", type=Path, default=REPO / "bench/results/fair_cpu.json", help="output"
    )
    parser.add_argument("--keep-data", action="store_true", help="keep the temp data dir")
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    return args


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    hog_manifest = load_manifest(args.hog_playground)
    victim_manifest = load_manifest(args.victim_playground)
    settings = private_settings()
    check_images(settings, [hog_manifest, victim_manifest])
    console.print(f"private instance: data {settings.data_dir}, images {settings.images_dir}")
    labyard = Labyard(settings)
    try:
        victim, hog = await asyncio.gather(
            labyard.playgrounds.start(victim_manifest), labyard.playgrounds.start(hog_manifest)
        )
        states = await asyncio.gather(wait_booted(labyard, victim), wait_booted(labyard, hog))
        console.print(f"booted: victim {states[0]}, hog {states[1]}; warm-up exec")
        await timed_exec(labyard, victim)
        results: dict[str, Any] = {
            "hog": f"{args.hog} in {args.hog_playground}",
            "old_limits": args.old_limits,
            "hog_limits": applied_cpu_limits(labyard, hog),
            "victim_limits": applied_cpu_limits(labyard, victim),
        }
        console.print(f"control: {args.seconds:g} s of execs, nothing else running")
        control = await measure(labyard, Phase("control"), victim, hog, args.seconds)
        results["control"] = summarize(control)
        backstop = int(args.seconds * 2 + 60)
        console.print(f"hog: {args.hog} starts (SIGKILLed after {backstop} s at the latest)")
        await start_hog(labyard, hog, args.hog, backstop)
        await asyncio.sleep(3)  # the bomb reaches the process limit within a second or two
        console.print(f"hog running: {args.seconds:g} s of execs")
        loaded = await measure(labyard, Phase("hog_running"), victim, hog, args.seconds)
        results["hog_running"] = summarize(loaded)
        # The hog's own machine: its sshd competes with the bomb inside the same quota.
        hog_self = await timed_exec(labyard, hog)
        results["hog_self_exec_s"] = None if hog_self is None else round(hog_self, 3)
        t0 = time.perf_counter()
        await labyard.playgrounds.destroy(hog.id)
        results["destroy_hog_s"] = round(time.perf_counter() - t0, 2)
    finally:
        await asyncio.shield(teardown(labyard, args.keep_data))
    for key, stat in (("p95_ratio", "exec_p95_s"), ("median_ratio", "exec_median_s")):
        results[key] = round(results["hog_running"][stat] / results["control"][stat], 2)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("error: labyard runs runc, netns and nftables: run this benchmark as root")
    if args.old_limits:
        use_old_limits()
    facts = machine_facts()
    console.print("machine: " + ", ".join(f"{k}={v}" for k, v in facts.items()))
    try:
        results = asyncio.run(bench(args))
    except LabyardError as exc:
        sys.exit(f"error: {exc}")
    except KeyboardInterrupt:
        sys.exit("interrupted: the playgrounds it started were removed")
    print_table(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {**results, "machine": facts, "target_p95_s": TARGET_P95_S}
    args.json.write_text(json.dumps(payload, indent=2))
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
