"""/healthz follows the reconciler: 503 after three missed rounds, 200 again after a success.

Each test runs a real `labyard serve` on a data dir of its own with a 0.5 s reconcile
interval (LABYARD_RECONCILE_INTERVAL_S) and breaks it for real: its runc root becomes a file,
so every round fails where the driver lists the machines on the host.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from labyard.runtime.local.names import nft_table
from labyard.settings import Settings
from tests.api.conftest import START_DEADLINE_S
from tests.conftest import IMAGES_DIR, REPO

INTERVAL_S = 0.5
DEADLINE_S = 30.0  # generous: three intervals are 1.5 s, but the box may be busy


@dataclass
class Served:
    url: str
    settings: Settings
    log: Path

    def health(self) -> httpx.Response:
        return httpx.get(f"{self.url}/healthz", timeout=5)

    def break_runc(self) -> None:
        break_runc(self.settings)

    def mend_runc(self) -> None:
        self.settings.runc_root.unlink()

    def log_entries(self) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


def break_runc(settings: Settings) -> None:
    """Make the runc root unusable: a file where its state directory should be."""
    settings.runc_root.write_text("not a directory\n")


def wait_for(check: Callable[[], httpx.Response | None], what: str) -> httpx.Response:
    """Poll `check` until it returns a response, or fail after DEADLINE_S."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        try:
            response = check()
        except httpx.TransportError:
            response = None
        if response is not None:
            return response
        time.sleep(0.05)  # polling a condition under a deadline
    pytest.fail(f"timed out after {DEADLINE_S:g} s waiting for {what}")


def health_is(served: Served, status: int) -> Callable[[], httpx.Response | None]:
    def check() -> httpx.Response | None:
        response = served.health()
        return response if response.status_code == status else None

    return check


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serving(before_start: Callable[[Settings], None] = lambda _: None) -> Iterator[Served]:
    data_dir = Path(tempfile.mkdtemp(prefix="labyard-health-"))
    settings = Settings(
        data_dir=data_dir, images_dir=IMAGES_DIR, database_url=f"sqlite:///{data_dir}/labyard.db"
    )
    before_start(settings)
    port = _free_port()
    env = {
        **os.environ,
        "LABYARD_DATA_DIR": str(data_dir),
        "LABYARD_IMAGES_DIR": str(IMAGES_DIR),
        "LABYARD_RECONCILE_INTERVAL_S": str(INTERVAL_S),
    }
    env.pop("LABYARD_DATABASE_URL", None)
    log = data_dir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(REPO / ".venv/bin/labyard"), "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    served = Served(f"http://127.0.0.1:{port}", settings, log)
    try:
        deadline = time.monotonic() + START_DEADLINE_S
        while True:  # up when it answers at all: healthy or not is for the test to see
            assert process.poll() is None, f"labyard serve exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"labyard serve is not up:\n{log.read_text()}"
            try:
                served.health()
                break
            except httpx.TransportError:
                time.sleep(0.05)  # polling a condition under a deadline
        yield served
        assert process.poll() is None, f"labyard serve exited:\n{log.read_text()}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        subprocess.run(
            ["nft", "delete", "table", "inet", nft_table(settings.instance)],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(data_dir, ignore_errors=True)


def assert_healthy(response: httpx.Response) -> None:
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    reconciler = body["reconciler"]
    assert reconciler["interval_s"] == INTERVAL_S
    assert 0 <= reconciler["last_success_age_s"] <= 3 * INTERVAL_S
    assert (reconciler["failed_rounds"], reconciler["last_error"]) == (0, None)


def test_unhealthy_after_three_missed_rounds_and_healthy_after_a_success() -> None:
    with serving() as served:

        def succeeded() -> httpx.Response | None:
            response = served.health()
            if response.status_code != 200:
                return None
            age = response.json()["reconciler"]["last_success_age_s"]
            return response if age is not None else None

        assert_healthy(wait_for(succeeded, "a first successful round"))

        served.break_runc()
        broken = wait_for(health_is(served, 503), "/healthz to turn 503")
        body = broken.json()
        assert body["status"] == "unhealthy"
        assert "no reconcile round has succeeded for" in body["reason"]
        assert "FileExistsError" in body["reason"]
        assert body["reconciler"]["last_success_age_s"] > 3 * INTERVAL_S
        assert body["reconciler"]["failed_rounds"] >= 1
        assert "FileExistsError" in body["reconciler"]["last_error"]

        failures = [
            e
            for e in served.log_entries()
            if e["logger"] == "labyard.services.reconciler" and e["level"] == "error"
        ]
        assert failures, served.log.read_text()
        assert failures[0]["message"].startswith("reconcile round failed (1 in a row)")
        assert failures[0]["exception"].startswith("Traceback (most recent call last)")
        assert "FileExistsError" in failures[0]["exception"]

        served.mend_runc()
        assert_healthy(wait_for(health_is(served, 200), "/healthz to turn 200 again"))


def test_unhealthy_when_no_round_succeeds_after_start_up() -> None:
    with serving(before_start=break_runc) as served:
        broken = wait_for(health_is(served, 503), "/healthz to turn 503")
        body = broken.json()
        assert body["status"] == "unhealthy"
        assert "no reconcile round has succeeded since start-up" in body["reason"]
        assert body["reconciler"]["last_success_age_s"] is None

        served.mend_runc()
        assert_healthy(wait_for(health_is(served, 200), "/healthz to turn 200"))
