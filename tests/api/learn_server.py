"""A real labyard server whose content folder is the tiny fixture in fixtures/learn (the
session `server` of conftest.py serves the repository's content, which changes as authors
write it). Each module that imports `learn_server` gets its own."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from labyard.runtime.local.names import nft_table
from labyard.settings import Settings
from tests.api.conftest import Account, Server, _destroy_everything, _free_port, _wait_healthy
from tests.conftest import IMAGES_DIR, REPO

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "learn"
SOLVE_DEADLINE_S = 30.0


@contextmanager
def learn_server(content: Path = FIXTURE) -> Iterator[Server]:
    data_dir = Path(tempfile.mkdtemp(prefix="labyard-learn-"))
    port = _free_port()
    env = {**os.environ, "LABYARD_DATA_DIR": str(data_dir), "LABYARD_IMAGES_DIR": str(IMAGES_DIR)}
    env.pop("LABYARD_DATABASE_URL", None)
    log = data_dir / "server.log"
    command = [str(REPO / ".venv/bin/labyard"), "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--content", str(content)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", process, log)
        yield Server(f"http://127.0.0.1:{port}", data_dir)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        settings = Settings(data_dir, IMAGES_DIR, f"sqlite:///{data_dir}/labyard.db")
        asyncio.run(_destroy_everything(settings))
        table = ["nft", "delete", "table", "inet", nft_table(settings.instance)]
        subprocess.run(table, capture_output=True, check=False)
        shutil.rmtree(data_dir, ignore_errors=True)


def wait_for_state(account: Account, attempt_id: str, state: str) -> dict[str, object]:
    """The attempt once its state is `state`; fails after SOLVE_DEADLINE_S."""
    deadline = time.monotonic() + SOLVE_DEADLINE_S
    found: dict[str, object] = {}
    while time.monotonic() < deadline:
        response = account.api("GET", f"/api/attempts/{attempt_id}")
        assert response.status_code == 200, response.text
        found = response.json()
        if found["state"] == state:
            return found
        time.sleep(0.2)  # polling a condition under a deadline
    raise AssertionError(f"attempt {attempt_id} never became {state}: {found}")


def csrf_header(client: httpx.Client) -> dict[str, str]:
    return {"X-CSRF-Token": client.cookies.get("labyard_csrf", "")}
