"""How many idle `linux` playgrounds one host runs, on a private labyard instance.

Starts N playgrounds ten at a time, checks that every machine answers an exec over a fresh
SSH connection, samples memory and the host's kernel limits, destroys them all (ten at a
time) and checks that nothing is left behind.

Run as root: `.venv/bin/python bench/density.py --playgrounds 1000`. See bench/README.md.
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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

from labyard.errors import LabyardError, LimitExceeded, NotFound
from labyard.images import find_image
from labyard.manifest import Manifest, load_manifest
from labyard.runtime.local.names import cgroup_parent, netns_prefix, nft_table
from labyard.services import Labyard, Playground
from labyard.settings import Settings

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")

CONCURRENCY = 10
"""Starts, execs and destroys in flight at once."""
TARGET_MACHINES = 1000
SETTLE_S = 10.0
"""Quiet time after the last exec before memory and limits are sampled: lets the last
machines finish booting and journald flush."""
LEFTOVER_DEADLINE_S = 10.0
MIB = 1024 * 1024
PROC = Path("/proc")
NETNS_DIR = Path("/var/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")
MEMCG_ID_MAX = 65535
"""The kernel numbers memory cgroups with 16 bits (MEM_CGROUP_ID_MAX); no sysctl raises it."""

console = Console()


@dataclass
class Run:
    playgrounds: list[Playground] = field(default_factory=list)
    start_s: list[float] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    exec_ms: list[float] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)


# -- the private instance ------------------------------------------------------------------


def private_settings() -> Settings:
    images_dir = Path(os.environ.get("LABYARD_IMAGES_DIR", "/var/lib/labyard/images"))
    data_dir = Path(tempfile.mkdtemp(prefix="labyard-bench-"))
    return Settings(
        data_dir=data_dir, images_dir=images_dir, database_url=f"sqlite:///{data_dir}/labyard.db"
    )


def check_images(settings: Settings, manifest: Manifest) -> None:
    for name in sorted({m.image for m in manifest.machines}):
        try:
            find_image(settings.images_dir, name)
        except NotFound:
            sys.exit(
                f"error: image {name!r} is not built in {settings.images_dir}.\n"
                f"Build it first: sudo .venv/bin/labyard image build {name}"
            )


async def teardown(labyard: Labyard) -> None:
    """Destroy whatever is still there (after a failure too) and remove the instance."""
    for playground_id in await labyard.driver.list():
        await labyard.driver.destroy(playground_id)
    table = nft_table(labyard.settings.instance)
    subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True, check=False)
    labyard.close()
    shutil.rmtree(labyard.settings.data_dir, ignore_errors=True)


async def ten_at_a_time(items: Sequence[T], step: Callable[[T], Awaitable[None]]) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(item: T) -> None:
        async with gate:
            await step(item)

    await asyncio.gather(*(one(item) for item in items))


# -- start, exec, destroy --------------------------------------------------------------------


async def start_all(labyard: Labyard, manifest: Manifest, count: int, run: Run) -> float:
    """Start `count` playgrounds; returns the wall time. Refusals and failures are counted."""
    began = time.perf_counter()

    async def start(index: int) -> None:
        t0 = time.perf_counter()
        try:
            playground = await labyard.playgrounds.start(manifest)
        except LimitExceeded as exc:
            run.refused.append(str(exc))
        except LabyardError as exc:
            run.failed.append(f"{type(exc).__name__}: {exc}")
        else:
            run.playgrounds.append(playground)
            run.start_s.append(time.perf_counter() - t0)
        done = len(run.playgrounds) + len(run.refused) + len(run.failed)
        if done % max(1, count // 20) == 0 or done == count:
            console.print(
                f"  {done:>5}/{count}: {len(run.playgrounds)} started, {len(run.refused)} "
                f"refused, {len(run.failed)} failed, {time.perf_counter() - began:.1f} s, "
                f"{memory_used() / MIB / 1024:.2f} GiB in use"
            )

    await ten_at_a_time(range(count), start)
    return time.perf_counter() - began


async def exec_all(labyard: Labyard, run: Run) -> None:
    """A fresh SSH connection and `true` on every machine, timed."""
    targets = [(p, m.name) for p in run.playgrounds for m in p.machines]

    async def check(target: tuple[Playground, str]) -> None:
        playground, machine = target
        t0 = time.perf_counter()
        try:
            async with await labyard.playgrounds.connect(playground.id, machine) as connection:
                result = await connection.run("true", timeout=30)
        except LabyardError as exc:
            run.unanswered.append(f"{playground.id}/{machine}: {exc}")
            return
        if result.exit_code != 0:
            run.unanswered.append(f"{playground.id}/{machine}: `true` exited {result.exit_code}")
            return
        run.exec_ms.append((time.perf_counter() - t0) * 1000)

    await ten_at_a_time(targets, check)


async def destroy_all(labyard: Labyard, run: Run) -> float:
    began = time.perf_counter()

    async def destroy(playground: Playground) -> None:
        await labyard.playgrounds.destroy(playground.id)

    await ten_at_a_time(run.playgrounds, destroy)
    return time.perf_counter() - began


# -- what is left behind (inspected with the host's own tools, as tests/runtime/test_cleanup.py)


def _out(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=False).stdout


def _mounts_under(directory: Path) -> list[str]:
    lines = (PROC / "self/mountinfo").read_text().splitlines()
    return [p for p in (line.split()[4] for line in lines) if p.startswith(f"{directory}/")]


def _cgroups_of(instance: str) -> list[str]:
    found = []
    for parent, dirs, _ in os.walk(CGROUP_ROOT):
        if Path(parent).name == cgroup_parent(instance):
            found += [f"{parent}/{d}" for d in dirs]
            dirs.clear()
    return found


def host_leftovers(settings: Settings) -> dict[str, list[str]]:
    """Everything of the instance still on the host, by kind; kinds with nothing left out."""
    instance, table = settings.instance, nft_table(settings.instance)
    nft = _out("nft", "list", "table", "inet", table)
    found = {
        "runc": _out("runc", "--root", str(settings.runc_root), "list", "-q").split(),
        "mount": _mounts_under(settings.data_dir),
        "netns": [p.name for p in NETNS_DIR.glob(f"{netns_prefix(instance)}*")],
        "link": [
            line.split(":")[1].strip()
            for line in _out("ip", "-o", "link").splitlines()
            if f"alias labyard:{instance}:" in line
        ],
        "nft": [line.strip() for line in nft.splitlines() if "chain br_" in line],
        "cgroup": _cgroups_of(instance),
        "loop": [
            line for line in _out("losetup", "-a").splitlines() if str(settings.data_dir) in line
        ],
        "dir": [p.name for p in settings.playgrounds_dir.glob("*")],
    }
    return {kind: items for kind, items in found.items() if items}


async def leftovers(labyard: Labyard) -> dict[str, list[str]]:
    """What the destroys left; polled for a few seconds (lazy unmounts finish late)."""
    deadline = time.monotonic() + LEFTOVER_DEADLINE_S
    while True:
        left = await asyncio.to_thread(host_leftovers, labyard.settings)
        listed = await labyard.driver.list()
        if listed:
            left["driver.list()"] = listed
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.5)


# -- host limits -------------------------------------------------------------------------------


def _read_int(path: str | Path, default: int = 0) -> int:
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def _meminfo(key: str) -> int:
    for line in (PROC / "meminfo").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    return 0


def memory_used() -> int:
    return _meminfo("MemTotal") - _meminfo("MemAvailable")


def _inotify() -> tuple[int, int]:
    """(instances, watches) held by every process on the host."""
    instances = watches = 0
    for pid in filter(str.isdigit, os.listdir(PROC)):
        try:
            fds = os.listdir(PROC / pid / "fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(PROC / pid / "fd" / fd) != "anon_inode:inotify":
                    continue
                info = (PROC / pid / "fdinfo" / fd).read_text()
            except OSError:
                continue
            instances += 1
            watches += info.count("inotify wd:")
    return instances, watches


def _keys() -> tuple[int, int]:
    """(keys of root, most keys of any other uid), from /proc/key-users."""
    root = other = 0
    for line in (PROC / "key-users").read_text().splitlines():
        uid, _, _, quota, _ = line.split(maxsplit=4)
        keys = int(quota.split("/")[0])
        if uid == "0:":
            root = keys
        else:
            other = max(other, keys)
    return root, other


def _memory_cgroups() -> int:
    for line in (PROC / "cgroups").read_text().splitlines():
        fields = line.split()
        if fields[0] == "memory":
            return int(fields[2])
    return sum(1 for _ in CGROUP_ROOT.rglob("memory.current"))  # v2 only


def host_usage(settings: Settings) -> dict[str, tuple[int, int]]:
    """Kernel limit name -> (in use now, the limit)."""
    sysctl = PROC / "sys"
    tasks = int((PROC / "loadavg").read_text().split()[3].split("/")[1])
    instances, watches = _inotify()
    root_keys, uid_keys = _keys()
    arp = (PROC / "net/stat/arp_cache").read_text().splitlines()[1].split()[0]
    disk = os.statvfs(settings.data_dir)
    return {
        "memory MiB": (memory_used() // MIB, _meminfo("MemTotal") // MIB),
        "disk MiB": (
            (disk.f_blocks - disk.f_bavail) * disk.f_frsize // MIB,
            disk.f_blocks * disk.f_frsize // MIB,
        ),
        "tasks (kernel.pid_max)": (tasks, _read_int(sysctl / "kernel/pid_max")),
        "tasks (kernel.threads-max)": (tasks, _read_int(sysctl / "kernel/threads-max")),
        "inotify instances": (instances, _read_int(sysctl / "fs/inotify/max_user_instances")),
        "inotify watches": (watches, _read_int(sysctl / "fs/inotify/max_user_watches")),
        "neighbours (gc_thresh3)": (
            int(arp, 16),
            _read_int(sysctl / "net/ipv4/neigh/default/gc_thresh3"),
        ),
        "keys of root": (root_keys, _read_int(sysctl / "kernel/keys/root_maxkeys")),
        "keys of one other uid": (uid_keys, _read_int(sysctl / "kernel/keys/maxkeys")),
        "memory cgroups": (_memory_cgroups(), MEMCG_ID_MAX),
        "loop devices": (len(list(Path("/sys/block").glob("loop*/loop/backing_file"))), 1 << 20),
        "mounts (fs.mount-max)": (
            len((PROC / "self/mountinfo").read_text().splitlines()),
            _read_int(sysctl / "fs/mount-max"),
        ),
        "network namespaces": (
            len(list(NETNS_DIR.glob("*"))),
            _read_int(sysctl / "user/max_net_namespaces"),
        ),
        "conntrack entries": (
            _read_int(sysctl / "net/netfilter/nf_conntrack_count"),
            _read_int(sysctl / "net/netfilter/nf_conntrack_max"),
        ),
    }


def caps(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], machines: int
) -> dict[str, dict[str, Any]]:
    """Per limit: use before and after, use per machine, and how many machines it allows."""
    result = {}
    for name, (used, limit) in after.items():
        per_machine = (used - before[name][0]) / machines if machines else 0.0
        allows = machines + (limit - used) / per_machine if per_machine > 0 else None
        result[name] = {
            "before": before[name][0],
            "after": used,
            "limit": limit,
            "per_machine": round(per_machine, 2),
            "max_machines": math.floor(allows) if allows is not None else None,
        }
    return result


async def working_set_mib(labyard: Labyard, run: Run) -> float | None:
    """Median machine working set (cgroup use minus inactive file cache), as start_latency.py."""
    sizes: list[int] = []
    for playground in run.playgrounds:
        sizes += (await labyard.driver.machine_memory(playground.id)).values()
    return round(statistics.median(sizes) / MIB, 1) if sizes else None


# -- reporting -------------------------------------------------------------------------------


def nearest_rank(values: Sequence[float], percentile: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percentile / 100 * len(ordered)) - 1)]


def machine_facts() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "ram_gib": round(_meminfo("MemTotal") / MIB / 1024, 1),
        "kernel": platform.release(),
        "loadavg_at_start": (PROC / "loadavg").read_text().split()[:3],
    }


def print_caps(table_caps: dict[str, dict[str, Any]]) -> None:
    table = Table(title="host limits, tightest first")
    table.add_column("limit", no_wrap=True)
    for column in ("max", "before", "after", "/machine", "allows"):
        table.add_column(column, justify="right")
    order = sorted(table_caps, key=lambda n: table_caps[n]["max_machines"] or math.inf)
    for name in order:
        row = table_caps[name]
        allows = row["max_machines"]
        cells = [row["limit"], row["before"], row["after"], row["per_machine"]]
        table.add_row(name, *map(str, cells), str(allows) if allows is not None else "-")
    console.print(table)
    console.print("  allows: machines the limit admits at this use per machine")


def print_verdicts(result: dict[str, Any]) -> None:
    requested = result["requested"]
    checks = [
        (f"all {requested} started and answered", result["answered"] == requested),
        ("none refused", result["refused"] == 0),
        ("nothing left behind", not result["left_behind"]),
    ]
    if requested >= TARGET_MACHINES:
        checks.append(
            (f">= {TARGET_MACHINES} idle machines", result["answered"] >= TARGET_MACHINES)
        )
    for label, ok in checks:
        console.print(f"  {'[green]PASS[/]' if ok else '[red]MISS[/]'}  {label}")


# -- main ------------------------------------------------------------------------------------


async def bench(count: int) -> dict[str, Any]:
    manifest = load_manifest("linux")
    settings = private_settings()
    check_images(settings, manifest)
    console.print(f"private instance: data {settings.data_dir}, images {settings.images_dir}")
    labyard = Labyard(settings)
    run = Run()
    try:
        console.print("untimed warm-up start+destroy (page cache)")
        await labyard.playgrounds.destroy((await labyard.playgrounds.start(manifest)).id)
        before = await asyncio.to_thread(host_usage, settings)
        console.print(f"starting {count} playgrounds, {CONCURRENCY} at a time")
        start_s = await start_all(labyard, manifest, count, run)
        console.print("a fresh SSH connection and `true` on every machine")
        await exec_all(labyard, run)
        await asyncio.sleep(SETTLE_S)
        after = await asyncio.to_thread(host_usage, settings)
        machines = sum(len(p.machines) for p in run.playgrounds)
        limits = caps(before, after, machines)
        working_set = await working_set_mib(labyard, run)
        console.print(f"destroying {len(run.playgrounds)} playgrounds, {CONCURRENCY} at a time")
        destroy_s = await destroy_all(labyard, run)
        left = await leftovers(labyard)
    finally:
        await asyncio.shield(teardown(labyard))
    return {
        "requested": count,
        "started": len(run.playgrounds),
        "answered": len(run.exec_ms),
        "refused": len(run.refused),
        "start_s": round(start_s, 1),
        "mib_per_machine": round(limits["memory MiB"]["per_machine"], 1),
        "exec_median_ms": round(statistics.median(run.exec_ms), 1) if run.exec_ms else None,
        "failed": len(run.failed),
        "exec_p95_ms": round(nearest_rank(run.exec_ms, 95), 1) if run.exec_ms else None,
        "start_median_s": round(statistics.median(run.start_s), 3) if run.start_s else None,
        "start_p95_s": round(nearest_rank(run.start_s, 95), 3) if run.start_s else None,
        "machine_working_set_mib": working_set,
        "destroy_s": round(destroy_s, 1),
        "left_behind": left,
        "errors": sorted(set(run.refused + run.failed + run.unanswered))[:10],
        "caps": limits,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--playgrounds", type=int, default=TARGET_MACHINES, help="how many `linux` playgrounds"
    )
    parser.add_argument(
        "--json", type=Path, default=REPO / "bench/results/density.json", help="output"
    )
    args = parser.parse_args(argv)
    if args.playgrounds < 1:
        parser.error("--playgrounds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("error: labyard runs runc, netns and nftables: run this benchmark as root")
    facts = machine_facts()
    console.print("machine: " + ", ".join(f"{k}={v}" for k, v in facts.items()))
    try:
        result = asyncio.run(bench(args.playgrounds))
    except LabyardError as exc:
        sys.exit(f"error: {exc}")
    print_caps(result["caps"])
    summary = {k: v for k, v in result.items() if k not in ("caps", "left_behind", "errors")}
    console.print(json.dumps(summary))
    for error in result["errors"]:
        console.print(f"  error: {error}", markup=False)
    if result["left_behind"]:
        console.print(f"  left behind: {result['left_behind']}", markup=False)
    print_verdicts(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({**result, "machine": facts}, indent=2))
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
