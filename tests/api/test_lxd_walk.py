"""Everything a user does, on the lxd driver: a live `labyard serve` whose machines are LXD
system containers on the test session's own LXD daemon (no mock of LXD anywhere).

One learner on the premium plan walks it in file order: a `linux` playground answers the
API's exec, the remote CLI's exec and cp, the editor's file API, the browser terminal and an
exposed port (privately and through a share link); it stops, restarts with its files kept,
and is extended; it is saved and started again from the save, and forked while it runs. A
challenge's init tasks run and its task turns green once solved; an instructor's class
does the same on the class's seats, and the board shows it. `docker` runs nested
containers with its own dockerd; `network-lab`'s machines reach their neighbours and only
them. Last, the server's reconciler removes machines that no playground owns.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from labyard.access import generate_keypair
from labyard.manifest import manifest_from_text
from labyard.runtime import PlaygroundSpec, new_playground_id
from labyard.runtime.lxd.driver import LxdDriver
from labyard.settings import Settings
from tests.api.conftest import Account, Server
from tests.conftest import IMAGES_DIR, REPO
from tests.runtime.test_docker import BUILD_IMAGE

LABYARD = str(REPO / ".venv/bin/labyard")
CHALLENGE = "challenges/dns-resolution"
DEADLINE_S = 120.0


@pytest.fixture(scope="module")
def learner(lxd_server: Server) -> Iterator[Account]:
    account = lxd_server.signup()
    granted = subprocess.run(
        [LABYARD, "admin", "grant", account.email, "premium"],
        capture_output=True,
        text=True,
        env={**os.environ, "LABYARD_DATA_DIR": str(lxd_server.data_dir)},
        check=False,
    )
    assert granted.returncode == 0, granted.stderr
    yield account
    account.destroy_all()


@pytest.fixture(scope="module")
def linux(learner: Account) -> dict[str, Any]:
    return learner.start("linux")


def run(account: Account, playground_id: str, command: str, machine: str | None = None) -> str:
    """stdout of a command that must succeed, through the API's exec."""
    response = account.api(
        "POST",
        f"/api/playgrounds/{playground_id}/exec",
        json={"command": command, "machine": machine, "timeout_s": 110},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    assert result["exit_code"] == 0, result
    return str(result["stdout"])


def until(what: str, check: Any, deadline: float = DEADLINE_S) -> Any:
    end = time.monotonic() + deadline
    while not (found := check()):
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline:g} s waiting for {what}")
        time.sleep(0.5)  # polling a condition under a deadline
    return found


# -- a linux playground: exec, CLI, editor, terminal, ports ----------------------------------


def test_a_linux_playground_boots_clean_and_answers_exec(
    learner: Account, linux: dict[str, Any]
) -> None:
    assert linux["state"] == "running"
    out = run(learner, linux["id"], "hostname; systemctl is-system-running --wait; nproc")
    assert out.split()[:2] == ["linux", "running"], out


def test_the_remote_cli_execs_and_copies(
    lxd_server: Server, learner: Account, linux: dict[str, Any], tmp_path: Path
) -> None:
    token = learner.api(
        "POST", "/api/tokens", json={"email": learner.email, "password": learner.password}
    )
    assert token.status_code == 201, token.text
    env = {
        **os.environ,
        "LABYARD_SERVER": lxd_server.url,
        "LABYARD_TOKEN": token.json()["token"],
        "LABYARD_CONFIG": str(tmp_path / "config"),
        "LABYARD_DATA_DIR": str(tmp_path / "local"),
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [LABYARD, *args], capture_output=True, text=True, env=env, timeout=120, check=False
        )

    shown = cli(
        "exec", linux["id"], "--", "sh", "-c", "echo $((6 * 7)) > /root/answer; cat /root/answer"
    )
    assert shown.returncode == 0 and shown.stdout == "42\n", shown.stderr
    copied = cli("cp", f"{linux['id']}:/root/answer", str(tmp_path / "answer"))
    assert copied.returncode == 0, copied.stderr
    assert (tmp_path / "answer").read_text() == "42\n"
    (tmp_path / "up").write_text("uploaded\n")
    uploaded = cli("cp", str(tmp_path / "up"), f"{linux['id']}:/root/up")
    assert uploaded.returncode == 0, uploaded.stderr
    assert run(learner, linux["id"], "cat /root/up") == "uploaded\n"


def test_the_editor_writes_and_reads_a_file(learner: Account, linux: dict[str, Any]) -> None:
    base = f"/api/playgrounds/{linux['id']}/machines/linux/files"
    saved = learner.api(
        "PUT", f"{base}/content", json={"path": "/root/notes.txt", "content": "hi\n"}
    )
    assert saved.status_code in (200, 204), saved.text
    read = learner.api("GET", f"{base}/content", params={"path": "/root/notes.txt"})
    assert read.status_code == 200 and read.json()["content"] == "hi\n", read.text
    listed = learner.api("GET", base, params={"path": "/root"})
    assert "notes.txt" in {entry["name"] for entry in listed.json()["entries"]}, listed.text


