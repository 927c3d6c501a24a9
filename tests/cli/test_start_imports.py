"""The `labyard` command imports only what the command uses, so it starts fast.

Each case runs the installed entry point with `PYTHONPROFILEIMPORTTIME=1` and reads the
modules it imported. `--help` and `login --help` load neither the server stack nor the
SSH, WebSocket or HTTP clients, nor asyncio; acting on a server (`login`, `playground list`, `exec`,
against a real `labyard serve`) never loads the server stack, and only `exec` loads SSH.
Timings are `bench/cli_start.py`'s job; these are assertions that can fail.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Server, server  # noqa: F401 (the live server fixture)
from tests.conftest import REPO

LABYARD = str(REPO / ".venv/bin/labyard")

SERVER_STACK = {
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "argon2",
    "jinja2",
    "prometheus_client",
    "pyroute2",
    "yaml",
    "labyard.api",
    "labyard.services",
    "labyard.store",
    "labyard.runtime",
    "labyard.manifest",
    "labyard.content",
    "labyard.images",
}
SSH = {"asyncssh", "cryptography", "labyard.access"}
TUNNEL = {"websockets"}
HTTPX = {"httpx", "httpcore"}
EVENT_LOOP = {"asyncio"}
"""~13 ms: loaded by the commands that talk to a server or a machine, not by --help."""


def imported(result: subprocess.CompletedProcess[str]) -> set[str]:
    """Every module the command imported, with each of its parent packages."""
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            parts = name.split(".")
            names.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return names


def run(
    config: Path, *args: str, input: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "LABYARD_CONFIG": str(config), "PYTHONPROFILEIMPORTTIME": "1"}
    environment["LABYARD_DATA_DIR"] = str(config / "local")  # harmless, were it used
    for name in ("LABYARD_SERVER", "LABYARD_TOKEN", "LABYARD_DATABASE_URL"):
        environment.pop(name, None)
    result = subprocess.run(
        [LABYARD, *args],
        input=input,
        capture_output=True,
        text=True,
        env={**environment, **env},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-3000:]}"
    return result


def assert_none_of(forbidden: set[str], result: subprocess.CompletedProcess[str]) -> None:
    loaded = imported(result)
    assert "labyard.cli.main" in loaded, "no import profile: is PYTHONPROFILEIMPORTTIME honoured?"
    assert sorted(forbidden & loaded) == []


@pytest.mark.parametrize("args", [("--help",), ("login", "--help"), ("playground", "--help")])
def test_help_imports_no_server_stack_and_no_clients(args: tuple[str, ...], tmp_path: Path) -> None:
    assert_none_of(SERVER_STACK | SSH | TUNNEL | HTTPX | EVENT_LOOP, run(tmp_path, *args))


@pytest.fixture(scope="module")
def signed_in(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """A config directory signed in to the live server."""
    account = server.signup()
    config = tmp_path_factory.mktemp("cli-start") / "config"
    login = ("login", "--server", server.url, "--email", account.email)
    run(config, *login, input=account.password + "\n")
    return config


@pytest.fixture(scope="module")
def playground(signed_in: Path) -> Iterator[dict[str, Any]]:
    data: dict[str, Any] = json.loads(
        run(signed_in, "playground", "start", "linux", "--json").stdout
    )
    yield data
    run(signed_in, "playground", "destroy", data["id"])


def test_login_loads_no_server_stack(server: Server, tmp_path: Path) -> None:  # noqa: F811
    account = server.signup()
    login = ("login", "--server", server.url, "--email", account.email)
    result = run(tmp_path / "config", *login, input=account.password + "\n")
    assert_none_of(SERVER_STACK | SSH | TUNNEL | HTTPX, result)


def test_remote_list_loads_no_server_stack(signed_in: Path, playground: dict[str, Any]) -> None:
    result = run(signed_in, "playground", "list", "--json")
    assert playground["id"] in result.stdout
    assert_none_of(SERVER_STACK | SSH | TUNNEL | HTTPX, result)


def test_remote_exec_loads_ssh_but_no_server_stack(
    signed_in: Path, playground: dict[str, Any]
) -> None:
    result = run(signed_in, "exec", playground["id"], "--", "echo", "hi")
    assert result.stdout == "hi\n"
    assert {"asyncssh", "websockets", "labyard.access"} <= imported(result)
    assert_none_of(SERVER_STACK | HTTPX, result)
