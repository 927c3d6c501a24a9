"""Start latency and idle memory of built-in playgrounds, on a private labyard instance.

For each playground: one untimed warm-up start+destroy (fills the page cache), then N runs of
  t0 = just before `playgrounds.start(manifest)`
  t1 = once `true` has run over a fresh SSH connection on every machine (concurrently)
and, outside the timed region, an idle-memory sample per machine before the destroy.

Run as root: `.venv/bin/python bench/start_latency.py --runs 10`. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from labyard.errors import LabyardError, NotFound
from labyard.images import find_image
from labyard.manifest import Manifest, load_manifest
from labyard.runtime.local.names import nft_table
from labyard.services import Labyard, Playground
from labyard.settings import Settings

REPO = Path(__file__).resolve().parent.parent

PLAYGROUNDS = ("linux", "linux-cluster")
TARGETS = {"linux_median_s": 1.0, "linux-cluster_median_s": 2.0, "idle_machine_mib": 40}
IDLE_DEADLINE_S = 30.0
"""Longest wait for `systemctl is-system-running` to leave `starting`."""
SETTLE_S = 2.0
"""Extra quiet time after the boot job queue is empty, before sampling memory."""
MIB = 1024 * 1024

console = Console()


@dataclass
class Samples:
    latencies_s: list[float] = field(default_factory=list)
    idle_bytes: list[int] = field(default_factory=list)


# -- the private instance ------------------------------------------------------------------


def private_settings() -> Settings:
    images_dir = Path(os.environ.get("LABYARD_IMAGES_DIR", "/var/lib/labyard/images"))
    data_dir = Path(tempfile.mkdtemp(prefix="labyard-bench-"))
    return Settings(
        data_dir=data_dir, images_dir=images_dir, database_url=f"sqlite:///{data_dir}/labyard.db"
    )


def check_images(settings: Settings, manifests: Sequence[Manifest]) -> None:
    """Exit with a clear message when an image a playground needs is not built."""
    for name in sorted({m.image for manifest in manifests for m in manifest.machines}):
        try:
            find_image(settings.images_dir, name)
        except NotFound:
            sys.exit(
                f"error: image {name!r} is not built in {settings.images_dir}.\n"
                f"Build it first: sudo .venv/bin/labyard image build {name} "
                "(or point LABYARD_IMAGES_DIR at a directory with built images)."
            )


async def teardown(labyard: Labyard, keep_data: bool) -> None:
    """Destroy whatever is left (after a failure too) and remove the instance's traces."""
    for playground_id in await labyard.driver.list():
        await labyard.driver.destroy(playground_id)
    table = nft_table(labyard.settings.instance)
    subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True, check=False)
    labyard.close()
    if keep_data:
        console.print(f"data dir kept: {labyard.settings.data_dir}")
    else:
        shutil.rmtree(labyard.settings.data_dir, ignore_errors=True)


# -- one run -------------------------------------------------------------------------------


def machine_names(playground: Playground) -> list[str]:
    return [m.name for m in playground.machines]


async def first_exec(labyard: Labyard, playground: Playground, machine: str) -> None:
    """Open a fresh SSH connection, as a user would, and run `true`."""
    async with await labyard.playgrounds.connect(playground.id, machine) as connection:
        result = await connection.run("true", timeout=30)
    if result.exit_code != 0:
        raise RuntimeError(f"`true` exited {result.exit_code} on {machine}: {result.stderr}")


async def run_on(labyard: Labyard, playground: Playground, machine: str, command: str) -> str:
    async with await labyard.playgrounds.connect(playground.id, machine) as connection:
        result = await connection.run(command, timeout=30)
    return result.stdout.strip()


