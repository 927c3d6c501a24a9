"""The lxd driver against the local one, and an LXD cluster losing a member.

Parts (each on private instances: an LXD daemon or a two-member cluster of its own, made
with the test suite's helpers and taken away after; a temp data dir per labyard instance):

- `starts`: start -> first exec (`true` over a fresh SSH connection on every machine) for
  `linux` and `docker`, local and lxd interleaved run by run, after one untimed warm-up each
  (which, for lxd, also uploads the image). Median, p95 and the lxd/local ratio.
- `many`: N `linux` playgrounds of 256 MiB started on a two-member cluster, 4 at a time:
  started, refused (errors), members used, MiB per machine (the engine's figure), and an
  exec round on every one (median, p95).
- `lost`: a playground on m2, m2's daemon killed: time until its status reads `failed`, and
  until a new start of the same region has a machine answering on m1.
- `claim`: on one LXD daemon, a warm pool of `linux` holding a playground per run; claims
  (a learner's start taking a warm one: new key, owner and clean shell) -> first exec,
  interleaved with cold starts -> first exec. Median, p95, cold/claim ratio.

Run as root: `.venv/bin/python bench/lxd.py --runs 8 --many 40`. See bench/README.md.
`many` also prints each start's seconds (median, p95) and how many answered an exec.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from start_latency import machine_facts, nearest_rank  # noqa: E402  # beside this script

from labyard.manifest import Manifest, load_manifest, manifest_from_text  # noqa: E402
from labyard.services import Labyard, Playground  # noqa: E402
from labyard.services.usage import Launch  # noqa: E402
from labyard.settings import LxdSettings, Settings  # noqa: E402
from labyard.types import MachineState  # noqa: E402
from tests import lxd_cluster, lxd_daemon  # noqa: E402
from tests.conftest import IMAGES_DIR, dismantle  # noqa: E402

SMALL = manifest_from_text(
    "kind: playground\nname: small\nmachines:\n  - {name: one, memory: 256MiB, disk: 2GiB}\n",
    "small.yaml",
)
REGIONS = """\
default_region: one
regions:
  one: {title: One, group: g1}
  two: {title: Two, group: g2}
countries:
  IN: two
