"""The remote CLI end to end: the real `labyard` command against a live server, SSH through
the server's WebSocket tunnel, and plain OpenSSH via `labyard ssh-proxy`. What is tested is
the CLI, the tunnel and the server, not machines: the server runs the fake driver, whose
machines are processes answering real SSH (the tunnel dials them through the driver).

Tests run in file order on one playground of one account (the free plan runs one at a
time); the last ones stop, restart and destroy it, and sign out.
"""

from __future__ import annotations

import json
import os
import select
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Server
from tests.conftest import REPO

LABYARD = str(REPO / ".venv/bin/labyard")


@dataclass
class Cli:
    """`labyard` with its own config directory (never the real ~/.config)."""

    config: Path
    local_data: Path

    @property
    def env(self) -> dict[str, str]:
        env = {**os.environ, "LABYARD_CONFIG": str(self.config), "COLUMNS": "200"}
        # Were a command to act locally by mistake, it would do so here, harmlessly.
        env["LABYARD_DATA_DIR"] = str(self.local_data)
        for name in ("LABYARD_SERVER", "LABYARD_TOKEN", "LABYARD_DATABASE_URL"):
            env.pop(name, None)
        return env

    def __call__(
        self, *args: str, input: str | None = None, timeout: float = 120, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [LABYARD, *args],
            capture_output=True,
            text=True,
            input=input,
            env={**self.env, **env},
            timeout=timeout,
            check=False,
        )

    def token(self) -> str:
        token: str = json.loads((self.config / "credentials.json").read_text())["token"]
        return token


def signed_in(server: Server, tmp: Path) -> Cli:
    account = server.signup()
    cli = Cli(tmp / "config", tmp / "local")
    result = cli(
        "login", "--server", server.url, "--email", account.email, input=account.password + "\n"
    )
    assert result.returncode == 0, result.stderr
    assert account.email in result.stderr
    return cli


@pytest.fixture(scope="module")
def server(fake_server: Server) -> Server:
    return fake_server


