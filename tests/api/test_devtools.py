"""Task dev tools against a real server and real playgrounds: an author sees every task's
check output live, re-runs, resets and runs the solution step by step; a learner working on
the same challenge never gets any check output, in the page, the API or the event stream.

The fixture challenge's check prints a marker on stdout and stderr on every run."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Account, Server
from tests.api.learn_server import learn_server
from tests.conftest import REPO

CONTENT = Path(__file__).resolve().parent / "fixtures" / "devtools"
KEY = "challenges/secret-check"
MARKER = "SECRET-MARKER-7f3a"
DEADLINE_S = 30.0
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with learn_server(CONTENT) as found:
        yield found


def sign_in_as(server: Server, role: str) -> Account:
    """A user made with `labyard admin create-user --role ROLE`, signed in over the API."""
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    env = {**os.environ, "LABYARD_DATA_DIR": str(server.data_dir)}
    env.pop("LABYARD_DATABASE_URL", None)
    made = subprocess.run(
        [str(REPO / ".venv/bin/labyard"), "admin", "create-user", email, "--role", role],
        input=PASSWORD + "\n",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    client = server.client()
    response = client.post("/api/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    client.get("/")  # the CSRF cookie comes with a page
    return Account(email, PASSWORD, client)


def start(account: Account) -> dict[str, Any]:
    response = account.api("POST", "/api/attempts", json={"content": KEY}, timeout=120)
    assert response.status_code == 201, response.text
    attempt: dict[str, Any] = response.json()
    return attempt


def until(what: str, probe: Callable[[], Any]) -> Any:
    """`probe()` once it is truthy; fails after DEADLINE_S."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if found := probe():
            return found
        time.sleep(0.2)  # polling a condition under a deadline
    raise AssertionError(f"never: {what}")


def devtools(account: Account, playground_id: str) -> dict[str, Any]:
    response = account.api("GET", f"/api/playgrounds/{playground_id}/devtools")
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


