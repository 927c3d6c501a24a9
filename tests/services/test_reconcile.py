"""A labyard process that dies (or is killed) is recovered by the next reconcile round."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from labyard.access import generate_keypair
from labyard.errors import NotFound
from labyard.manifest import load_manifest
from labyard.runtime import PlaygroundSpec, new_playground_id
from labyard.runtime.local.names import cgroup_parent, nft_table
from labyard.services import Labyard, reconcile
from labyard.settings import Settings
from tests.conftest import REPO, Starter, run_cli

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T | None]], timeout: float, what: str, interval: float = 0.05
) -> T:
    """Poll `check` until it returns something other than None/False, or fail after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result is not None and result is not False:
            return result
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


def cli_env(settings: Settings) -> dict[str, str]:
    """The environment `run_cli` gives the `labyard` command."""
    env = {
        **os.environ,
        "LABYARD_DATA_DIR": str(settings.data_dir),
        "LABYARD_IMAGES_DIR": str(settings.images_dir),
        "COLUMNS": "200",
    }
    env.pop("LABYARD_DATABASE_URL", None)
    return env


def runc_containers(settings: Settings) -> dict[str, str]:
    """Container id -> status, straight from runc."""
    if not settings.runc_root.exists():
        return {}
    result = subprocess.run(
        ["runc", "--root", str(settings.runc_root), "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {c["id"]: c["status"] for c in json.loads(result.stdout or "null") or []}


def rows(settings: Settings) -> dict[str, str]:
    """Playground id -> state, read from the database file directly."""
    with sqlite3.connect(settings.data_dir / "labyard.db") as db:
        return dict(db.execute("SELECT id, state FROM playgrounds").fetchall())


def host_traces(settings: Settings, playground_id: str) -> list[str]:
    """Everything of the playground still on the host, in words (empty when it is all gone)."""
    traces = [f"runc container {c}" for c in runc_containers(settings) if playground_id in c]
    netns_dir = Path("/var/run/netns")
    if netns_dir.exists():
        traces += [f"netns {n.name}" for n in netns_dir.iterdir() if playground_id in n.name]
    pg_dir = settings.playgrounds_dir / playground_id
    with open("/proc/self/mountinfo") as mountinfo:
        traces += [
            f"mount {line.split()[4]}" for line in mountinfo if str(pg_dir) in line.split()[4]
        ]
    if pg_dir.exists():
        traces.append(f"directory {pg_dir}")
    links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True).stdout)
    traces += [
        f"link {link['ifname']}"
        for link in links
        if playground_id in link["ifname"] or playground_id in link.get("ifalias", "")
    ]
    table = subprocess.run(
        ["nft", "list", "table", "inet", nft_table(settings.instance)],
        capture_output=True,
        text=True,
    ).stdout
    traces += [f"nft chain {c}" for c in re.findall(rf"chain (\w*{playground_id}\w*)", table)]
    parent = cgroup_parent(settings.instance)
    for cgroup in Path("/sys/fs/cgroup").glob(f"**/{parent}/{playground_id}-*"):
        traces.append(f"cgroup {cgroup}")
    return traces


