"""A class joining at once: warm-pool claims against cold starts, on a private instance.

Three figures, in this order:

1. **single claim** (`single_claim`): a warm `linux` playground claimed for a learner ->
   `true` answered over a fresh SSH connection with the learner's new key. `--runs` claims,
   one after another, each from a pool warmed beforehand (target: median <= 100 ms).
2. **warming a pool** (`pool_warm_s`): `Pools.warm(key, 30, reserve=2)` for a class's
   `linux` pool (75 % of 40 seats plus the reserve: 32 playgrounds), from the call until
   all of them run and answer SSH (target for 30: <= 120 s).
3. **the class joins** (`claimed`, `cold`): `--learners` (default 40) learners join the class
   within `--within` seconds (default 10, evenly spread), each timed from its join to its
   first prompt: the first `true` that answers in its playground. A learner is `claimed`
   when its playground came from the pool, `cold` when it was booted for it (through the
   queue, at most 20 at a time). Target: claimed p95 <= 1.0 s.

`--via api` (the default) runs 3 through the HTTP API of a real server on 127.0.0.1: the
instructor creates the class (`POST /api/classes`), each learner `POST /api/classes/join`,
`POST /api/classes/ID/playground` (201, or 202 and a poll of `GET` every 100 ms), then
`POST /api/playgrounds/ID/exec` `true`. The class's pool is warmed through the pools service
(step 2) under the key the class service claims from. `--via service` calls
`Pools.start` and SSH directly instead.

Run as root: `.venv/bin/python bench/class_join.py --learners 40 --json PATH`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from rich.console import Console

from labyard.errors import LabyardError, NotFound
from labyard.images import find_image
from labyard.manifest import load_manifest
from labyard.runtime.local import cgroups
from labyard.runtime.local.names import cgroup_parent, nft_table
from labyard.services import Labyard, Playground, Queued, User
from labyard.services.pools import scoped_key
from labyard.services.usage import Launch
from labyard.settings import Settings
from labyard.store import PlaygroundRow
from labyard.types import LaunchedBy

REPO = Path(__file__).resolve().parent.parent
POOL_SIZE = 30
RESERVE = 2
TARGETS = {"single_claim_median_s": 0.1, "pool_warm_s": 120.0, "claimed_p95_s": 1.0}
POLL_S = 0.1
"""How often a queued learner asks again (the page polls like this)."""
FIRST_PROMPT_DEADLINE_S = 300.0
PASSWORD = "bench password, long enough"

console = Console(stderr=True)


@dataclass
class Join:
    learner: int
    seconds: float = 0.0
    claimed: bool = False
    queued: bool = False
    error: str = ""
    steps: dict[str, float] = field(default_factory=dict)
    """Seconds per step of the join (api: join, start, exec)."""


@dataclass
class Figures:
    single: list[float] = field(default_factory=list)
    pool_warm_s: float = 0.0
    joins: list[Join] = field(default_factory=list)


# -- the private instance ------------------------------------------------------------------


def private_settings() -> Settings:
    images_dir = Path(os.environ.get("LABYARD_IMAGES_DIR", "/var/lib/labyard/images"))
    data_dir = Path(tempfile.mkdtemp(prefix="labyard-bench-"))
    return Settings(
        data_dir=data_dir, images_dir=images_dir, database_url=f"sqlite:///{data_dir}/labyard.db"
    )


async def teardown(labyard: Labyard) -> None:
    await labyard.pools.close()
    for playground_id in await labyard.driver.list():
        await labyard.driver.destroy(playground_id)
    table = nft_table(labyard.settings.instance)
    subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True, check=False)
    for parent in cgroups.parents(cgroup_parent(labyard.settings.instance)):
        with contextlib.suppress(OSError):
            parent.rmdir()
    labyard.close()
    shutil.rmtree(labyard.settings.data_dir, ignore_errors=True)


async def first_exec(labyard: Labyard, playground: Playground) -> None:
    async with await labyard.playgrounds.connect(playground.id) as connection:
        result = await connection.run("true", timeout=30)
    if result.exit_code != 0:
        raise LabyardError(f"`true` exited {result.exit_code} in {playground.id}")


def from_pool(labyard: Labyard, playground_id: str) -> bool:
    with labyard.db.session() as session:
        row = session.get(PlaygroundRow, playground_id)
        return row is not None and row.pool_key is not None


def learners(labyard: Labyard, count: int, prefix: str) -> list[User]:
    return [
        labyard.accounts.create_user(f"{prefix}{i}@bench.example", PASSWORD) for i in range(count)
    ]


# -- 1. single claims ----------------------------------------------------------------------


async def single_claims(labyard: Labyard, runs: int) -> list[float]:
    key = scoped_key("bench-single", "linux")
    await labyard.pools.warm(key, runs)
    seconds = []
    for user in learners(labyard, runs, "single"):
        t0 = time.perf_counter()
        claimed = await labyard.pools.claim(key, user, launch=user.launch())
        if claimed is None:
            raise LabyardError("the warmed pool had no playground to claim")
        await first_exec(labyard, claimed)
        seconds.append(time.perf_counter() - t0)
        await labyard.playgrounds.destroy(claimed.id)
    await labyard.pools.release(key)
    return seconds


# -- 3. the class joins, through the service ----------------------------------------------


async def join_via_service(labyard: Labyard, user: User, key: str, join: Join) -> None:
    launch = Launch(account_id=user.id, role=user.role, by=LaunchedBy.CLASS)
    t0 = time.perf_counter()
    answer = await labyard.pools.start(user, key, launch)
    join.queued = isinstance(answer, Queued)
    while isinstance(answer, Queued):
        answer = await labyard.pools.poll(answer.ticket, user, wait_s=POLL_S)
    await first_exec(labyard, answer)
    join.seconds = time.perf_counter() - t0
    join.claimed = from_pool(labyard, answer.id)


# -- 3. the class joins, through the HTTP API ---------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def server(labyard: Labyard) -> Any:
    from labyard.api.app import create_app

    port = free_port()
    app = create_app(labyard, reconcile_interval_s=None)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    running = uvicorn.Server(config)
    task = asyncio.create_task(running.serve())
    while not running.started:
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        running.should_exit = True
        await task


def bearer(labyard: Labyard, user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {labyard.accounts.issue(user, 'api', 'bench')}"}


async def create_class(labyard: Labyard, url: str, seats: int) -> dict[str, Any]:
    instructor = labyard.accounts.create_user(
        "instructor@bench.example", PASSWORD, role="instructor"
    )
    at = datetime.now(UTC)
    body = {
        "title": "Benchmark class",
        "content": ["linux"],
        "seats": seats,
        "starts_at": (at - timedelta(minutes=1)).isoformat(),
        "ends_at": (at + timedelta(hours=2)).isoformat(),
        "guests": False,
    }
    async with httpx.AsyncClient(base_url=url, headers=bearer(labyard, instructor)) as client:
        created = await client.post("/api/classes", json=body)
    if created.status_code != 201:
        raise LabyardError(f"POST /api/classes: {created.status_code} {created.text}")
    found: dict[str, Any] = created.json()
    return found


async def join_via_api(
    client: httpx.AsyncClient, labyard: Labyard, klass: dict[str, Any], join: Join
) -> None:
    t0 = time.perf_counter()
    joined = await client.post("/api/classes/join", json={"code": klass["join_code"]})
    _expect(joined, 200, "join")
    t1 = time.perf_counter()
    path = f"/api/classes/{klass['id']}/playground"
    answer = await client.post(path, json={"content": "linux"})
    join.queued = answer.status_code == 202
    while answer.status_code == 202:
        await asyncio.sleep(POLL_S)
        answer = await client.get(path)
    _expect(answer, (200, 201), "start")
    playground_id = answer.json()["id"]
    t2 = time.perf_counter()
    ran = await client.post(f"/api/playgrounds/{playground_id}/exec", json={"command": "true"})
    _expect(ran, 200, "exec")
    join.steps = {"join": t1 - t0, "start": t2 - t1, "exec": time.perf_counter() - t2}
    if ran.json()["exit_code"] != 0:
        raise LabyardError(f"`true` exited {ran.json()['exit_code']}")
    join.seconds = time.perf_counter() - t0
    join.claimed = from_pool(labyard, playground_id)


def _expect(response: httpx.Response, status: int | tuple[int, ...], what: str) -> None:
    allowed = status if isinstance(status, tuple) else (status,)
    if response.status_code not in allowed:
        raise LabyardError(f"{what}: {response.status_code} {response.text[:300]}")


def class_pool_key(class_id: str) -> str:
    """The key the class service claims from (services/class_starts.py)."""
    from labyard.services.class_starts import pool_key

    return pool_key(class_id, "linux")


# -- the whole run -------------------------------------------------------------------------


async def arrive(index: int, spacing_s: float, join: Any) -> None:
    await asyncio.sleep(index * spacing_s)
    try:
        async with asyncio.timeout(FIRST_PROMPT_DEADLINE_S):
            await join()
    except Exception as exc:  # one learner's failure is a figure, not the end of the run
        console.print(f"learner failed: {exc!r}", markup=False)
        raise


async def the_class_joins(
    labyard: Labyard, figures: Figures, count: int, within_s: float, via: str, pool: int
) -> None:
    users = learners(labyard, count, "learner")
    spacing = within_s / max(count - 1, 1)
    figures.joins = [Join(i) for i in range(count)]
    if via == "service":
        key = scoped_key("bench-class", "linux")
        t0 = time.perf_counter()
        await labyard.pools.warm(key, pool, RESERVE)
        figures.pool_warm_s = time.perf_counter() - t0
        console.print(f"pool of {pool} warm in {figures.pool_warm_s:.1f} s")
        jobs = [
            arrive(i, spacing, lambda u=u, j=j: join_via_service(labyard, u, key, j))
            for i, (u, j) in enumerate(zip(users, figures.joins, strict=True))
        ]
        results = await asyncio.gather(*jobs, return_exceptions=True)
    else:
        async with server(labyard) as url:
            klass = await create_class(labyard, url, seats=count)
            t0 = time.perf_counter()
            await labyard.pools.warm(class_pool_key(klass["id"]), pool, RESERVE)
            figures.pool_warm_s = time.perf_counter() - t0
            console.print(f"pool of {pool} warm in {figures.pool_warm_s:.1f} s")
            limits = httpx.Limits(max_connections=4)
            clients = [
                httpx.AsyncClient(base_url=url, headers=bearer(labyard, u), limits=limits)
                for u in users
            ]
            try:
                jobs = [
                    arrive(i, spacing, lambda c=c, j=j: join_via_api(c, labyard, klass, j))
                    for i, (c, j) in enumerate(zip(clients, figures.joins, strict=True))
                ]
                results = await asyncio.gather(*jobs, return_exceptions=True)
            finally:
                for client in clients:
                    await client.aclose()
    for join, result in zip(figures.joins, results, strict=True):
        if isinstance(result, BaseException):
            join.error = f"{type(result).__name__}: {result}"


async def bench(args: argparse.Namespace) -> Figures:
    settings = private_settings()
    for image in ("linux",):
        try:
            find_image(settings.images_dir, image)
        except NotFound:
            sys.exit(f"error: image {image!r} is not built: labyard image build {image}")
    labyard = Labyard(settings)
    figures = Figures()
    try:
        console.print("untimed warm-up start+destroy (page cache)")
        await labyard.playgrounds.destroy(
            (await labyard.playgrounds.start(load_manifest("linux"))).id
        )
        console.print(f"{args.runs} single claims")
        figures.single = await single_claims(labyard, args.runs)
        console.print(f"{args.learners} learners join within {args.within:g} s ({args.via})")
        await the_class_joins(labyard, figures, args.learners, args.within, args.via, args.pool)
    finally:
        await asyncio.shield(teardown(labyard))
    return figures


# -- figures -------------------------------------------------------------------------------


def nearest_rank(values: Sequence[float], percentile: float) -> float:
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * percentile // 100))
    return ordered[int(rank) - 1]


def summary(seconds: Sequence[float]) -> dict[str, Any]:
    if not seconds:
        return {"median_s": None, "p95_s": None, "n": 0}
    return {
        "median_s": round(statistics.median(seconds), 3),
        "p95_s": round(nearest_rank(seconds, 95), 3),
        "n": len(seconds),
    }


def _steps(joins: Sequence[Join]) -> dict[str, float]:
    names = sorted({name for j in joins for name in j.steps})
    return {
        n: round(statistics.median(j.steps[n] for j in joins if n in j.steps), 3) for n in names
    }


def machine_facts() -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text().split()
    return {
        "cores": os.cpu_count(),
        "ram_gib": round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def result_of(figures: Figures, args: argparse.Namespace, facts: dict[str, Any]) -> dict[str, Any]:
    ok = [j for j in figures.joins if not j.error]
    claimed = [j.seconds for j in ok if j.claimed]
    cold = [j.seconds for j in ok if not j.claimed]
    return {
        "claimed": summary(claimed),
        "cold": summary(cold),
        "pool_warm_s": round(figures.pool_warm_s, 1),
        "single_claim": summary(figures.single),
        "pool": args.pool,
        "reserve": RESERVE,
        "learners": args.learners,
        "within_s": args.within,
        "via": args.via,
        "queued": sum(j.queued for j in figures.joins),
        "failed": [j.error for j in figures.joins if j.error][:10],
        "claimed_steps_median_s": _steps([j for j in ok if j.claimed]),
        "samples_s": {
            "claimed": [round(s, 3) for s in claimed],
            "cold": [round(s, 3) for s in cold],
            "single_claim": [round(s, 4) for s in figures.single],
        },
        "joins": [
            {
                "learner": j.learner,
                "s": round(j.seconds, 3),
                "claimed": j.claimed,
                "steps": {k: round(v, 3) for k, v in j.steps.items()},
            }
            for j in ok
        ],
        "machine": facts,
    }


def print_verdicts(result: dict[str, Any]) -> None:
    checks = [
        ("single claim -> first exec, median <= 100 ms", result["single_claim"]["median_s"], 0.1),
        (f"pool of {result['pool']} warm <= 120 s", result["pool_warm_s"], 120.0),
        ("claimed join -> first prompt, p95 <= 1.0 s", result["claimed"]["p95_s"], 1.0),
    ]
    for label, value, target in checks:
        ok = value is not None and value <= target
        console.print(f"  {'[green]PASS[/]' if ok else '[red]MISS[/]'}  {label}: {value}")
    if result["failed"]:
        console.print(f"  [red]{len(result['failed'])} learner(s) failed[/]")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learners", type=int, default=40, help="learners who join")
    parser.add_argument("--within", type=float, default=10.0, help="seconds they join in")
    parser.add_argument("--runs", type=int, default=20, help="single claims to time")
    parser.add_argument("--pool", type=int, default=POOL_SIZE, help="the class's warm pool")
    parser.add_argument("--via", choices=("api", "service"), default="api")
    parser.add_argument(
        "--json", type=Path, default=REPO / "bench/results/class_join.json", help="output"
    )
    args = parser.parse_args(argv)
    if args.learners < 1 or args.runs < 1 or args.within < 0 or args.pool < 0:
        parser.error("--learners and --runs are at least 1, --within and --pool at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("error: labyard runs runc, netns and nftables: run this benchmark as root")
    facts = machine_facts()
    console.print("machine: " + ", ".join(f"{k}={v}" for k, v in facts.items()))
    try:
        figures = asyncio.run(bench(args))
    except LabyardError as exc:
        sys.exit(f"error: {exc}")
    result = result_of(figures, args, facts)
    print(json.dumps({k: result[k] for k in ("claimed", "cold", "pool_warm_s", "single_claim")}))
    print_verdicts(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