@pytest.fixture(scope="module")
def alice(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return signed_in(server, tmp_path_factory.mktemp("alice"))


@pytest.fixture(scope="module")
def bob(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return signed_in(server, tmp_path_factory.mktemp("bob"))


@pytest.fixture(scope="module")
def playground(alice: Cli) -> Iterator[dict[str, Any]]:
    result = alice("playground", "start", "linux", "--json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    yield data
    alice("playground", "destroy", data["id"])


def test_login_keeps_the_token_private(alice: Cli, server: Server) -> None:
    path = alice.config / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert stored["server"] == server.url
    assert set(stored) == {"server", "token", "email"}


def test_login_with_a_wrong_password_fails(server: Server, tmp_path: Path) -> None:
    account = server.signup()
    cli = Cli(tmp_path / "config", tmp_path / "local")
    result = cli("login", "--server", server.url, "--email", account.email, input="wrong!!!\n")
    assert result.returncode == 6
    assert result.stderr.startswith("labyard: ")
    assert not (tmp_path / "config" / "credentials.json").exists()


def test_start_list_and_status(alice: Cli, playground: dict[str, Any]) -> None:
    assert playground["state"] == "running"
    assert [m["name"] for m in playground["machines"]] == ["linux"]
    listed = alice("playground", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [p["id"] for p in json.loads(listed.stdout)] == [playground["id"]]
    status = alice("playground", "status", playground["id"], "--json")
    assert json.loads(status.stdout)["machines"] == playground["machines"]
    table = alice("playground", "list")
    assert playground["id"] in table.stdout and "running" in table.stdout


def test_plan_limit_is_exit_4(alice: Cli, playground: dict[str, Any]) -> None:
    result = alice("playground", "start", "linux")
    assert result.returncode == 4
    assert "at a time" in result.stderr


def test_unknown_playground_is_exit_3(alice: Cli) -> None:
    result = alice("playground", "status", "zzzzzzzz")
    assert (result.returncode, result.stderr) == (3, "labyard: no playground 'zzzzzzzz'\n")


def test_exec_propagates_output_and_exit_code(alice: Cli, playground: dict[str, Any]) -> None:
    result = alice("exec", playground["id"], "--", "echo out; echo err >&2; exit 7")
    assert (result.returncode, result.stdout, result.stderr) == (7, "out\n", "err\n")
    missing = alice("exec", playground["id"], "--machine", "nope", "--", "true")
    assert missing.returncode == 3
    assert "no machine 'nope'" in missing.stderr


def test_cp_both_ways(alice: Cli, playground: dict[str, Any], tmp_path: Path) -> None:
    pid = playground["id"]
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "a.txt").write_text("alpha\n")
    script = tmp_path / "tree" / "run.sh"
    script.write_text("#!/bin/sh\necho ran\n")
    script.chmod(0o755)
    assert alice("cp", str(tmp_path / "tree"), f"{pid}:/root/").returncode == 0
    ran = alice("exec", pid, "--", "cat /root/tree/a.txt && /root/tree/run.sh")
    assert ran.stdout == "alpha\nran\n"
    back = tmp_path / "back"
    result = alice("cp", f"{pid}:linux:/root/tree", str(back))
    assert result.returncode == 0, result.stderr
    assert (back / "a.txt").read_text() == "alpha\n"
    assert os.access(back / "run.sh", os.X_OK)


def test_ssh_with_piped_stdin(alice: Cli, playground: dict[str, Any]) -> None:
    result = alice("ssh", playground["id"], input="echo $((6*7))\nexit 3\n")
    assert (result.returncode, result.stdout) == (3, "42\n"), result.stderr


def _wait_listening(alice: Cli, playground_id: str, port: int) -> None:
    """Inside the machine, poll the port under a deadline (no sleep-and-hope here)."""
    probe = (
        f"for i in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && exit 0; "
        "sleep 0.05; done; exit 1"
    )
    assert alice("exec", playground_id, "--", probe).returncode == 0


def _read_line(process: subprocess.Popen[str], deadline_s: float) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], deadline_s)
    assert ready, "no output in time"
    return process.stdout.readline()


def test_port_forward(alice: Cli, playground: dict[str, Any]) -> None:
    pid = playground["id"]
    command = "mkdir -p /srv/www && echo forwarded > /srv/www/index.html && "
    command += "(setsid python3 -m http.server 8000 --directory /srv/www >/dev/null 2>&1 &)"
    assert alice("exec", pid, "--", command).returncode == 0
    _wait_listening(alice, pid, 8000)
    process = subprocess.Popen(
        [LABYARD, "port-forward", pid, "0:8000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=alice.env,
    )
    try:
        port = int(_read_line(process, 30))
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).text == "forwarded\n"
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_another_user_cannot_see_or_enter(bob: Cli, playground: dict[str, Any]) -> None:
    pid = playground["id"]
    for args in (
        ("playground", "status", pid),
        ("exec", pid, "--", "true"),
        ("cp", f"{pid}:/etc/hostname", "/tmp/x"),
        ("ssh-config", pid),
        ("playground", "destroy", pid),
    ):
        result = bob(*args)
        assert result.returncode == 3, (args, result.stderr)
        assert result.stderr == f"labyard: no playground '{pid}'\n"
    assert json.loads(bob("playground", "list", "--json").stdout) == []
    # The tunnel itself refuses too (OpenSSH would get nothing).
    proxy = bob("ssh-proxy", pid, input="")
    assert proxy.returncode == 3 and proxy.stdout == ""


def test_openssh_through_ssh_proxy(alice: Cli, playground: dict[str, Any], tmp_path: Path) -> None:
    pid = playground["id"]
    result = alice("ssh-config", pid)
    assert result.returncode == 0, result.stderr
    config = tmp_path / "ssh_config"
    config.write_text(result.stdout)
    assert f"Host {pid} *.{pid}" in result.stdout and "ssh-proxy %h" in result.stdout
    key = alice.config / "keys" / pid
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    hostname = alice("exec", pid, "--", "hostname").stdout
    for host in (pid, f"linux.{pid}"):
        ssh = subprocess.run(
            ["/usr/bin/ssh", "-F", str(config), "-o", "BatchMode=yes", host, "hostname"],
            capture_output=True,
            text=True,
            env=alice.env,
            timeout=60,
            check=False,
        )
        assert (ssh.returncode, ssh.stdout) == (0, hostname), ssh.stderr


def test_stop_restart_destroy(alice: Cli, playground: dict[str, Any]) -> None:
    pid = playground["id"]
    assert alice("playground", "stop", pid).returncode == 0
    status = json.loads(alice("playground", "status", pid, "--json").stdout)
    assert status["state"] == "stopped"
    stopped = alice("exec", pid, "--", "true")
    assert stopped.returncode == 4, stopped.stderr
    assert alice("playground", "restart", pid).returncode == 0
    assert alice("exec", pid, "--", "cat /root/tree/a.txt").stdout == "alpha\n"
    destroyed = alice("playground", "destroy", pid)
    assert destroyed.returncode == 0 and f"destroyed {pid}" in destroyed.stderr
    assert alice("playground", "status", pid).returncode == 3


def test_logout_revokes_the_token(server: Server, tmp_path: Path) -> None:
    cli = signed_in(server, tmp_path)
    token = cli.token()
    result = cli("logout")
    assert result.returncode == 0, result.stderr
    assert not (cli.config / "credentials.json").exists()
    revoked = cli("playground", "list", LABYARD_SERVER=server.url, LABYARD_TOKEN=token)
    assert revoked.returncode == 6
    unknown = cli("--server", server.url, "playground", "list")
    assert unknown.returncode == 6
    assert "labyard login" in unknown.stderr
    assert cli("logout").returncode == 0  # a second time is fine
