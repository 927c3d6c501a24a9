"""How long the `labyard` command takes to start, against a real server.

Per round (one untimed warm-up round first), each of these runs once as a subprocess, in
this order, so drifts in host load hit them all alike:

  python -c pass                       the peer: the same interpreter doing nothing
  labyard --help
  labyard login --help
  labyard login --server URL --email E  password on stdin; a real sign-in
  labyard playground list               remote, with the token `login` stored
  labyard exec ID -- true               remote: HTTP, WebSocket tunnel, SSH, `true`

The remote commands' own work (the server's answer, the tunnel, the SSH handshake) is
timed separately, in this process with everything imported, doing what the command does;
a command's *own* time is its median minus the peer's minus that work: what starting the
command costs. Target: own <= 0.2 s for each.

Run as root: `.venv/bin/python bench/cli_start.py`. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from labyard.cli._client import ApiClient
from labyard.cli._remote import RemoteBackend
from labyard.cli.credentials import Login
from labyard.runtime.local.names import nft_table
from labyard.services import Labyard
from labyard.settings import Settings

REPO = Path(__file__).resolve().parent.parent
PYTHON = str(REPO / ".venv/bin/python")
LABYARD = str(REPO / ".venv/bin/labyard")
SERVER_ARGV = [LABYARD, "serve"]
"""How the server is started (a diagnostic wrapper may replace it)."""
TARGET_OWN_S = 0.2
PASSWORD = "a long bench password"
EMAIL = "bench@example.com"
console = Console()


@dataclass
class Instance:
    settings: Settings
    process: subprocess.Popen[bytes]
    url: str
    config: Path
    log: Path

    def env(self) -> dict[str, str]:
        env = {**os.environ, "LABYARD_CONFIG": str(self.config), "COLUMNS": "200"}
        # Were a command to act locally by mistake, it would do so here, harmlessly.
        env["LABYARD_DATA_DIR"] = str(self.config / "local")
        for name in ("LABYARD_SERVER", "LABYARD_TOKEN", "LABYARD_DATABASE_URL"):
            env.pop(name, None)
        return env

    def login(self) -> Login:
        data = json.loads((self.config / "credentials.json").read_text())
        return Login(data["server"], data["token"], data["email"])


# -- the server ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def launch() -> Instance:
    images_dir = Path(os.environ.get("LABYARD_IMAGES_DIR", "/var/lib/labyard/images"))
    data_dir = Path(tempfile.mkdtemp(prefix="labyard-bench-"))
    settings = Settings(
        data_dir=data_dir, images_dir=images_dir, database_url=f"sqlite:///{data_dir}/labyard.db"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LABYARD_DATA_DIR": str(data_dir), "LABYARD_IMAGES_DIR": str(images_dir)}
    env.pop("LABYARD_DATABASE_URL", None)
    log = data_dir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*SERVER_ARGV, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_healthy(url, process, log)
    except BaseException:
        process.kill()
        process.wait()
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    return Instance(settings, process, url, data_dir / "cli-config", log)


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"labyard serve exited:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"labyard serve did not answer in 60 s:\n{log.read_text()}")
        time.sleep(0.05)  # polling a condition under a deadline


async def destroy_everything(settings: Settings) -> None:
    labyard = Labyard(settings)
    try:
        for playground_id in await labyard.driver.list():
            await labyard.driver.destroy(playground_id)
    finally:
        labyard.close()


def shutdown(instance: Instance, keep_data: bool) -> None:
    """Stop the server, destroy whatever is left, remove the instance's traces."""
    instance.process.send_signal(signal.SIGTERM)
    try:
        instance.process.wait(20)
    except subprocess.TimeoutExpired:
        instance.process.kill()
        instance.process.wait()
    try:
        asyncio.run(destroy_everything(instance.settings))
    finally:
        table = nft_table(instance.settings.instance)
        subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True, check=False)
    if keep_data:
        console.print(f"data dir kept: {instance.settings.data_dir}")
    else:
        shutil.rmtree(instance.settings.data_dir, ignore_errors=True)


# -- the commands --------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    name: str
    argv: list[str]
    stdin: str | None = None


def commands(instance: Instance, playground_id: str) -> list[Command]:
    login = [LABYARD, "login", "--server", instance.url, "--email", EMAIL]
    return [
        Command("python -c pass", [PYTHON, "-c", "pass"]),
        Command("labyard --help", [LABYARD, "--help"]),
        Command("labyard login --help", [LABYARD, "login", "--help"]),
        Command("labyard login", login, PASSWORD + "\n"),
        Command("labyard playground list", [LABYARD, "playground", "list"]),
        Command("labyard exec ID -- true", [LABYARD, "exec", playground_id, "--", "true"]),
    ]


def run(instance: Instance, command: Command) -> float:
    """Seconds from spawning the command until it exited (successfully: else it fails)."""
    t0 = time.perf_counter()
    result = subprocess.run(
        command.argv,
        input=command.stdin,
        capture_output=True,
        text=True,
        env=instance.env(),
        timeout=60,
        check=False,
    )
    elapsed = time.perf_counter() - t0
    if result.returncode != 0:
        raise RuntimeError(f"{command.name} exited {result.returncode}: {result.stderr}")
    return elapsed


def imported(instance: Instance, command: Command) -> int:
    """How many modules the command imports (one extra, untimed run)."""
    env = {**instance.env(), "PYTHONPROFILEIMPORTTIME": "1"}
    result = subprocess.run(
        command.argv, input=command.stdin, capture_output=True, text=True, env=env, check=False
    )
    return sum(line.startswith("import time:") for line in result.stderr.splitlines()) - 1


