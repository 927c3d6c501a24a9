"""The `labyard` command's contract: output formats, exit codes, messages, file copy,
port forwarding and a shell over a pipe, run as a real subprocess."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import selectors
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from labyard.services import Labyard
from labyard.settings import Settings
from tests.conftest import REPO, run_cli

T = TypeVar("T")
LABYARD = str(REPO / ".venv/bin/labyard")


def cli_env(settings: Settings) -> dict[str, str]:
    env = {
        **os.environ,
        "LABYARD_DATA_DIR": str(settings.data_dir),
        "LABYARD_IMAGES_DIR": str(settings.images_dir),
        "COLUMNS": "200",
    }
    env.pop("LABYARD_DATABASE_URL", None)
    return env


def poll(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = check()
            if result is not None:
                return result
        except Exception as exc:  # the condition may raise until it holds
            last = exc
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what} (last error: {last})")
        time.sleep(interval)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    return result


@pytest.fixture(scope="module")
def started(settings: Settings) -> Iterator[dict[str, Any]]:
    """One playground started with the CLI, shared by the tests of this module."""
    result = ok(run_cli(settings, "playground", "start", "linux", "--json"))
    playground: dict[str, Any] = json.loads(result.stdout)
    yield playground
    run_cli(settings, "playground", "destroy", playground["id"])


def test_start_json_shape(started: dict[str, Any]) -> None:
    assert {"id", "name", "state", "machines", "expires_at"} <= set(started)
    assert started["name"] == "linux"
    assert started["state"] == "running"
    assert len(started["id"]) == 8
    [machine] = started["machines"]
    assert {"name", "address", "state"} <= set(machine)
    assert (machine["name"], machine["state"]) == ("linux", "running")
    socket.inet_aton(machine["address"])  # a dotted IPv4 address


def test_list_json_contains_it(settings: Settings, started: dict[str, Any]) -> None:
    listed = json.loads(ok(run_cli(settings, "playground", "list", "--json")).stdout)
    assert isinstance(listed, list)
    [mine] = [p for p in listed if p["id"] == started["id"]]
    assert mine["state"] == "running"
    assert mine["machines"][0]["address"] == started["machines"][0]["address"]
    assert mine["expires_at"] == started["expires_at"]
    status = json.loads(
        ok(run_cli(settings, "playground", "status", started["id"], "--json")).stdout
    )
    assert status["id"] == started["id"]


def test_exec_exit_code_and_output(settings: Settings, started: dict[str, Any]) -> None:
    pid = started["id"]
    failed = run_cli(settings, "exec", pid, "--", "sh", "-c", "exit 3")
    assert failed.returncode == 3, failed.stderr
    hi = ok(run_cli(settings, "exec", pid, "--", "echo", "hi"))
    assert hi.stdout == "hi\n"
    err = run_cli(settings, "exec", pid, "--", "sh", "-c", "echo oops >&2; exit 1")
    assert (err.returncode, err.stdout, err.stderr) == (1, "", "oops\n")


def test_exec_unknown_machine(settings: Settings, started: dict[str, Any]) -> None:
    result = run_cli(settings, "exec", started["id"], "--machine", "nosuch", "--", "true")
    assert result.returncode != 0
    assert result.stderr.startswith("labyard:"), result.stderr
    assert "'nosuch'" in result.stderr
    assert "linux" in result.stderr  # says which machines there are


def test_cp_file_both_ways(settings: Settings, started: dict[str, Any], tmp_path: Path) -> None:
    pid = started["id"]
    local = tmp_path / "x"
    local.write_bytes(b"line one\n\x00binary\xff\n" * 100)
    ok(run_cli(settings, "cp", str(local), f"{pid}:/root/x"))
    remote = ok(run_cli(settings, "exec", pid, "--", "sha256sum", "/root/x"))
    back = tmp_path / "back"
    ok(run_cli(settings, "cp", f"{pid}:linux:/root/x", str(back)))
    assert back.read_bytes() == local.read_bytes()
    assert remote.stdout.split()[0] == hashlib.sha256(local.read_bytes()).hexdigest()


def test_cp_directory_recursively(
    settings: Settings, started: dict[str, Any], tmp_path: Path
) -> None:
    pid = started["id"]
    tree = tmp_path / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "top.txt").write_text("top\n")
    (tree / "sub" / "deeper" / "leaf.txt").write_text("leaf\n")
    ok(run_cli(settings, "cp", str(tree), f"{pid}:/root/tree"))
    listing = ok(run_cli(settings, "exec", pid, "--", "sh", "-c", "cd /root/tree && find . | sort"))
    assert listing.stdout.split() == [
        ".",
        "./sub",
        "./sub/deeper",
        "./sub/deeper/leaf.txt",
        "./top.txt",
    ]
    back = tmp_path / "back"
    ok(run_cli(settings, "cp", f"{pid}:/root/tree", str(back)))
    assert (back / "top.txt").read_text() == "top\n"
    assert (back / "sub" / "deeper" / "leaf.txt").read_text() == "leaf\n"


def test_cp_needs_exactly_one_remote(settings: Settings, tmp_path: Path) -> None:
    result = run_cli(settings, "cp", str(tmp_path / "a"), str(tmp_path / "b"))
    assert result.returncode == 2
    assert result.stderr.startswith("labyard:"), result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_port_forward(settings: Settings, started: dict[str, Any]) -> None:
    pid = started["id"]
    ok(
        run_cli(
            settings,
            "exec",
            pid,
            "--",
            "systemd-run --unit=web --working-directory=/root python3 -m http.server 8000 "
            "&& echo hello-web > /root/index.html",
        )
    )
    local = free_port()
    proc = subprocess.Popen(
        [LABYARD, "port-forward", pid, f"{local}:8000"],
        env=cli_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout=60)
        assert ready, "port-forward printed no port within 60 s"
        printed = proc.stdout.readline().strip()
        assert printed == str(local), (printed, proc.poll())

        def fetch() -> str:
            url = f"http://127.0.0.1:{local}/index.html"
            with urllib.request.urlopen(url, timeout=5) as response:
                body: str = response.read().decode()
                return body

        assert poll(fetch, 20, "the forwarded web server") == "hello-web\n"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", local), timeout=2):
        pass  # the forward ended with the process


def test_ssh_over_a_pipe(settings: Settings, started: dict[str, Any]) -> None:
    result = run_cli(settings, "ssh", started["id"], input="echo $((6*7))\nexit\n", timeout=60)
    assert result.returncode == 0, result.stderr
    # The terminal echoes the typed line (with `$((6*7))`); only bash's answer is a bare 42.
    lines = [line.strip() for line in result.stdout.replace("\x1b[?2004l", "\n").splitlines()]
    assert "42" in lines, result.stdout


def test_ssh_exit_code(settings: Settings, started: dict[str, Any]) -> None:
    result = run_cli(settings, "ssh", started["id"], input="exit 5\n", timeout=60)
    assert result.returncode == 5, result.stdout


BAD_MANIFEST = """\
name: broken
title: Broken on purpose
machines:
  - name: box
    memory: lots
    colour: red