def runc_processes_for(playground_id: str) -> list[int]:
    """Pids of runc commands still working on the playground (e.g. after its starter died)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"runc") and any(playground_id.encode() in a for a in argv):
            pids.append(int(proc.name))
    return pids


@pytest.fixture
async def janitor(labyard: Labyard) -> AsyncIterator[set[str]]:
    """Ids made outside `start`: destroyed after the test, row or no row."""
    ids: set[str] = set()
    yield ids
    for playground_id in ids:
        try:
            await labyard.playgrounds.destroy(playground_id)
        except NotFound:
            await labyard.driver.destroy(playground_id)


async def test_fresh_process_finds_playground_started_by_cli(
    labyard: Labyard, settings: Settings, janitor: set[str]
) -> None:
    result = await asyncio.to_thread(run_cli, settings, "playground", "start", "linux", "--json")
    assert result.returncode == 0, result.stderr
    playground_id = json.loads(result.stdout)["id"]
    janitor.add(playground_id)

    fresh = Labyard(settings)  # nothing carried over in memory: state comes from DB + host
    try:
        report = await reconcile(fresh.playgrounds)
        assert playground_id not in report.expired + report.abandoned + report.orphans
        assert playground_id not in report.marked_stopped
        playground = await fresh.playgrounds.get(playground_id)
        assert playground.state == "running"
        assert [(m.name, m.state) for m in playground.machines] == [("linux", "running")]
        async with await fresh.playgrounds.connect(playground_id) as connection:
            result_ = await connection.run("hostname", timeout=30)
        assert (result_.exit_code, result_.stdout) == (0, "linux\n")
    finally:
        fresh.close()


async def test_start_killed_half_way_is_rolled_back(
    labyard: Labyard, settings: Settings, janitor: set[str]
) -> None:
    known = set(rows(settings))
    proc = subprocess.Popen(
        [str(REPO / ".venv/bin/labyard"), "playground", "start", "linux-cluster"],
        env=cli_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        async def half_started() -> str | None:
            starting = [i for i, s in rows(settings).items() if i not in known and s == "starting"]
            if not starting:
                return None
            containers = await asyncio.to_thread(runc_containers, settings)
            if any(c.startswith(f"{starting[0]}-") for c in containers):
                return starting[0]
            return None

        playground_id = await eventually(half_started, 60, "a machine of the new playground")
        proc.send_signal(signal.SIGKILL)
        assert await asyncio.to_thread(proc.wait, 10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    janitor.add(playground_id)
    assert rows(settings).get(playground_id) == "starting", "the start finished before the kill"
    assert playground_id in await labyard.driver.list()
    # runc commands the dead CLI had in flight finish on their own; let them.
    await eventually(
        lambda: asyncio.to_thread(lambda: not runc_processes_for(playground_id)),
        30,
        "runc commands of the killed start to end",
    )

    report = await reconcile(labyard.playgrounds)

    assert playground_id in report.abandoned, report
    assert report.errors == [], report
    assert playground_id not in rows(settings)
    assert playground_id not in await labyard.driver.list()
    assert host_traces(settings, playground_id) == []
    with pytest.raises(NotFound):
        await labyard.playgrounds.get(playground_id)


async def test_orphan_without_row_is_removed(
    labyard: Labyard, settings: Settings, janitor: set[str]
) -> None:
    playground_id = new_playground_id()
    janitor.add(playground_id)
    manifest = load_manifest("linux")
    spec = PlaygroundSpec(
        id=playground_id,
        manifest=manifest,
        authorized_key=generate_keypair("orphan").public_openssh,
        host_keys={m.name: generate_keypair(m.name).private_openssh for m in manifest.machines},
    )
    await labyard.driver.start(spec)
    assert playground_id in await labyard.driver.list()
    assert f"{playground_id}-linux" in runc_containers(settings)
    assert playground_id not in rows(settings)

    report = await reconcile(labyard.playgrounds)

    assert playground_id in report.orphans, report
    assert report.errors == [], report
    assert playground_id not in await labyard.driver.list()
    assert host_traces(settings, playground_id) == []


async def test_running_row_with_dead_machines_becomes_stopped(
    start: Starter, labyard: Labyard, settings: Settings
) -> None:
    playground = await start("linux")
    code, _, _ = await start.exec(playground, "echo survived > /root/note")
    assert code == 0
    container = f"{playground.id}-linux"
    runc = ["runc", "--root", str(settings.runc_root)]
    subprocess.run([*runc, "kill", container, "KILL"], check=True, capture_output=True)
    await eventually(
        lambda: asyncio.to_thread(lambda: runc_containers(settings).get(container) == "stopped"),
        20,
        "the killed container to stop",
    )
    subprocess.run([*runc, "delete", container], check=True, capture_output=True)
    assert rows(settings)[playground.id] == "running"  # labyard has not noticed yet

    report = await reconcile(labyard.playgrounds)

    assert report.marked_stopped == [playground.id], report
    assert report.errors == [], report
    stopped = await labyard.playgrounds.get(playground.id)
    assert stopped.state == "stopped"
    assert [m.state for m in stopped.machines] == ["stopped"]
    assert (await reconcile(labyard.playgrounds)).changed is False  # stable once consistent

    restarted = await labyard.playgrounds.restart(playground.id)
    assert restarted.state == "running"
    assert [m.state for m in restarted.machines] == ["running"]
    code, out, err = await start.exec(
        playground, "cat /root/note; systemctl is-system-running --wait"
    )
    assert (code, out.split()) == (0, ["survived", "running"]), err