# -- the remote commands' own work, done warm in this process ------------------------------


async def login_work(instance: Instance) -> None:
    api = ApiClient(instance.url)
    try:
        body = {"email": EMAIL, "password": PASSWORD, "name": "bench"}
        await api.call("POST", "/api/tokens", body)
    finally:
        await api.close()


async def list_work(instance: Instance) -> None:
    backend = RemoteBackend(instance.login())
    try:
        await backend.list()
    finally:
        await backend.close()


async def exec_work(instance: Instance, playground_id: str) -> None:
    backend = RemoteBackend(instance.login())
    try:
        async with await backend.connect(playground_id, None) as connection:
            result = await connection.run("true", timeout=30)
        if result.exit_code != 0:
            raise RuntimeError(f"`true` exited {result.exit_code}: {result.stderr}")
    finally:
        await backend.close()


Work = Callable[[], Coroutine[Any, Any, None]]


def works(instance: Instance, playground_id: str) -> dict[str, Work]:
    """Each remote command's own work, by command name."""
    return {
        "labyard login": lambda: login_work(instance),
        "labyard playground list": lambda: list_work(instance),
        "labyard exec ID -- true": lambda: exec_work(instance, playground_id),
    }


def timed(work: Work) -> float:
    """Seconds `work` takes on a fresh event loop (as the command runs it), modules warm."""
    t0 = time.perf_counter()
    asyncio.run(work())
    return time.perf_counter() - t0


# -- the run -------------------------------------------------------------------------------


def start_playground(instance: Instance) -> str:
    result = subprocess.run(
        [LABYARD, "playground", "start", "linux", "--json"],
        capture_output=True,
        text=True,
        env=instance.env(),
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"playground start failed: {result.stderr}")
    playground_id: str = json.loads(result.stdout)["id"]
    return playground_id


def sign_up(instance: Instance) -> None:
    body = {"email": EMAIL, "password": PASSWORD}
    response = httpx.post(f"{instance.url}/api/signup", json=body, timeout=30)
    if response.status_code != 201:
        raise RuntimeError(f"signup: {response.status_code} {response.text}")
    login = commands(instance, "-")[3]
    run(instance, login)  # stores the token the remote commands use


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def summarize(
    samples: dict[str, list[float]], work: dict[str, list[float]], counts: dict[str, int]
) -> dict[str, dict[str, Any]]:
    peer = statistics.median(samples["python -c pass"])
    results = {}
    for name, values in samples.items():
        median = statistics.median(values)
        work_s = statistics.median(work[name]) if name in work else 0.0
        row: dict[str, Any] = {"median_ms": ms(median), "min_ms": ms(min(values))}
        row["max_ms"] = ms(max(values))
        if name != "python -c pass":
            row["work_ms"] = ms(work_s)
            row["own_ms"] = ms(median - peer - work_s)
            row["modules_imported"] = counts[name]
        results[name] = row
    return results


def print_table(results: dict[str, dict[str, Any]]) -> None:
    table = Table(title="labyard start-up, ms (own = median - python - work)")
    columns = ("median_ms", "min_ms", "max_ms", "work_ms", "own_ms", "modules_imported")
    table.add_column("command")
    for column in columns:
        table.add_column(column, justify="right")
    for name, row in results.items():
        table.add_row(name, *(str(row.get(c, "")) for c in columns))
    console.print(table)
    for name, row in results.items():
        if "own_ms" in row:
            verdict = "[green]PASS[/]" if row["own_ms"] <= TARGET_OWN_S * 1000 else "[red]MISS[/]"
            console.print(f"  {verdict}  {name}: own {row['own_ms']} ms (target <= 200)")


def read_text(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine_facts() -> dict[str, Any]:
    cpuinfo = read_text("/proc/cpuinfo").splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "")
    return {
        "cpu": cpu or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": read_text("/proc/loadavg").split()[:3],
    }


def bench(args: argparse.Namespace) -> dict[str, Any]:
    instance = launch()
    try:
        sign_up(instance)
        playground_id = start_playground(instance)
        measured = commands(instance, playground_id)
        work = works(instance, playground_id)
        console.print(f"server {instance.url}, playground {playground_id}; warm-up round")
        for command in measured:
            run(instance, command)
            if command.name in work:
                timed(work[command.name])
        samples: dict[str, list[float]] = {c.name: [] for c in measured}
        work_samples: dict[str, list[float]] = {name: [] for name in work}
        for i in range(args.runs):
            # The same work done warm right after each command, under the same host load.
            for command in measured:
                samples[command.name].append(run(instance, command))
                if command.name in work:
                    work_samples[command.name].append(timed(work[command.name]))
            console.print(f"  round {i + 1}/{args.runs}", end="\r")
        counts = {c.name: imported(instance, c) for c in measured}
        return {
            "commands": summarize(samples, work_samples, counts),
            "samples_s": samples,
            "work_samples_s": work_samples,
            "loadavg_at_end": read_text("/proc/loadavg").split()[:3],
        }
    finally:
        shutdown(instance, args.keep_data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="timed rounds")
    parser.add_argument(
        "--json", type=Path, default=REPO / "bench/results/cli_start.json", help="output"
    )
    parser.add_argument("--keep-data", action="store_true", help="keep the temp data dir")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if os.geteuid() != 0:
        sys.exit("error: the server runs playgrounds with runc and nftables: run this as root")
    facts = machine_facts()
    console.print("machine: " + ", ".join(f"{k}={v}" for k, v in facts.items()))
    results = bench(args)
    print_table(results["commands"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    report = {**results, "machine": facts, "target_own_ms": TARGET_OWN_S * 1000}
    args.json.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
