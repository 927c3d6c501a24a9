"""Task checks: how fast a change in a machine turns a task green, and what checking costs.

1. latency: one attempt at a challenge with many one-file tasks, followed by an SSE client
   of a live server in this process. Per trial: wait a random 0-1 s (so the change lands
   anywhere in the tick), `touch` the task's file over SSH, and time from the moment that
   exec returned until the SSE stream says the task is completed.
2. CPU: N attempts (3 tasks each, never completed, one with a hintcheck) checked for T s;
   CPU seconds this process used (getrusage: the engine, SSH, SQLite) / wall time.

Run as root: `.venv/bin/python bench/task_checks.py`. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from rich.console import Console
from rich.table import Table

from labyard.api.app import create_app
from labyard.content.loader import Item, load_item
from labyard.runtime.local.names import nft_table
from labyard.services import Labyard
from labyard.services.tasks import Attempts
from labyard.settings import Settings

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"latency_median_s": 1.5, "cpu_percent_of_core": 5.0}
console = Console()


def private_settings() -> Settings:
    images_dir = Path(os.environ.get("LABYARD_IMAGES_DIR", "/var/lib/labyard/images"))
    data_dir = Path(tempfile.mkdtemp(prefix="labyard-bench-"))
    return Settings(
        data_dir=data_dir, images_dir=images_dir, database_url=f"sqlite:///{data_dir}/labyard.db"
    )


def write_challenge(root: Path, slug: str, tasks: dict[str, dict[str, Any]]) -> Item:
    folder = root / "challenges" / slug
    folder.mkdir(parents=True)
    front = {"kind": "challenge", "title": slug, "playground": "linux", "tasks": tasks}
    (folder / "index.md").write_text(f"---\n{json.dumps(front)}\n---\nBenchmark.\n")
    return load_item(folder)


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


# -- 1. latency through SSE ------------------------------------------------------------------


async def sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            yield json.loads(line.removeprefix("data: "))


async def serve(labyard: Labyard) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(labyard, reconcile_interval_s=None)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start within 10 s")
        await asyncio.sleep(0.02)
    return server, task, f"http://127.0.0.1:{port}"


async def latency(labyard: Labyard, content: Path, trials: int) -> list[float]:
    tasks = {f"t{i:02d}": {"run": f"test -f /tmp/t{i:02d}"} for i in range(trials)}
    write_challenge(content, "latency", tasks)
    user = labyard.accounts.create_user("bench@example.com", "a long password", plan="premium")
    token = labyard.accounts.issue(user, "api")
    server, serving, url = await serve(labyard)
    samples: list[float] = []
    try:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
            started = await client.post("/api/attempts", json={"content": "challenges/latency"})
            attempt = started.json()
            connection = await labyard.playgrounds.connect(attempt["playground_id"])
            async with (
                connection,
                client.stream("GET", f"/api/attempts/{attempt['id']}/events") as response,
            ):
                events = sse_events(response)
                await anext(events)  # the full state
                for name in tasks:
                    await asyncio.sleep(random.random())
                    await connection.run(f"touch /tmp/{name}", timeout=10)
                    touched = time.perf_counter()
                    async with asyncio.timeout(10):
                        async for event in events:
                            task = event.get("task", {})
                            if task.get("name") == name and task["state"] == "completed":
                                break
                    samples.append(time.perf_counter() - touched)
                    console.print(f"  {name}: {samples[-1]:.3f} s")
            await client.delete(f"/api/attempts/{attempt['id']}")
    finally:
        server.should_exit = True
        await serving
    return samples


# -- 2. CPU of checking --------------------------------------------------------------------


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def cpu_cost(
    labyard: Labyard, content: Path, attempts_n: int, seconds: float
) -> dict[str, Any]:
    item = write_challenge(
        content,
        "cpu",
        {
            "files": {"run": "test -f /tmp/never"},
            "service": {"run": "systemctl is-active --quiet nginx", "hintcheck": "echo not yet"},
            "port": {"run": "port_is_listening 8080"},
        },
    )
    attempts = Attempts(labyard.playgrounds, labyard.catalog, idle_pause_s=None)
    started = []
    try:
        for i in range(attempts_n):
            record = await attempts.start(item, f"bench-{i}")
            started.append(record.id)
            console.print(f"  attempt {i + 1}/{attempts_n} started")
        await asyncio.sleep(2)  # let every checker reach its steady state
        checkers = [c for a in started if (c := attempts.checker(a)) is not None]
        ticks0 = sum(c.stats.ticks for c in checkers)
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        await asyncio.sleep(seconds)  # the measurement: checks run, nothing else does
        cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - wall0
        ticks = sum(c.stats.ticks for c in checkers) - ticks0
        execs = sum(c.stats.execs for c in checkers)
        return {
            "attempts": attempts_n,
            "tasks_per_attempt": 3,
            "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 3),
            "cpu_percent_of_core": round(100 * cpu / wall, 2),
            "ticks": ticks,
            "ticks_per_attempt_per_s": round(ticks / attempts_n / wall, 2),
            "execs_per_tick": round(execs / max(1, sum(c.stats.ticks for c in checkers)), 2),
            "cpu_ms_per_tick": round(1000 * cpu / max(1, ticks), 2),
        }
    finally:
        await attempts.shutdown()
        for attempt_id in started:
            await attempts.end(attempt_id)


# -- report --------------------------------------------------------------------------------


def facts() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def report(samples: list[float], cpu: dict[str, Any], machine: dict[str, Any]) -> dict[str, Any]:
    result = {
        "machine": machine,
        "latency": {
            "trials": len(samples),
            "median_s": round(statistics.median(samples), 3),
            "p95_s": round(percentile(samples, 95), 3),
            "min_s": round(min(samples), 3),
            "max_s": round(max(samples), 3),
            "samples_s": [round(s, 3) for s in samples],
        },
        "cpu": cpu,
        "targets": TARGETS,
    }
    table = Table("measure", "value", "target", "")
    median = result["latency"]["median_s"]
    table.add_row(
        "change -> completed via SSE, median",
        f"{median:.3f} s",
        f"<= {TARGETS['latency_median_s']} s",
        "PASS" if median <= TARGETS["latency_median_s"] else "MISS",
    )
    table.add_row("change -> completed via SSE, p95", f"{result['latency']['p95_s']:.3f} s", "", "")
    percent = cpu["cpu_percent_of_core"]
    table.add_row(
        f"checker CPU, {cpu['attempts']} attempts x 3 tasks",
        f"{percent:.2f} % of a core",
        f"< {TARGETS['cpu_percent_of_core']} %",
        "PASS" if percent < TARGETS["cpu_percent_of_core"] else "MISS",
    )
    table.add_row("CPU per tick (one exec per machine)", f"{cpu['cpu_ms_per_tick']} ms", "", "")
    table.add_row("ticks per attempt per second", f"{cpu['ticks_per_attempt_per_s']}", "", "")
    console.print(table)
    console.print(
        f"{machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"kernel {machine['kernel']}, Python {machine['python']}, load {machine['load_average']}"
    )
    return result


async def main(args: argparse.Namespace) -> dict[str, Any]:
    settings = private_settings()
    content = settings.data_dir / "content"
    labyard = Labyard(settings, content_dir=content)
    machine = facts()
    try:
        console.print(f"[bold]latency[/]: {args.trials} trials")
        samples = await latency(labyard, content, args.trials)
        console.print(f"[bold]CPU[/]: {args.attempts} attempts for {args.seconds:g} s")
        cpu = await cpu_cost(labyard, content, args.attempts, args.seconds)
    finally:
        await labyard.attempts.shutdown()
        for playground_id in await labyard.driver.list():
            await labyard.driver.destroy(playground_id)
        table = nft_table(settings.instance)
        subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True, check=False)
        labyard.close()
        shutil.rmtree(settings.data_dir, ignore_errors=True)
    return report(samples, cpu, machine)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=25)
    parser.add_argument("--attempts", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--json", type=Path, default=REPO / "bench/results/task_checks.json")
    arguments = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("error: run as root (playgrounds are runc containers)")
    result = asyncio.run(main(arguments))
    arguments.json.parent.mkdir(parents=True, exist_ok=True)
    arguments.json.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"written to {arguments.json}")
