"""An upgrade keeps what exists: playgrounds started, stopped or saved, and a warm pool, made
by labyard as it was before the driver contract changed (commit BEFORE, in a git worktree,
run as its own process on the same data directory), are adopted and used by this code.

The driver reads their recorded state (version 1 of the local driver's, without machine
addresses) and upgrades it; nothing is started again that was running.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labyard.services import Labyard
from labyard.services.pools import scoped_key
from labyard.settings import Settings
from labyard.store import PlaygroundRow
from tests.conftest import IMAGES_DIR, REPO, dismantle

BEFORE = "dffe4e1"
"""The last commit before the driver contract of issue 15 (its state version 1)."""
POOL = scoped_key("upgrade", "linux")

OLD_SIDE = f"""
import asyncio, json
from labyard.manifest import load_manifest
from labyard.services import Labyard
from labyard.settings import Settings

async def main():
    lab = Labyard(Settings.from_env())
    linux = load_manifest("linux")
    running = await lab.playgrounds.start(linux)
    stopped = await lab.playgrounds.start(linux)
    source = await lab.playgrounds.start(linux)
    for playground, text in ((running, "running"), (stopped, "stopped"), (source, "saved")):
        async with await lab.playgrounds.connect(playground.id) as connection:
            await connection.run(f"echo {{text}} > /root/kept && sync")
    await lab.playgrounds.stop(stopped.id)
    await lab.playgrounds.stop(source.id)
    await lab.saved.save(source.id, "before-upgrade")
    await lab.playgrounds.destroy(source.id)
    await lab.pools.warm({POOL!r}, 1)
    print(json.dumps({{"running": running.id, "stopped": stopped.id}}))

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def before() -> Iterator[Path]:
    """labyard as it was at BEFORE, checked out beside this tree."""
    path = Path(tempfile.mkdtemp(prefix="labyard-before-")) / "tree"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(path), BEFORE],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
            capture_output=True,
        )
        shutil.rmtree(path.parent, ignore_errors=True)


def run_before(before: Path, settings: Settings) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": str(before),
        "LABYARD_DATA_DIR": str(settings.data_dir),
        "LABYARD_IMAGES_DIR": str(settings.images_dir),
        "LABYARD_DATABASE_URL": settings.database_url,
    }
    done = subprocess.run(
        [sys.executable, "-c", OLD_SIDE],
        cwd=before,  # "-c" puts the working directory first on the path
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    made: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return made


async def test_what_the_previous_version_made_is_adopted_and_used(
    before: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    settings = Settings(
        data_dir=data_dir, images_dir=IMAGES_DIR, database_url=f"sqlite:///{data_dir}/l.db"
    )
    made = run_before(before, settings)
    labyard = Labyard(settings)  # this code, a new process's view of the same host
    try:
        with labyard.db.session() as session:
            row = session.get(PlaygroundRow, made["running"])
            assert row is not None and row.driver_state["version"] == "1"

        # Running: reached where it runs, its state upgraded in place.
        async with await labyard.playgrounds.connect(made["running"]) as connection:
            assert (await connection.run("cat /root/kept")).stdout == "running\n"
        with labyard.db.session() as session:
            state = session.get_one(PlaygroundRow, made["running"]).driver_state
            assert state["version"] == "2" and state["machines"][0]["address"]

        # Stopped: restarts with its disk as it was.
        restarted = await labyard.playgrounds.restart(made["stopped"])
        assert restarted.state == "running"
        async with await labyard.playgrounds.connect(made["stopped"]) as connection:
            assert (await connection.run("cat /root/kept")).stdout == "stopped\n"

        # Saved: starts again from its image.
        copy = await labyard.saved.start("", "before-upgrade")
        async with await labyard.playgrounds.connect(copy.id) as connection:
            assert (await connection.run("cat /root/kept")).stdout == "saved\n"

        # Warm: claimed, and the learner's key opens it.
        claimed = await labyard.pools.claim(POOL, "user:upgrade", lifetime_s=600)
        assert claimed is not None and claimed.owner == "user:upgrade"
        async with await labyard.playgrounds.connect(claimed.id) as connection:
            assert (await connection.run("true")).exit_code == 0
    finally:
        await labyard.pools.close()
        await dismantle(labyard)