def test_the_browser_terminal_runs_a_shell(
    lxd_server: Server, learner: Account, linux: dict[str, Any]
) -> None:
    cookie = "; ".join(f"{k}={v}" for k, v in learner.cookies.items())
    url = f"{lxd_server.ws_url}/api/playgrounds/{linux['id']}/machines/linux/terminal"
    with connect(url, additional_headers={"Cookie": cookie}) as ws:
        ws.send(b"echo walk-$((40 + 2))\r")
        seen = ""
        end = time.monotonic() + 30
        while "walk-42" not in seen and time.monotonic() < end:
            frame = ws.recv(timeout=30)
            if isinstance(frame, bytes):
                seen += frame.decode(errors="replace")
    assert "walk-42" in seen, seen


def test_an_exposed_port_answers_its_owner_and_a_share_link(
    lxd_server: Server, learner: Account, linux: dict[str, Any]
) -> None:
    run(
        learner,
        linux["id"],
        "mkdir -p /srv/www && echo served-by-lxd > /srv/www/index.html && "
        "systemd-run --unit web -p WorkingDirectory=/srv/www python3 -m http.server 8000",
    )
    path = f"/p/{linux['id']}/linux/8000/"

    def answered() -> httpx.Response | None:
        response = learner.client.get(path)
        return response if response.status_code == 200 else None

    assert "served-by-lxd" in until("the web server", answered).text
    assert lxd_server.client().get(path).status_code in (302, 303, 401, 403, 404)  # not yours
    shared = learner.api(
        "POST", f"/api/playgrounds/{linux['id']}/shares", json={"machine": "linux", "port": 8000}
    )
    assert shared.status_code == 201, shared.text
    anyone = lxd_server.client().get(shared.json()["url"].replace(lxd_server.url, ""))
    assert anyone.status_code == 200 and "served-by-lxd" in anyone.text


# -- stop, restart, extend, save, fork ------------------------------------------------------


def test_stop_and_restart_keep_files_and_extend_adds_time(
    learner: Account, linux: dict[str, Any]
) -> None:
    playground_id = linux["id"]
    run(learner, playground_id, "echo kept > /root/kept && sync")
    stopped = learner.api("POST", f"/api/playgrounds/{playground_id}/stop", timeout=60)
    assert stopped.status_code == 200 and stopped.json()["state"] == "stopped", stopped.text
    restarted = learner.api("POST", f"/api/playgrounds/{playground_id}/restart", timeout=120)
    assert restarted.status_code == 200 and restarted.json()["state"] == "running", restarted.text
    assert run(learner, playground_id, "cat /root/kept") == "kept\n"
    before = restarted.json()["expires_at"]
    extended = learner.api(
        "POST", f"/api/playgrounds/{playground_id}/extend", json={"seconds": 600}
    )
    assert extended.status_code == 200 and extended.json()["expires_at"] > before, extended.text


def test_a_running_playground_forks_with_its_files(learner: Account, linux: dict[str, Any]) -> None:
    run(learner, linux["id"], "echo forked > /root/fork-me && sync")
    forked = learner.api("POST", f"/api/playgrounds/{linux['id']}/fork", timeout=300)
    assert forked.status_code == 201, forked.text
    copy = forked.json()
    learner.started.append(copy["id"])
    assert run(learner, copy["id"], "cat /root/fork-me") == "forked\n"
    learner.api("DELETE", f"/api/playgrounds/{copy['id']}", timeout=120)


def test_a_stopped_playground_saves_and_starts_again_from_the_save(
    learner: Account, linux: dict[str, Any]
) -> None:
    learner.api("POST", f"/api/playgrounds/{linux['id']}/stop", timeout=60)
    saved = learner.api(
        "POST", f"/api/playgrounds/{linux['id']}/save", json={"name": "walked"}, timeout=300
    )
    assert saved.status_code == 201, saved.text
    again = learner.api("POST", "/api/saved-playgrounds/walked/start", json={}, timeout=300)
    assert again.status_code == 201, again.text
    learner.started.append(again.json()["id"])
    assert run(learner, again.json()["id"], "cat /root/kept") == "kept\n"
    learner.destroy_all()
    assert learner.api("DELETE", "/api/saved-playgrounds/walked").status_code == 204


# -- content, other playgrounds, the reconciler --------------------------------------------


def test_a_challenge_runs_its_init_tasks_and_turns_green(learner: Account) -> None:
    started = learner.api("POST", "/api/attempts", json={"content": CHALLENGE}, timeout=300)
    assert started.status_code == 201, started.text
    attempt = started.json()
    learner.started.append(attempt["playground_id"])
    solution = (REPO / f"content/{CHALLENGE}/solution.sh").read_text()
    run(learner, attempt["playground_id"], solution)

    def green() -> dict[str, Any] | None:
        found = learner.api("GET", f"/api/attempts/{attempt['id']}").json()
        looped = [t for t in found["tasks"] if not t["init"]]
        return found if looped and all(t["state"] == "completed" for t in looped) else None

    until("every task to be completed", green)
    learner.destroy_all()