"""


async def test_malformed_manifest_starts_nothing(
    settings: Settings, labyard: Labyard, tmp_path: Path
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BAD_MANIFEST)
    before = await labyard.driver.list()
    result = run_cli(settings, "playground", "start", str(path), "--json")
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("labyard: invalid manifest"), result.stderr
    assert f"{path}:5: machines.0.memory: 'lots' is not a size" in result.stderr
    assert f"{path}:6: machines.0.colour:" in result.stderr
    assert await labyard.driver.list() == before
    assert [p for p in await labyard.playgrounds.list() if p.name == "broken"] == []
    validate = run_cli(settings, "playground", "validate", str(path))
    assert validate.returncode == 2 and f"{path}:5: machines.0.memory" in validate.stderr


def test_unknown_playground_id(settings: Settings) -> None:
    for args in (
        ("playground", "status", "zzzzzzzz"),
        ("exec", "zzzzzzzz", "--", "true"),
        ("playground", "destroy", "zzzzzzzz"),
    ):
        result = run_cli(settings, *args)
        assert result.returncode == 3, (args, result.stderr)
        assert result.stderr.startswith("labyard:"), (args, result.stderr)
        assert "zzzzzzzz" in result.stderr


def test_an_os_error_from_the_runtime_is_one_line_exit_5(
    settings: Settings, tmp_path: Path
) -> None:
    """An OSError nothing translated (here the local driver cannot make its playgrounds
    directory: a file is in the way) is a runtime failure: one `labyard:` line naming it,
    exit 5, no traceback. The control: the same data dir without the file lists fine."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    in_the_way = data_dir / "playgrounds"
    in_the_way.write_text("")
    instance = dataclasses.replace(settings, data_dir=data_dir)  # run_cli needs nothing else

    result = run_cli(instance, "playground", "list")
    shown = f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert (result.returncode, result.stdout) == (5, ""), shown
    assert result.stderr.startswith("labyard: "), shown
    assert str(in_the_way) in result.stderr and len(result.stderr.splitlines()) == 1, shown

    in_the_way.unlink()
    assert run_cli(instance, "playground", "list").returncode == 0


def test_image_list_json(settings: Settings) -> None:
    images = json.loads(ok(run_cli(settings, "image", "list", "--json")).stdout)
    current = {i["name"] for i in images if i["current"] is True}
    assert {"linux", "docker"} <= current, images


def test_schema(settings: Settings) -> None:
    schema = json.loads(ok(run_cli(settings, "playground", "schema")).stdout)
    assert "machines" in schema["properties"]
    assert schema["properties"]["machines"]["type"] == "array"
