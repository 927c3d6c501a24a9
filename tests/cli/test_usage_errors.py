"""Usage errors in every command: Typer's usage panel on stderr, exit 2, never a traceback.

The commands come from the CLI itself, so a command added later is checked too. Each case
runs the installed `labyard` entry point as a subprocess, as a user would.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer.main

from labyard.cli.main import cli
from tests.conftest import REPO

LABYARD = str(REPO / ".venv/bin/labyard")


def _subcommands(command: Any) -> dict[str, Any]:
    """A group's commands by name ({} for a command). Duck-typed: Typer's command classes
    come from its own copy of Click, which is not the `click` package."""
    commands: dict[str, Any] = getattr(command, "commands", {})
    return commands


def _leaves(command: Any, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    subcommands = _subcommands(command)
    if not subcommands:
        return [path]
    return [p for name, sub in subcommands.items() for p in _leaves(sub, (*path, name))]


def _groups(command: Any, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    subcommands = _subcommands(command)
    if not subcommands:
        return []
    return [path, *(p for name, sub in subcommands.items() for p in _groups(sub, (*path, name)))]


ROOT = typer.main.get_command(cli)
COMMANDS = _leaves(ROOT, ())
GROUPS = _groups(ROOT, ())


def test_every_command_group_is_found() -> None:
    tops = {path[0] for path in COMMANDS}
    assert {"playground", "content", "image", "admin", "login", "logout", "exec"} <= tops
    assert {"ssh", "cp", "port-forward", "serve", "reconcile", "ssh-config", "ssh-proxy"} <= tops
    assert ("content", "import", "killercoda") in COMMANDS
    assert len(GROUPS) >= 6


def labyard(
    tmp_path: Path, *args: str, environment: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LABYARD_CONFIG": str(tmp_path / "config"), "COLUMNS": "100"}
    env.update(environment or {})
    # Were a command to run by mistake, it would act here, harmlessly.
    env["LABYARD_DATA_DIR"] = str(tmp_path / "data")
    for name in ("LABYARD_SERVER", "LABYARD_TOKEN", "LABYARD_DATABASE_URL"):
        env.pop(name, None)
    return subprocess.run(
        [LABYARD, *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


def assert_usage_error(result: subprocess.CompletedProcess[str], says: str) -> None:
    shown = f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stderr + result.stdout, shown
    assert result.returncode == 2, shown
    assert result.stdout == "", shown
    assert "─ Error ─" in result.stderr, shown  # Typer's panel
    text = " ".join(result.stderr.replace("│", " ").split())  # the panel's text, unwrapped
    assert says.lower() in text.lower(), shown


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_unknown_option(tmp_path: Path, path: tuple[str, ...]) -> None:
    result = labyard(tmp_path, *path, "--bogus")
    assert_usage_error(result, "No such option: --bogus")
    assert f"Try 'labyard {' '.join(path)} --help' for help." in result.stderr


@pytest.mark.parametrize("path", GROUPS, ids=lambda p: " ".join(p) or "labyard")
def test_unknown_command(tmp_path: Path, path: tuple[str, ...]) -> None:
    assert_usage_error(labyard(tmp_path, *path, "frobnicate"), "No such command 'frobnicate'")


MISSING = [
    (("playground", "start"), "Missing argument 'NAME_OR_MANIFEST'"),
    (("playground", "status"), "Missing argument 'PLAYGROUND_ID'"),
    (("playground", "destroy"), "Missing argument 'PLAYGROUND_IDS'"),
    (("exec",), "Missing argument 'PLAYGROUND_ID'"),
    (("exec", "abcd1234"), "Missing argument 'COMMAND'"),
    (("cp", "only-one"), "Missing argument 'DESTINATION'"),
    (("port-forward", "abcd1234"), "Missing argument 'PORTS'"),
    (("ssh",), "Missing argument 'PLAYGROUND_ID'"),
    (("ssh-proxy",), "Missing argument 'HOST'"),
    (("ssh-config",), "Missing argument 'PLAYGROUND_ID'"),
    (("login", "--server", "http://127.0.0.1:9"), "Missing option '--email'"),
    (("admin", "create-user"), "Missing argument 'EMAIL'"),
    (("admin", "grant", "a@example.org"), "Missing argument 'PLAN'"),
    (("admin", "grants"), "Missing argument 'EMAIL'"),
    (("admin", "revoke"), "Missing argument 'ENTITLEMENT_ID'"),
    (("admin", "mark-paid"), "Missing argument 'ORDER_ID'"),
    (("image", "rm"), "Missing argument 'NAME'"),
    (("content", "new", "challenge"), "Missing argument 'NAME'"),
    (("content", "validate"), "Missing argument 'PATH'"),
    (("content", "import", "killercoda"), "Missing argument 'SCENARIO'"),
]


@pytest.mark.parametrize(("args", "says"), MISSING, ids=[" ".join(a) for a, _ in MISSING])
def test_missing_argument(tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    assert_usage_error(labyard(tmp_path, *args), says)


BAD_VALUES = [
    (("playground", "start", "linux", "--lifetime", "soon"), "Invalid value for '--lifetime'"),
    (("exec", "abcd1234", "--timeout", "later", "--", "true"), "Invalid value for '--timeout'"),
    (("serve", "--port", "eighty"), "Invalid value for '--port'"),
    (("content", "preview", "--port", "eighty"), "Invalid value for '--port'"),
    (("image", "build", "--force=maybe"), "Option '--force' does not take a value"),
    (("admin", "grant", "a@example.org", "premium", "--days", "0"), "Invalid value for '--days'"),
    (("admin", "revoke", "seven"), "Invalid value for 'ENTITLEMENT_ID'"),
]


@pytest.mark.parametrize(("args", "says"), BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_bad_value(tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    assert_usage_error(labyard(tmp_path, *args), says)


def test_extra_argument(tmp_path: Path) -> None:
    assert_usage_error(labyard(tmp_path, "playground", "list", "extra"), "Got unexpected extra")


def test_labyard_errors_stay_one_line(tmp_path: Path) -> None:
    """Errors the commands raise are not usage errors: one `labyard:` line, their code."""
    result = labyard(tmp_path, "cp", "a", "b")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("labyard: exactly one of SOURCE and DESTINATION"), result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr


@pytest.mark.parametrize(
    ("name", "wrong", "right"),
    [
        ("LABYARD_RECONCILE_INTERVAL_S", "soon", "2.5"),
        ("LABYARD_RECONCILE_INTERVAL_S", "0", "15"),
        ("LABYARD_TAX_RATE_PERCENT", "100", "19"),
        ("LABYARD_POOLS", "linux", "linux=1"),
    ],
)
def test_a_bad_setting_is_named_in_one_line(
    tmp_path: Path, name: str, wrong: str, right: str
) -> None:
    """A server setting from the environment that does not parse: its name and value in one
    `labyard:` line, exit 2, no traceback; the same command with a good value runs."""
    result = labyard(tmp_path, "admin", "plans", environment={name: wrong})
    shown = f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert (result.returncode, result.stdout) == (2, ""), shown
    assert result.stderr.startswith(f"labyard: {name}"), shown
    assert wrong in result.stderr and len(result.stderr.splitlines()) == 1, shown
    control = labyard(tmp_path, "admin", "plans", environment={name: right})
    assert control.returncode == 0 and "premium" in control.stdout, control.stderr