def test_a_class_member_solves_a_challenge_and_the_board_shows_it(lxd_server: Server) -> None:
    email = f"teacher-{time.monotonic_ns()}@example.com"
    made = subprocess.run(
        [LABYARD, "admin", "create-user", email, "--role", "instructor"],
        input="correct horse battery\n",
        capture_output=True,
        text=True,
        env={**os.environ, "LABYARD_DATA_DIR": str(lxd_server.data_dir)},
        check=False,
    )
    assert made.returncode == 0, made.stderr
    teacher = Account(email, "correct horse battery", lxd_server.client())
    signed_in = teacher.client.post(
        "/api/login", json={"email": email, "password": teacher.password}
    )
    assert signed_in.status_code == 200, signed_in.text
    at = datetime.now(UTC)
    created = teacher.api(
        "POST",
        "/api/classes",
        json={
            "title": "LXD workshop",
            "content": [CHALLENGE],
            "seats": 2,
            "starts_at": (at - timedelta(minutes=1)).isoformat(),
            "ends_at": (at + timedelta(hours=1)).isoformat(),
        },
    )
    assert created.status_code == 201, created.text
    cls = created.json()
    member = lxd_server.signup()
    joined = member.api("POST", "/api/classes/join", json={"code": cls["join_code"]})
    assert joined.status_code == 200, joined.text
    path = f"/api/classes/{cls['id']}/playground"
    started = member.api("POST", path, json={"content": CHALLENGE}, timeout=300)
    assert started.status_code in (201, 202), started.text
    playground = (
        started.json()
        if started.status_code == 201
        else until(
            "the class playground to start",
            lambda: (r := member.api("GET", path)).status_code == 200 and r.json(),
        )
    )
    try:
        solution = (REPO / f"content/{CHALLENGE}/solution.sh").read_text()
        run(member, playground["id"], solution)

        def shown() -> bool:
            board = teacher.api("GET", f"/api/classes/{cls['id']}/board").json()
            (row,) = board["learners"]
            cells = [c for key, c in row["cells"].items() if key.startswith(CHALLENGE)]
            return bool(cells) and all(c["completed_at"] for c in cells)

        until("the board to show the challenge solved", shown)
    finally:
        ended = teacher.api("POST", f"/api/classes/{cls['id']}/end", timeout=120)
        assert ended.status_code == 200, ended.text
    live = member.api("GET", f"/api/playgrounds/{playground['id']}")
    assert live.status_code == 404, live.text  # the class's end took its machines


def test_docker_runs_nested_containers(learner: Account) -> None:
    docker = learner.start("docker")
    playground_id = docker["id"]
    until(
        "dockerd",
        lambda: "active" in run(learner, playground_id, "systemctl is-active docker || true"),
    )
    run(learner, playground_id, BUILD_IMAGE)
    out = run(learner, playground_id, "docker run --rm local/busybox sh -c 'echo nested-$((1+1))'")
    assert out.strip() == "nested-2"
    learner.destroy_all()


def test_multi_network_machines_reach_their_neighbours_only(learner: Account) -> None:
    lab = learner.start("network-lab")
    playground_id = lab["id"]
    run(learner, playground_id, "ping -c1 -W3 r2", machine="r1")
    blocked = learner.api(
        "POST",
        f"/api/playgrounds/{playground_id}/exec",
        json={"command": "ping -c1 -W2 r3", "machine": "r1"},
        timeout=60,
    )
    assert blocked.json()["exit_code"] != 0, blocked.text  # r3 is on no network of r1's
    run(learner, playground_id, "ping -c1 -W3 r3", machine="r2")  # the control
    learner.destroy_all()


def test_the_reconciler_removes_machines_no_playground_owns(lxd_server: Server) -> None:
    assert lxd_server.lxd is not None
    settings = Settings(
        data_dir=lxd_server.data_dir,
        images_dir=IMAGES_DIR,
        database_url=f"sqlite:///{lxd_server.data_dir}/labyard.db",
        driver="lxd",
        lxd=lxd_server.lxd,
    )

    async def orphan() -> str:
        driver = LxdDriver(settings)
        manifest = manifest_from_text(
            "kind: playground\nname: orphan\nmachines:\n  - {name: one, memory: 256MiB}\n",
            "orphan.yaml",
        )
        playground_id = new_playground_id()
        keys = {"one": generate_keypair("one").private_openssh}
        spec = PlaygroundSpec(playground_id, manifest, generate_keypair().public_openssh, keys)
        await driver.start(spec)
        assert playground_id in await driver.list()
        return playground_id

    async def listed(playground_id: str) -> bool:
        return playground_id in await LxdDriver(settings).list()

    playground_id = asyncio.run(orphan())
    until("the reconciler to remove the orphan", lambda: not asyncio.run(listed(playground_id)))