async def wait_idle(labyard: Labyard, playground: Playground, machine: str) -> str:
    """Wait until systemd's boot job queue is empty; returns the final system state.

    `running` (or `degraded`: a unit failed) means every boot job finished. Memory is
    sampled SETTLE_S later still, because services that just reached "active" keep
    faulting in pages and journald is still flushing; sampling at once would add that
    transient to what is meant to be the idle footprint.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + IDLE_DEADLINE_S
    state = ""
    async with await labyard.playgrounds.connect(playground.id, machine) as connection:
        while loop.time() < deadline:
            result = await connection.run("systemctl is-system-running", timeout=10)
            state = result.stdout.strip()
            if state not in ("initializing", "starting"):
                break
            await asyncio.sleep(0.2)
    return state


async def idle_memory(labyard: Labyard, playground: Playground) -> list[int]:
    """Bytes of working set per machine once booted and quiet, in manifest order."""
    machines = machine_names(playground)
    states = await asyncio.gather(*(wait_idle(labyard, playground, m) for m in machines))
    unsettled = {m: s for m, s in zip(machines, states, strict=True) if s != "running"}
    if unsettled:
        console.print(f"  [yellow]note[/]: system state {unsettled}")
    await asyncio.sleep(SETTLE_S)
    memory = await labyard.driver.machine_memory(playground.id)
    return [memory[m] for m in machines]


async def one_run(labyard: Labyard, manifest: Manifest, samples: Samples | None) -> None:
    """Start, first exec on every machine, (sample idle memory), destroy."""
    t0 = time.perf_counter()
    playground = await labyard.playgrounds.start(manifest)
    try:
        machines = machine_names(playground)
        await asyncio.gather(*(first_exec(labyard, playground, m) for m in machines))
        t1 = time.perf_counter()
        if samples is not None:
            samples.latencies_s.append(t1 - t0)
            samples.idle_bytes.extend(await idle_memory(labyard, playground))
    finally:
        await labyard.playgrounds.destroy(playground.id)


async def measure(labyard: Labyard, manifest: Manifest, runs: int) -> Samples:
    console.print(f"[bold]{manifest.name}[/]: untimed warm-up start+destroy (page cache)")
    await one_run(labyard, manifest, None)
    samples = Samples()
    for i in range(runs):
        await one_run(labyard, manifest, samples)
        idle = samples.idle_bytes[-len(manifest.machines) :]
        console.print(
            f"  run {i + 1:>2}/{runs}: {samples.latencies_s[-1]:.3f} s, "
            f"idle {', '.join(f'{b / MIB:.1f}' for b in idle)} MiB"
        )
    return samples


# -- trace ---------------------------------------------------------------------------------


TRACE_PROBE = (
    "systemctl show -p UserspaceTimestampMonotonic -p FinishTimestampMonotonic --value; "
    "systemctl show -p ActiveEnterTimestampMonotonic --value ssh.service"
)
TRACE_COMMANDS = (
    "systemd-analyze time",
    "systemd-analyze critical-chain ssh.service",
    "systemd-analyze blame | head -n 12",
)


async def machine_phases(labyard: Labyard, playground: Playground, machine: str) -> list[float]:
    """Monotonic seconds at which systemd started, ssh.service became active and the boot
    jobs finished. The container shares the host's CLOCK_MONOTONIC (runc makes no time
    namespace), so these line up with time.monotonic() here."""
    await wait_idle(labyard, playground, machine)
    probe = await run_on(labyard, playground, machine, TRACE_PROBE)
    pid1, finished, ssh_active = (int(v) / 1e6 for v in probe.split())
    return [pid1, ssh_active, finished]


async def trace(labyard: Labyard, manifest: Manifest) -> None:
    """One extra, untimed-by-the-table start, phase by phase, in ms after t0."""
    t0 = time.monotonic()
    playground = await labyard.playgrounds.start(manifest)
    t_ready = time.monotonic()
    machines = machine_names(playground)
    try:
        await asyncio.gather(*(first_exec(labyard, playground, m) for m in machines))
        t_exec = time.monotonic()
        phases = await asyncio.gather(*(machine_phases(labyard, playground, m) for m in machines))
        console.print(f"\n[bold]trace[/]: one {manifest.name} start, ms after t0")
        console.print(f"  {'machine':<10} {'PID 1':>7} {'sshd up':>7} {'boot done':>9}")
        for machine, moments in zip(machines, phases, strict=True):
            cells = [f"{(m - t0) * 1000:>7.0f}" for m in moments]
            console.print(f"  {machine:<10} {cells[0]} {cells[1]} {cells[2]:>9}")
        console.print(f"  start() returned (all answered SSH): {(t_ready - t0) * 1000:.0f}")
        console.print(f"  first exec done on every machine:    {(t_exec - t0) * 1000:.0f}")
        for command in TRACE_COMMANDS:
            console.print(f"\n$ {command}   # on {machines[0]}")
            console.print(await run_on(labyard, playground, machines[0], command), markup=False)
    finally:
        await labyard.playgrounds.destroy(playground.id)


# -- reporting -----------------------------------------------------------------------------


def nearest_rank(values: Sequence[float], percentile: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percentile / 100 * len(ordered)) - 1)]


def summarize(samples: Samples) -> dict[str, Any]:
    lat = samples.latencies_s
    return {
        "median_s": round(statistics.median(lat), 3),
        "p95_s": round(nearest_rank(lat, 95), 3),
        "runs": len(lat),
        "idle_machine_mib": round(statistics.median(samples.idle_bytes) / MIB, 1),
        "min_s": round(min(lat), 3),
        "max_s": round(max(lat), 3),
    }


def read_text(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine_facts() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in read_text("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    mem_kib = next(
        (
            int(line.split()[1])
            for line in read_text("/proc/meminfo").splitlines()
            if "MemTotal" in line
        ),
        0,
    )
    try:
        runc = subprocess.run(["runc", "--version"], capture_output=True, text=True, check=False)
        runc_version = runc.stdout.splitlines()[0].removeprefix("runc version ").strip()
    except (OSError, IndexError):
        runc_version = "unknown"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "runc": runc_version,
        "python": platform.python_version(),
        "loadavg_at_start": read_text("/proc/loadavg").split()[:3],
    }


def print_table(results: dict[str, dict[str, Any]]) -> None:
    table = Table(title="playground start -> first exec on every machine")
    columns = ("median_s", "p95_s", "min_s", "max_s", "runs", "idle_machine_mib")
    table.add_column("playground")
    for column in columns:
        table.add_column(column, justify="right")
    for name, row in results.items():
        table.add_row(name, *(str(row[c]) for c in columns))
    console.print(table)


def print_targets(results: dict[str, dict[str, Any]]) -> None:
    checks: list[tuple[str, float, float]] = [
        (f"{name} median_s", results[name]["median_s"], TARGETS[f"{name}_median_s"])
        for name in results
    ]
    checks += [
        (f"{name} idle_machine_mib", results[name]["idle_machine_mib"], TARGETS["idle_machine_mib"])
        for name in results
    ]
    for label, value, target in checks:
        verdict = "[green]PASS[/]" if value <= target else "[red]MISS[/]"
        console.print(f"  {verdict}  {label} = {value} (target <= {target})")


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per playground")
    parser.add_argument(
        "--json", type=Path, default=REPO / "bench/results/start_latency.json", help="output"
    )
    parser.add_argument(
        "--playgrounds", default=",".join(PLAYGROUNDS), help="comma-separated built-in names"
    )
    parser.add_argument("--keep-data", action="store_true", help="keep the temp data dir")
    parser.add_argument(
        "--trace",
        action="store_true",
        help="also trace one extra start of each playground, phase by phase",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


async def bench(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    names = [n.strip() for n in args.playgrounds.split(",") if n.strip()]
    manifests = [load_manifest(n) for n in names]
    settings = private_settings()
    check_images(settings, manifests)
    console.print(f"private instance: data {settings.data_dir}, images {settings.images_dir}")
    labyard = Labyard(settings)
    try:
        results = {m.name: summarize(await measure(labyard, m, args.runs)) for m in manifests}
        if args.trace:
            for manifest in manifests:
                await trace(labyard, manifest)
    finally:
        await asyncio.shield(teardown(labyard, args.keep_data))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("error: labyard runs runc, netns and nftables: run this benchmark as root")
    facts = machine_facts()
    console.print("machine: " + ", ".join(f"{k}={v}" for k, v in facts.items()))
    try:
        results = asyncio.run(bench(args))
    except LabyardError as exc:
        sys.exit(f"error: {exc}")
    print_table(results)
    print_targets(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({**results, "machine": facts, "targets": TARGETS}, indent=2))
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