def task(view: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(t for t in view["tasks"] if t["name"] == name)
    return found


@pytest.fixture(scope="module")
def author(server: Server) -> Iterator[tuple[Account, dict[str, Any]]]:
    account = sign_in_as(server, "author")
    attempt = start(account)
    yield account, attempt
    account.api("DELETE", f"/api/attempts/{attempt['id']}", timeout=60)


def test_the_author_sees_every_task_live(author: tuple[Account, dict[str, Any]]) -> None:
    account, attempt = author
    playground = attempt["playground_id"]
    view = until(
        "the first check ran",
        lambda: (v := devtools(account, playground)) and task(v, "first")["runs"] and v,
    )
    first, second = task(view, "first"), task(view, "second")
    assert first["state"] == "running"
    check = first["checks"]["run"]
    assert check["exit_code"] == 1
    assert f"stdout-{MARKER}" in check["stdout"] and f"stderr-{MARKER}" in check["stderr"]
    assert 0 <= check["duration_s"] < 5
    assert first["checks"]["hint"]["stdout"] == "Create /tmp/first\n"
    assert first["env"] == {"GREETING": "hello-from-env"}
    assert first["hint"] == "Create /tmp/first"
    assert (second["state"], second["waiting_for"]) == ("blocked", ["first"])
    assert second["checks"] == {"run": None, "fail": None}
    assert [s["script"] for s in view["solution"]] == [
        "# the first file\ntouch /tmp/first",
        "# then the second\ntouch /tmp/second",
    ]
    runs = first["runs"]
    rerun = account.api("POST", f"/api/playgrounds/{playground}/devtools/tasks/first/rerun")
    assert rerun.status_code == 200, rerun.text
    assert task(rerun.json(), "first")["runs"] > runs


def labyard_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`labyard` with a config directory of its own and `env` added."""
    environment = {**os.environ, "COLUMNS": "200", "LABYARD_CONFIG": "/nonexistent"}
    for name in ("LABYARD_SERVER", "LABYARD_TOKEN", "LABYARD_DATABASE_URL", "LABYARD_DATA_DIR"):
        environment.pop(name, None)
    return subprocess.run(
        [str(REPO / ".venv/bin/labyard"), *args],
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_content_debug_on_the_server_and_on_this_host(
    server: Server, author: tuple[Account, dict[str, Any]]
) -> None:
    account, attempt = author
    playground = attempt["playground_id"]
    token = account.client.post(
        "/api/tokens", json={"email": account.email, "password": PASSWORD, "name": "debug"}
    ).json()["token"]
    remote = labyard_cli(
        "content", "debug", playground, "--json", LABYARD_SERVER=server.url, LABYARD_TOKEN=token
    )
    assert remote.returncode == 0, remote.stderr
    first = task(json.loads(remote.stdout), "first")
    assert MARKER in first["checks"]["run"]["stdout"]
    # On this host: the database the server writes, the checks run by the command itself.
    local = labyard_cli(
        "content", "debug", playground, "--once", LABYARD_DATA_DIR=str(server.data_dir)
    )
    assert local.returncode == 0, local.stderr
    assert f"stdout: stdout-{MARKER}" in local.stdout
    assert f"stderr: stderr-{MARKER}" in local.stdout
    assert "waits for: first" in local.stdout
    assert "GREETING=hello-from-env" in local.stdout
    # A learner's token gets what the API says: authors only.
    learner = server.signup()
    learner_token = learner.client.post(
        "/api/tokens", json={"email": learner.email, "password": learner.password, "name": "x"}
    ).json()["token"]
    refused = labyard_cli(
        "content",
        "debug",
        playground,
        "--json",
        LABYARD_SERVER=server.url,
        LABYARD_TOKEN=learner_token,
    )
    assert refused.returncode != 0
    assert "no challenge or tutorial attempt" in refused.stderr


def test_solution_step_by_step_then_reset(author: tuple[Account, dict[str, Any]]) -> None:
    account, attempt = author
    playground = attempt["playground_id"]
    base = f"/api/playgrounds/{playground}/devtools"
    step = account.api("POST", f"{base}/solution/0/run", timeout=60)
    assert step.status_code == 200, step.text
    assert step.json()["exit_code"] == 0
    until("first completed", lambda: task(devtools(account, playground), "first")["final"])
    view = devtools(account, playground)
    assert task(view, "second")["state"] == "running"
    assert view["attempt"]["state"] == "active"
    assert view["solution"][0]["last"]["exit_code"] == 0
    account.api("POST", f"{base}/solution/1/run", timeout=60)
    until("solved", lambda: devtools(account, playground)["attempt"]["state"] == "solved")

    # Reset one task: it and the task that needs it start over, the attempt is active again.
    reset = account.api("POST", f"{base}/tasks/first/reset")
    assert reset.status_code == 200, reset.text
    view = reset.json()
    assert view["attempt"]["state"] == "active"
    assert task(view, "first")["state"] in ("created", "running")
    assert task(view, "second")["state"] in ("created", "blocked")
    assert task(view, "first")["runs"] == 0
    # The files are still there: the checks find them again.
    until("solved again", lambda: devtools(account, playground)["attempt"]["state"] == "solved")

    whole = account.api("POST", f"{base}/reset")
    assert whole.status_code == 200, whole.text
    assert whole.json()["attempt"]["state"] == "active"
    assert all(t["state"] != "completed" for t in whole.json()["tasks"])
    missing = account.api("POST", f"{base}/tasks/nope/reset")
    assert missing.status_code == 404, missing.text
    no_step = account.api("POST", f"{base}/solution/9/run")
    assert no_step.status_code == 404, no_step.text


def test_the_author_page_has_the_panel(author: tuple[Account, dict[str, Any]]) -> None:
    account, _ = author
    page = account.client.get(f"/{KEY}")
    assert page.status_code == 200
    assert 'id="devtools"' in page.text and "/static/devtools.js" in page.text


def test_a_learner_never_sees_check_output(server: Server) -> None:
    learner = server.signup()
    attempt = start(learner)
    playground = attempt["playground_id"]
    try:
        until(
            "the learner's first check ran (its hint is shown)",
            lambda: any(
                t["hint"]
                for t in learner.api("GET", f"/api/attempts/{attempt['id']}").json()["tasks"]
            ),
        )
        streamed = read_events(learner, attempt["id"], playground)
        assert '"state": "completed"' in streamed  # the stream carried the change
        assert MARKER not in streamed
        for path in (f"/api/attempts/{attempt['id']}", "/api/attempts", "/api/progress"):
            response = learner.api("GET", path)
            assert response.status_code == 200, response.text
            assert MARKER not in response.text, path
        page = learner.client.get(f"/{KEY}")
        assert page.status_code == 200
        assert MARKER not in page.text
        assert "devtools" not in page.text
        refused = learner.api("GET", f"/api/playgrounds/{playground}/devtools")
        assert refused.status_code == 403, refused.text
        assert MARKER not in refused.text
        for path in ("tasks/first/rerun", "tasks/first/reset", "reset", "solution/0/run"):
            response = learner.api("POST", f"/api/playgrounds/{playground}/devtools/{path}")
            assert response.status_code == 403, (path, response.text)
    finally:
        learner.api("DELETE", f"/api/attempts/{attempt['id']}", timeout=60)


def test_another_author_gets_404(server: Server, author: tuple[Account, dict[str, Any]]) -> None:
    _, attempt = author
    other = sign_in_as(server, "admin")
    response = other.api("GET", f"/api/playgrounds/{attempt['playground_id']}/devtools")
    assert response.status_code == 404, response.text


def read_events(account: Account, attempt_id: str, playground_id: str) -> str:
    """The attempt's event stream while the learner completes the first task."""
    text = ""
    with account.client.stream("GET", f"/api/attempts/{attempt_id}/events", timeout=30) as events:
        made = False
        deadline = time.monotonic() + DEADLINE_S
        for line in events.iter_lines():
            text += line + "\n"
            if not made and line.startswith("event: state"):
                exec_in = account.api(
                    "POST",
                    f"/api/playgrounds/{playground_id}/exec",
                    json={"command": "touch /tmp/first"},
                )
                assert exec_in.status_code == 200, exec_in.text
                made = True
            if '"state": "completed"' in line or time.monotonic() > deadline:
                break
    return text