"""


def figures(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median_s": round(statistics.median(values), 3),
        "p95_s": round(nearest_rank(values, 95), 3),
        "min_s": round(min(values), 3),
        "max_s": round(max(values), 3),
    }


def instance(driver: str, lxd: LxdSettings | None = None, regions: str = "") -> Labyard:
    data_dir = Path(tempfile.mkdtemp(prefix=f"labyard-bench-{driver}-"))
    if regions:
        (data_dir / "regions.yaml").write_text(regions)
    return Labyard(
        Settings(
            data_dir=data_dir,
            images_dir=IMAGES_DIR,
            database_url=f"sqlite:///{data_dir}/labyard.db",
            driver=driver,
            lxd=lxd or LxdSettings(),
        )
    )


async def close(labyard: Labyard) -> None:
    await dismantle(labyard)
    shutil.rmtree(labyard.settings.data_dir, ignore_errors=True)


async def first_exec(labyard: Labyard, playground: Playground) -> None:
    async def one(machine: str) -> None:
        async with await labyard.playgrounds.connect(playground.id, machine) as connection:
            result = await connection.run("true")
            assert result.exit_code == 0, result

    await asyncio.gather(*(one(m.name) for m in playground.machines))


async def timed_start(labyard: Labyard, manifest: Manifest, launch: Launch | None = None) -> float:
    began = time.monotonic()
    playground = await labyard.playgrounds.start(manifest, launch=launch)
    await first_exec(labyard, playground)
    took = time.monotonic() - began
    await labyard.playgrounds.destroy(playground.id)
    return took


async def starts(runs: int) -> dict[str, Any]:
    daemon = lxd_daemon.start()
    local = instance("local")
    lxd = instance("lxd", LxdSettings(daemon.url, project="bench", pool=lxd_daemon.POOL))
    results: dict[str, Any] = {}
    try:
        for name in ("linux", "docker"):
            manifest = load_manifest(name)
            samples: dict[str, list[float]] = {"local": [], "lxd": []}
            warm = {"local": await timed_start(local, manifest)}
            warm["lxd"] = await timed_start(lxd, manifest)  # uploads the image once
            for _ in range(runs):
                samples["local"].append(await timed_start(local, manifest))
                samples["lxd"].append(await timed_start(lxd, manifest))
            results[name] = {
                "local": figures(samples["local"]),
                "lxd": figures(samples["lxd"]),
                "first_start_s": {k: round(v, 3) for k, v in warm.items()},
                "ratio_median_lxd_over_local": round(
                    statistics.median(samples["lxd"]) / statistics.median(samples["local"]), 2
                ),
            }
            print(name, json.dumps(results[name]), flush=True)
    finally:
        await close(local)
        await close(lxd)
        lxd_daemon.stop(daemon)
    return results


async def claims(runs: int) -> dict[str, Any]:
    daemon = lxd_daemon.start()
    lxd = instance("lxd", LxdSettings(daemon.url, project="bench", pool=lxd_daemon.POOL))
    key = "bench-claim:linux"
    manifest = load_manifest("linux")
    samples: dict[str, list[float]] = {"claim": [], "cold": []}
    try:
        await timed_start(lxd, manifest)  # uploads the image once
        await lxd.pools.warm(key, runs)
        for i in range(runs):
            user = lxd.accounts.create_user(f"bench{i}@example.org", "a long password")
            began = time.monotonic()
            claimed = await lxd.pools.claim(key, user, launch=user.launch())
            assert claimed is not None, "the pool ran dry"
            await first_exec(lxd, claimed)
            samples["claim"].append(time.monotonic() - began)
            samples["cold"].append(await timed_start(lxd, manifest))
            await lxd.playgrounds.destroy(claimed.id)
        return {
            "claim": figures(samples["claim"]),
            "cold": figures(samples["cold"]),
            "ratio_median_cold_over_claim": round(
                statistics.median(samples["cold"]) / statistics.median(samples["claim"]), 1
            ),
        }
    finally:
        await lxd.pools.release(key)
        await close(lxd)
        lxd_daemon.stop(daemon)


def cluster_settings(cluster: lxd_cluster.Cluster) -> LxdSettings:
    return LxdSettings(cluster.member("m1").url, project="bench", pool=lxd_cluster.POOL)


def groups(cluster: lxd_cluster.Cluster) -> None:
    m1 = cluster.member("m1")
    for group, member in (("g1", "m1"), ("g2", "m2")):
        m1.lxc("cluster", "group", "create", group)
        m1.lxc("cluster", "group", "assign", member, f"default,{group}")
    m1.lxc("config", "set", "cluster.offline_threshold", "11")


async def many(count: int, at_once: int) -> dict[str, Any]:
    cluster = lxd_cluster.start(pool_size="60GiB")
    groups(cluster)
    labyard = instance("lxd", cluster_settings(cluster), REGIONS)
    started: list[Playground] = []
    refused: Counter[str] = Counter()
    gate = asyncio.Semaphore(at_once)
    took: list[float] = []
    began = time.monotonic()
    try:
        await timed_start(labyard, SMALL)  # the image, uploaded once

        async def one(i: int) -> None:
            async with gate:
                try:
                    country = "IN" if i % 2 else "DE"
                    t0 = time.monotonic()
                    playground = await labyard.playgrounds.start(
                        SMALL, launch=Launch(country=country)
                    )
                    took.append(time.monotonic() - t0)
                    started.append(playground)
                    if len(started) % 20 == 0:  # progress, for a run cut short
                        print(
                            f"many: {len(started)} started, {sum(refused.values())} refused "
                            f"at {time.monotonic() - began:.0f} s; last start {took[-1]:.1f} s",
                            flush=True,
                        )
                except Exception as exc:  # counted and shown: what a learner would see
                    refused[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1

        await asyncio.gather(*(one(i) for i in range(count)))
        wall = time.monotonic() - began
        execs: list[float] = []
        silent: Counter[str] = Counter()

        async def answer(playground: Playground) -> None:
            t0 = time.monotonic()
            try:
                await first_exec(labyard, playground)
            except Exception as exc:  # counted and shown
                silent[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1
                return
            execs.append(time.monotonic() - t0)

        await asyncio.gather(*(answer(p) for p in started))
        members = {m.name: m.playgrounds for m in await labyard.cluster.members()}
        used: list[int] = []
        for playground in started:
            memory = await labyard.driver.machine_memory(playground.id)  # type: ignore[attr-defined]
            used += list(memory.values())
        return {
            "asked": count,
            "at_once": at_once,
            "started": len(started),
            "answered": len(execs),
            "silent": dict(silent),
            "refused": dict(refused),
            "start": figures(took) if took else None,
            "wall_s": round(wall, 1),
            "per_member": members,
            "machine_mib_median": round(statistics.median(used) / 2**20, 1) if used else None,
            "exec": figures(execs) if execs else None,
        }
    finally:
        await close(labyard)
        lxd_cluster.stop(cluster)


async def lost() -> dict[str, Any]:
    cluster = lxd_cluster.start()
    groups(cluster)
    labyard = instance("lxd", cluster_settings(cluster), REGIONS)
    try:
        playground = await labyard.playgrounds.start(SMALL, launch=Launch(country="IN"))
        await first_exec(labyard, playground)
        cluster.kill("m2")
        killed = time.monotonic()
        while True:
            status = await labyard.driver.status(playground.id)
            if status.get("one") and status["one"].state == MachineState.FAILED:
                break
            await asyncio.sleep(0.05)
        to_failed = time.monotonic() - killed
        t0 = time.monotonic()
        elsewhere = await labyard.playgrounds.start(SMALL, launch=Launch(country="IN"))
        await first_exec(labyard, elsewhere)
        new_start = time.monotonic() - t0
        cluster.restart("m2")
        return {
            "kill_to_failed_s": round(to_failed, 3),
            "new_start_elsewhere_s": round(new_start, 2),
            "notice": elsewhere.notice,
        }
    finally:
        await close(labyard)
        lxd_cluster.stop(cluster)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--many", type=int, default=40)
    parser.add_argument("--at-once", type=int, default=4, help="concurrent starts in `many`")
    parser.add_argument("--parts", default="starts,claim,lost,many")
    parser.add_argument("--json", default=str(REPO / "bench/results/lxd.json"))
    args = parser.parse_args()
    parts = args.parts.split(",")
    results: dict[str, Any] = {
        "machine": machine_facts(),
    }
    if "starts" in parts:
        results["starts"] = await starts(args.runs)
    if "claim" in parts:
        results["claim"] = await claims(args.runs)
        print("claim", json.dumps(results["claim"]), flush=True)
    if "lost" in parts:
        results["lost"] = await lost()
        print("lost", json.dumps(results["lost"]), flush=True)
    if "many" in parts:
        results["many"] = await many(args.many, args.at_once)
        print("many", json.dumps(results["many"]), flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    print(f"written to {args.json}")


if __name__ == "__main__":
    asyncio.run(main())
