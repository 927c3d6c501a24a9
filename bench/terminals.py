"""Browser terminals and concurrent starts, through a real `labyard serve` on loopback.

1. echo: keystroke -> echoed byte, over the terminal WebSocket and over a direct SSH PTY
   running the same tmux attach command, interleaved key by key (so host load drifts hit
   both alike); median/p99 of each and what the server path adds. Repeated without tmux in
   the machine (the endpoint then runs a plain login shell) to see the server alone.
2. throughput: `head -c N /dev/urandom | base64` in a terminal; bytes/s over the WebSocket
   (and the payload rate: base64's output / time to the end marker), the same over direct
   SSH; without tmux also with deflate off and with compressible text (`yes`).
3. many terminals: T WebSocket terminals over P playgrounds at once (plus one direct-SSH
   control terminal per playground); each prints a burst, then runs `cat` beside a
   background printer while keys are typed; errors, connect time, echo RTT under load.
4. starts: S playgrounds started at once through POST /api/playgrounds, spread over users
   as the plan needs; errors, wall time, per-start median/p95, where the time went (machine
   timestamps), and what machines still booting after 30 s are doing.

Run as root: `.venv/bin/python bench/terminals.py [--quick]`. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from rich.console import Console
from rich.table import Table
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from labyard.access import Connection, PtySession, connect
from labyard.errors import NotFound
from labyard.images import find_image
from labyard.manifest import load_manifest
from labyard.runtime.local import cgroups
from labyard.runtime.local.names import cgroup_parent, nft_table
from labyard.runtime.local.runc import Runc
from labyard.services import Labyard
from labyard.services.terminals import attach_command
from labyard.settings import Settings

REPO = Path(__file__).resolve().parent.parent
PLAYGROUND = "linux"
SERVER_ARGV = [str(REPO / ".venv/bin/labyard"), "serve"]
"""How the server is started (a diagnostic wrapper may replace it)."""
PER_USER = 5
"""Premium plan: playgrounds one user may run at once."""
TARGETS: dict[str, float] = {
    "echo_added_p99_ms": 5.0,
    "throughput_ws_mb_s": 20.0,
    "terminals_errors": 0,
    "starts_errors": 0,
}
COLS, ROWS = 120, 40
ACK_EVERY = 32 * 1024  # as labyard/api/static/terminal.js
EXPECT_TIMEOUT_S = 10.0
MB = 1e6
ESCAPES = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()*+].|.)", re.S)
"""CSI, OSC, charset designations and two-byte escapes. An escape split across reads is
left as is; it cannot contain a lowercase letter before its final byte arrives."""
LETTERS = b"abcdefghijklmnopqrstuvwxyz"
PROMPT = re.compile(rb"\w@[\w.-]+:[^\r\n#$]*[#$] ")

console = Console()


@dataclass(frozen=True)
class Sizes:
    keystrokes: int
    warmup: int
    throughput_bytes: int
    playgrounds: int
    tabs: int
    keys_per_terminal: int
    burst_lines: int
    starts: int


FULL = Sizes(200, 20, 100 * 1024 * 1024, 5, 10, 30, 20000, 20)
QUICK = Sizes(50, 10, 16 * 1024 * 1024, 2, 5, 10, 5000, 5)


# -- terminal output -----------------------------------------------------------------------


class Output:
    """Terminal output as it arrives. `mark()` starts a fresh window; `expect*` wait until
    the window satisfies a condition and return the arrival time of the deciding chunk."""

    def __init__(self) -> None:
        self.window = bytearray()
        self.total = 0
        self.chunks = 0
        self.first_at: float | None = None
        self.ended: str | None = None
        self._scanned = 0
        self._last_at = 0.0
        self._changed = asyncio.Event()

    def feed(self, chunk: bytes) -> None:
        now = time.perf_counter()
        if self.first_at is None:
            self.first_at = now
        self._last_at = now
        self.total += len(chunk)
        self.chunks += 1
        self.window += chunk
        if len(self.window) > 4 * 1024 * 1024:  # a throughput run: keep the tail only
            drop = len(self.window) - 64 * 1024
            del self.window[:drop]
            self._scanned = max(0, self._scanned - drop)
        self._changed.set()

    def end(self, why: str) -> None:
        self.ended = self.ended or why
        self._changed.set()

    def mark(self) -> None:
        self.window.clear()
        self._scanned = 0

    async def _until(self, found: Callable[[], bool], timeout: float, what: str) -> float:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if found():
                        return self._last_at
                    if self.ended is not None:
                        raise ConnectionError(f"terminal ended ({self.ended}) waiting for {what}")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            tail = ESCAPES.sub(b"", bytes(self.window[-80:]))
            raise TimeoutError(f"no {what} within {timeout:g} s (window ends {tail!r})") from None

    async def expect_text(
        self, test: Callable[[bytes], bool], what: str, timeout: float = EXPECT_TIMEOUT_S
    ) -> float:
        """Wait until the window, escape sequences removed, passes `test` (small windows)."""
        return await self._until(lambda: test(ESCAPES.sub(b"", bytes(self.window))), timeout, what)

    async def expect_marker(self, marker: bytes, timeout: float) -> float:
        """Wait until `marker` appears in the window (scanned incrementally)."""

        def found() -> bool:
            start = max(0, self._scanned - len(marker))
            hit = self.window.find(marker, start) >= 0
            self._scanned = len(self.window)
            return hit

        return await self._until(found, timeout, marker.decode())

    async def expect_any(self, timeout: float = EXPECT_TIMEOUT_S) -> float:
        return await self._until(lambda: len(self.window) > 0, timeout, "output")

    async def quiet(self, period: float = 0.3, limit: float = 5.0) -> None:
        """Wait until no output arrived for `period` seconds (at most `limit`)."""
        deadline = time.perf_counter() + limit
        while time.perf_counter() < deadline:
            self._changed.clear()
            try:
                async with asyncio.timeout(period):
                    await self._changed.wait()
            except TimeoutError:
                return


class Term(Protocol):
    output: Output

    async def send(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class WsTerm:
    """A terminal WebSocket client that acks like the browser page does."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.output = Output()
        self.control: list[dict[str, Any]] = []
        self._unacked = 0
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, token: str, deflate: bool = True) -> WsTerm:
        ws = await ws_connect(
            url,
            compression="deflate" if deflate else None,
            additional_headers={"Authorization": f"Bearer {token}"},
            max_size=None,
            proxy=None,
            open_timeout=60,
        )
        return cls(ws)

    @property
    def deflate(self) -> bool:
        return "permessage-deflate" in (
            self.ws.response.headers.get("Sec-WebSocket-Extensions", "") if self.ws.response else ""
        )

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if isinstance(message, bytes):
                    self.output.feed(message)
                    self._unacked += len(message)
                    if self._unacked >= ACK_EVERY:
                        await self.ws.send(json.dumps({"type": "ack", "bytes": self._unacked}))
                        self._unacked = 0
                else:
                    self.control.append(json.loads(message))
            self.output.end(f"closed {self.ws.close_code} {self.ws.close_reason}")
        except ConnectionClosed as exc:
            self.output.end(f"closed {exc}")

    async def send(self, data: bytes) -> None:
        await self.ws.send(data)

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class SshTerm:
    """The same attach command on a PTY over a direct SSH connection (no server)."""

    def __init__(self, connection: Connection, pty: PtySession) -> None:
        self.connection = connection
        self.pty = pty
        self.output = Output()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, labyard: Labyard, playground_id: str, command: str | None) -> SshTerm:
        connection = await connect(labyard.playgrounds.target(playground_id))
        pty = await connection.open_pty(command, cols=COLS, rows=ROWS)
        return cls(connection, pty)

    async def _read(self) -> None:
        try:
            while chunk := await self.pty.read():
                self.output.feed(chunk)
            self.output.end("pty closed")
        except Exception as exc:
            self.output.end(repr(exc))

    async def send(self, data: bytes) -> None:
        self.pty.write(data)
        await self.pty.drain()

    async def close(self) -> None:
        self.pty.close()
        self.connection.close()
        await self.connection.wait_closed()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def contains(needle: bytes) -> Callable[[bytes], bool]:
    def test(text: bytes) -> bool:
        return needle in text

    return test


def has_prompt(text: bytes) -> bool:
    """A bash prompt (`root@linux:~# `) anywhere in the window: output racing the prompt
    (a background job's last line) may follow it."""
    return PROMPT.search(text) is not None


async def ready(term: Term) -> None:
    """Wait for the shell prompt, then for the screen to settle."""
    await term.output.expect_text(has_prompt, "prompt", timeout=60)
    await term.output.quiet()


# -- statistics and host facts -------------------------------------------------------------


def nearest_rank(values: Sequence[float], percentile: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percentile / 100 * len(ordered)) - 1)]


def ms(values: Sequence[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median_ms": round(statistics.median(values) * 1000, 2),
        "p95_ms": round(nearest_rank(values, 95) * 1000, 2),
        "p99_ms": round(nearest_rank(values, 99) * 1000, 2),
        "max_ms": round(max(values) * 1000, 2),
    }


def read_text(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def loadavg() -> list[float]:
    return [float(v) for v in read_text("/proc/loadavg").split()[:3]]


def machine_facts() -> dict[str, Any]:
    cpuinfo = read_text("/proc/cpuinfo").splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "")
    meminfo = read_text("/proc/meminfo").splitlines()
    mem_kib = next((int(ln.split()[1]) for ln in meminfo if ln.startswith("MemTotal")), 0)
    return {
        "cpu": cpu or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


class CpuMeter:
    """CPU seconds of the server process, this (client) process and one machine's cgroup."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.tick = os.sysconf("SC_CLK_TCK")

    def server_s(self) -> float:
        fields = read_text(f"/proc/{self.server_pid}/stat").rsplit(")", 1)[-1].split()
        return (int(fields[11]) + int(fields[12])) / self.tick if fields else 0.0

    @staticmethod
    def client_s() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    @staticmethod
    def machine_s(instance: str, container: str) -> float:
        for path in cgroups.machine_cgroups(cgroup_parent(instance), container):
            if (path / "cpuacct.usage").exists():  # v1, nanoseconds
                return int(read_text(path / "cpuacct.usage")) / 1e9
            for line in read_text(path / "cpu.stat").splitlines():  # v2
                if line.startswith("usage_usec"):
                    return int(line.split()[1]) / 1e6
        return 0.0


@dataclass
class CpuSpan:
    meter: CpuMeter
    instance: str
    container: str
    wall: float = 0.0
    server: float = 0.0
    client: float = 0.0
    machine: float = 0.0

    def __enter__(self) -> CpuSpan:
        self.wall = time.perf_counter()
        self.server = self.meter.server_s()
        self.client = self.meter.client_s()
        self.machine = self.meter.machine_s(self.instance, self.container)
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.server = self.meter.server_s() - self.server
        self.client = self.meter.client_s() - self.client
        self.machine = self.meter.machine_s(self.instance, self.container) - self.machine

    def percent(self) -> dict[str, float]:
        """CPU of each party as % of one core over the span."""
        wall = max(self.wall, 1e-9)
        return {
            "server": round(100 * self.server / wall, 1),
            "client": round(100 * self.client / wall, 1),
            "machine": round(100 * self.machine / wall, 1),
        }


# -- the server ----------------------------------------------------------------------------


@dataclass
class Instance:
    settings: Settings
    labyard: Labyard
    process: subprocess.Popen[bytes]
    url: str
    tokens: list[str]
    log: Path
    started: dict[str, str] = field(default_factory=dict)
    """playground id -> the token of its owner."""

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")

    def terminal_url(self, playground_id: str, tab: str) -> str:
        return (
            f"{self.ws_url}/api/playgrounds/{playground_id}/machines/{PLAYGROUND}/terminal"
            f"?tab={tab}&cols={COLS}&rows={ROWS}"
        )

    def container(self, playground_id: str) -> str:
        return f"{playground_id}-{PLAYGROUND}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def launch(users: int) -> Instance:
    images_dir = Path(os.environ.get("LABYARD_IMAGES_DIR", "/var/lib/labyard/images"))
    data_dir = Path(tempfile.mkdtemp(prefix="labyard-bench-"))
    settings = Settings(
        data_dir=data_dir, images_dir=images_dir, database_url=f"sqlite:///{data_dir}/labyard.db"
    )
    labyard = Labyard(settings)
    tokens = []
    for i in range(users):  # premium: 5 playgrounds at once each
        user = labyard.accounts.create_user(
            f"bench{i}@example.com", "a long bench password", plan="premium"
        )
        tokens.append(labyard.accounts.issue(user, "api", "bench"))
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
    instance = Instance(settings, labyard, process, url, tokens, log)
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"labyard serve exited:\n{read_text(log)}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"{url}/healthz", timeout=1)).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"labyard serve did not answer in 60 s:\n{read_text(log)}")
            await asyncio.sleep(0.05)
    return instance


async def shutdown(instance: Instance, keep_data: bool) -> None:
    """Stop the server, destroy whatever is left, remove the instance's traces."""
    instance.process.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(instance.process.wait, 20)
    except subprocess.TimeoutExpired:
        instance.process.kill()
        await asyncio.to_thread(instance.process.wait)
    labyard = instance.labyard
    for playground_id in await labyard.driver.list():
        await labyard.driver.destroy(playground_id)
    table = nft_table(labyard.settings.instance)
    subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True, check=False)
    labyard.close()
    if keep_data:
        console.print(f"data dir kept: {labyard.settings.data_dir}")
    else:
        shutil.rmtree(labyard.settings.data_dir, ignore_errors=True)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def start_playground(
    client: httpx.AsyncClient, instance: Instance, token: str
) -> dict[str, Any]:
    response = await client.post(
        "/api/playgrounds", json={"name": PLAYGROUND}, headers=auth(token), timeout=300
    )
    if response.status_code != 201:
        raise RuntimeError(f"start: {response.status_code} {response.text}")
    playground: dict[str, Any] = response.json()
    instance.started[playground["id"]] = token
    return playground


async def destroy_all(client: httpx.AsyncClient, instance: Instance) -> float:
    t0 = time.perf_counter()

    async def destroy(playground_id: str, token: str) -> None:
        response = await client.delete(
            f"/api/playgrounds/{playground_id}", headers=auth(token), timeout=300
        )
        if response.status_code not in (204, 404):
            console.print(f"  [yellow]destroy {playground_id}: {response.status_code}[/]")

    await asyncio.gather(*(destroy(p, t) for p, t in instance.started.items()))
    instance.started.clear()
    return time.perf_counter() - t0


async def machine_run(instance: Instance, playground_id: str, command: str) -> str:
    async with await connect(instance.labyard.playgrounds.target(playground_id)) as connection:
        result = await connection.run(command, timeout=30)
    return result.stdout


# -- 1. echo -------------------------------------------------------------------------------


async def keystroke(term: Term, letter: bytes) -> float:
    """Type `letter` at the prompt, time its echo; erase it again (not timed)."""
    term.output.mark()
    t0 = time.perf_counter()
    await term.send(letter)
    t1 = await term.output.expect_text(contains(letter), f"echo of {letter!r}")
    term.output.mark()
    await term.send(b"\x7f")
    await term.output.expect_any()
    return t1 - t0


async def echo_pair(ws: Term, ssh: Term, sizes: Sizes) -> tuple[list[float], list[float]]:
    """Interleaved keystrokes on both terminals: ws, ssh, ws, ssh, ..."""
    await asyncio.gather(ready(ws), ready(ssh))
    via_ws: list[float] = []
    via_ssh: list[float] = []
    for i in range(sizes.warmup + sizes.keystrokes):
        letter = LETTERS[i % len(LETTERS) : i % len(LETTERS) + 1]
        order = [(ws, via_ws), (ssh, via_ssh)]
        if i % 2:
            order.reverse()
        for term, samples in order:
            rtt = await keystroke(term, letter)
            if i >= sizes.warmup:
                samples.append(rtt)
            await asyncio.sleep(0.01 + random.random() * 0.02)  # typing cadence, not timed
    return via_ws, via_ssh


def echo_summary(via_ws: list[float], via_ssh: list[float], cpu: CpuSpan) -> dict[str, Any]:
    ws, ssh = ms(via_ws), ms(via_ssh)
    return {
        "server": ws,
        "direct_ssh": ssh,
        "added_median_ms": round(ws["median_ms"] - ssh["median_ms"], 2),
        "added_p99_ms": round(ws["p99_ms"] - ssh["p99_ms"], 2),
        "cpu_percent": cpu.percent(),
    }


# -- 2. throughput -------------------------------------------------------------------------


def base64_output_bytes(nbytes: int) -> int:
    """What `base64` prints for nbytes of input, as the PTY delivers it (76-char lines,
    each newline turned into CR LF)."""
    encoded = 4 * math.ceil(nbytes / 3)
    return encoded + 2 * math.ceil(encoded / 76)


TEXT_LINE = "INFO GET /api/playgrounds/abc123 status=200 ms=1.2"
"""`yes` prints this for the compressible (log-like) output test."""


def text_output_bytes(nbytes: int) -> int:
    """What `yes TEXT_LINE | head -c nbytes` delivers through a PTY (LF -> CR LF)."""
    return nbytes + nbytes // (len(TEXT_LINE) + 1)


def output_command(kind: str, nbytes: int) -> tuple[str, int]:
    """(shell command, bytes it delivers through the PTY) for `base64` (random: deflate's
    worst case) or `text` (log lines: compress ~25x)."""
    if kind == "text":
        return f"yes '{TEXT_LINE}' | head -c {nbytes}", text_output_bytes(nbytes)
    return f"head -c {nbytes} /dev/urandom | base64", base64_output_bytes(nbytes)


async def throughput(term: Term, nbytes: int, kind: str = "base64") -> dict[str, Any]:
    await term.output.quiet()
    producer, payload = output_command(kind, nbytes)
    # The echoed command line shows $((6*7)), only the output says 42.
    command = f"{producer}; echo BENCH-$((6*7))-END\r"
    term.output.mark()
    before, chunks = term.output.total, term.output.chunks
    t0 = time.perf_counter()
    await term.send(command.encode())
    t1 = await term.output.expect_marker(b"BENCH-42-END", timeout=600)
    seconds = t1 - t0
    received = term.output.total - before
    await term.output.quiet()
    return {
        "seconds": round(seconds, 3),
        "mean_chunk_bytes": round(received / max(1, term.output.chunks - chunks)),
        "wire_bytes": received,
        "wire_mb_s": round(received / seconds / MB, 2),
        "payload_bytes": payload,
        "payload_mb_s": round(payload / seconds / MB, 2),
    }


async def raw_throughput(instance: Instance, playground_id: str, nbytes: int) -> dict[str, Any]:
    """The command itself as the PTY's program over direct SSH: no shell, no tmux."""
    command = f"head -c {nbytes} /dev/urandom | base64; echo BENCH-$((6*7))-END"
    t0 = time.perf_counter()
    term = await SshTerm.open(instance.labyard, playground_id, command)
    try:
        t1 = await term.output.expect_marker(b"BENCH-42-END", timeout=600)
    finally:
        await term.close()
    seconds = t1 - t0
    return {
        "seconds": round(seconds, 3),
        "wire_bytes": term.output.total,
        "wire_mb_s": round(term.output.total / seconds / MB, 2),
        "payload_bytes": base64_output_bytes(nbytes),
        "payload_mb_s": round(base64_output_bytes(nbytes) / seconds / MB, 2),
    }


async def measured_throughput(
    term: Term,
    nbytes: int,
    meter: CpuMeter,
    instance: Instance,
    playground_id: str,
    kind: str = "base64",
) -> dict[str, Any]:
    with CpuSpan(meter, instance.settings.instance, instance.container(playground_id)) as cpu:
        result = await throughput(term, nbytes, kind)
    wire_mb = max(result["wire_bytes"], 1) / MB
    payload_mb = result["payload_bytes"] / MB
    return {
        **result,
        "cpu_percent": cpu.percent(),
        # CPU per MB forwarded: less sensitive to host contention than MB/s.
        "server_cpu_ms_per_wire_mb": round(cpu.server * 1000 / wire_mb, 1),
        "server_cpu_ms_per_payload_mb": round(cpu.server * 1000 / payload_mb, 1),
        "client_cpu_ms_per_wire_mb": round(cpu.client * 1000 / wire_mb, 1),
    }


async def single_terminal(
    instance: Instance, client: httpx.AsyncClient, meter: CpuMeter, sizes: Sizes
) -> dict[str, Any]:
    token = instance.tokens[0]
    playground = await start_playground(client, instance, token)
    pid = playground["id"]
    container = instance.container(pid)
    results: dict[str, Any] = {}
    for tmux in (True, False):
        label = "tmux" if tmux else "no_tmux"
        if not tmux:  # the endpoint falls back to a plain login shell without tmux
            await machine_run(instance, pid, "mv /usr/bin/tmux /usr/bin/tmux.off")
        t0 = time.perf_counter()
        ws = await WsTerm.open(instance.terminal_url(pid, f"ws-{label}"), token)
        await ready(ws)
        t1 = time.perf_counter()
        ssh = await SshTerm.open(instance.labyard, pid, attach_command(f"ssh-{label}", ROWS))
        await ready(ssh)
        # ready() ends with 0.3 s of quiet, which is not part of connecting.
        results[f"connect_{label}_s"] = {
            "server": round((ws.output.first_at or t0) - t0, 3),
            "direct_ssh": round((ssh.output.first_at or t1) - t1, 3),
            "what": "open -> first output (tmux attached / shell started)",
        }
        try:
            console.print(f"[bold]echo ({label})[/]: {sizes.keystrokes} keys each, interleaved")
            with CpuSpan(meter, instance.settings.instance, container) as cpu:
                via_ws, via_ssh = await echo_pair(ws, ssh, sizes)
            results[f"echo_{label}"] = echo = echo_summary(via_ws, via_ssh, cpu)
            echo["deflate_negotiated"] = ws.deflate
            console.print(f"  {echo}")
            plain = None
            if not tmux:  # what permessage-deflate costs the server
                plain = await WsTerm.open(instance.terminal_url(pid, "ws-plain"), token, False)
                await ready(plain)
            for kind in ("base64",) if tmux else ("base64", "text"):
                mib = sizes.throughput_bytes // 2**20
                console.print(f"[bold]throughput ({label}, {kind})[/]: {mib} MiB")
                terms: dict[str, Term] = {"server": ws, "direct_ssh": ssh}
                if plain is not None:
                    terms["server_no_deflate"] = plain
                entry: dict[str, Any] = {}
                for name, term in terms.items():
                    entry[name] = await measured_throughput(
                        term, sizes.throughput_bytes, meter, instance, pid, kind
                    )
                    console.print(f"  {name}: {entry[name]}")
                suffix = "" if kind == "base64" else f"_{kind}"
                results[f"throughput_{label}{suffix}"] = entry
            if plain is not None:
                await plain.close()
        finally:
            await asyncio.gather(ws.close(), ssh.close(), return_exceptions=True)
            if not tmux:
                await machine_run(instance, pid, "mv /usr/bin/tmux.off /usr/bin/tmux")
    raw = await raw_throughput(instance, pid, sizes.throughput_bytes)
    console.print(f"  direct ssh, command as the PTY program: {raw}")
    results["throughput_raw_pty_direct_ssh"] = raw
    return results


# -- 3. many terminals ---------------------------------------------------------------------

PRINTER = "while sleep 0.2; do echo $RANDOM$RANDOM; done"
"""Builtins only, so `kill $!` leaves no child that could still print after the prompt."""


class Gate:
    """Opens once every terminal arrived (a failed one counts as arrived)."""

    def __init__(self, count: int) -> None:
        self.left = count
        self.opened = asyncio.Event()

    def arrive(self) -> None:
        self.left -= 1
        if self.left <= 0:
            self.opened.set()


@dataclass
class TermRun:
    name: str
    opened_s: float | None = None
    first_output_s: float | None = None
    prompt_s: float | None = None
    echo_s: list[float] = field(default_factory=list)
    error: str | None = None


async def one_terminal(
    opener: Callable[[], Awaitable[Term]], run: TermRun, sizes: Sizes, gate: Gate
) -> None:
    """Connect; print a burst; then `cat` beside a background printer while keys are typed
    (all terminals type together); Ctrl-C; back at the prompt."""
    term: Term | None = None
    arrived = False
    step = "connect"
    try:
        t0 = time.perf_counter()
        term = await opener()
        run.opened_s = time.perf_counter() - t0
        step = "prompt"
        await term.output.expect_text(has_prompt, "prompt", timeout=120)
        run.prompt_s = time.perf_counter() - t0
        run.first_output_s = (term.output.first_at or t0) - t0
        await term.output.quiet()
        # The echoed command shows $((...)); only seq's output has the number itself.
        step = "burst"
        n = sizes.burst_lines
        term.output.mark()
        await term.send(f"seq $(({n}/2*2)); {PRINTER} & cat; kill $!\r".encode())
        await term.output.expect_text(contains(str(n).encode()), "seq", timeout=120)
        gate.arrive()
        arrived = True
        await gate.opened.wait()
        step = "typing"
        for i in range(sizes.keys_per_terminal):
            await asyncio.sleep(0.02 + random.random() * 0.08)
            letter = LETTERS[i % len(LETTERS) : i % len(LETTERS) + 1]
            term.output.mark()
            t1 = time.perf_counter()
            await term.send(letter)
            run.echo_s.append(await term.output.expect_text(contains(letter), "echo") - t1)
            if i % 8 == 7:
                await term.send(b"\r")  # cat prints the line back
        step = "exit"
        term.output.mark()
        await term.send(b"\r\x03")
        await term.output.expect_text(has_prompt, "prompt after ^C")
        if isinstance(term, WsTerm):
            errors = [c for c in term.control if c.get("type") == "error"]
            if errors:
                raise RuntimeError(f"server said {errors}")
        if term.output.ended is not None:
            raise ConnectionError(term.output.ended)
    except Exception as exc:
        run.error = f"{step}: {type(exc).__name__}: {exc}"
    finally:
        if not arrived:
            gate.arrive()
        if term is not None:
            with contextlib.suppress(Exception):
                await term.close()


def term_summary(runs: list[TermRun]) -> dict[str, Any]:
    errors = [f"{r.name}: {r.error}" for r in runs if r.error]
    return {
        "terminals": len(runs),
        "errors": len(errors),
        "error_messages": errors,
        "opened": ms([r.opened_s for r in runs if r.opened_s is not None]),
        "connect_to_first_output": ms(
            [r.first_output_s for r in runs if r.first_output_s is not None]
        ),
        "connect_to_prompt": ms([r.prompt_s for r in runs if r.prompt_s is not None]),
        "echo_under_load": ms([s for r in runs for s in r.echo_s]),
    }


async def many_terminals(
    instance: Instance, client: httpx.AsyncClient, meter: CpuMeter, sizes: Sizes
) -> dict[str, Any]:
    """`tabs` WebSocket terminals per playground, all at once; then the same number of
    direct-SSH terminals doing the same (what the host and one Python client give alone)."""
    token = instance.tokens[0]
    have = list(instance.started)
    while len(have) < sizes.playgrounds:
        have.append((await start_playground(client, instance, token))["id"])
    chosen = have[: sizes.playgrounds]
    tabs = [(pid, tab) for pid in chosen for tab in range(sizes.tabs)]

    def ws_opener(pid: str, tab: str) -> Callable[[], Awaitable[Term]]:
        return lambda: WsTerm.open(instance.terminal_url(pid, tab), token)

    def ssh_opener(pid: str, tab: str) -> Callable[[], Awaitable[Term]]:
        return lambda: SshTerm.open(instance.labyard, pid, attach_command(tab, ROWS))

    rounds = {
        "server": [(TermRun(f"{p}/w{t}"), ws_opener(p, f"w{t}")) for p, t in tabs],
        "direct_ssh": [(TermRun(f"{p}/d{t}"), ssh_opener(p, f"d{t}")) for p, t in tabs],
    }
    summary: dict[str, Any] = {"terminals": len(tabs)}
    for name, runs in rounds.items():
        console.print(
            f"[bold]{len(tabs)} terminals ({name})[/]: {len(chosen)} playgrounds x "
            f"{sizes.tabs} tabs, all connecting at once"
        )
        gate = Gate(len(runs))
        with CpuSpan(meter, instance.settings.instance, instance.container(chosen[0])) as cpu:
            await asyncio.gather(*(one_terminal(opener, run, sizes, gate) for run, opener in runs))
        part = term_summary([r for r, _ in runs])
        part["wall_s"] = round(cpu.wall, 2)
        part["cpu_percent"] = cpu.percent()
        part["loadavg_after"] = loadavg()
        for line in part["error_messages"]:
            console.print(f"  [red]{line}[/]")
        console.print(f"  {part}")
        summary[name] = part
    summary["errors"] = summary["server"]["errors"]
    return summary


# -- 4. simultaneous starts ----------------------------------------------------------------

PHASES_PROBE = (
    "systemctl show -p UserspaceTimestampMonotonic --value; "
    "systemctl show -p ActiveEnterTimestampMonotonic --value ssh.service"
)


@dataclass
class StartRun:
    user: int
    sent: float = 0.0
    """time.monotonic() (the host's CLOCK_MONOTONIC, as inside machines) of the request."""
    seconds: float = 0.0
    status: int = 0
    playground_id: str | None = None
    error: str | None = None
    phases_s: dict[str, float] = field(default_factory=dict)


async def one_start(client: httpx.AsyncClient, instance: Instance, run: StartRun) -> None:
    token = instance.tokens[run.user]
    run.sent = time.monotonic()
    try:
        response = await client.post(
            "/api/playgrounds", json={"name": PLAYGROUND}, headers=auth(token), timeout=600
        )
        run.status = response.status_code
        if response.status_code == 201:
            run.playground_id = response.json()["id"]
            instance.started[run.playground_id] = token
        else:
            run.error = f"{response.status_code} {response.text[:300]}"
    except httpx.HTTPError as exc:
        run.error = f"{type(exc).__name__}: {exc}"
    run.seconds = time.monotonic() - run.sent


async def start_phases(instance: Instance, run: StartRun) -> None:
    """Split a successful start at PID 1 and sshd becoming active (machine timestamps)."""
    if run.playground_id is None:
        return
    with contextlib.suppress(Exception):
        pid1, sshd = (
            int(v) / 1e6
            for v in (await machine_run(instance, run.playground_id, PHASES_PROBE)).split()
        )
        run.phases_s = {
            "request_to_pid1": round(pid1 - run.sent, 3),
            "pid1_to_sshd": round(sshd - pid1, 3),
            "sshd_to_response": round(run.sent + run.seconds - sshd, 3),
        }


INSPECT_AFTER_S = 30.0
"""When starts are still pending this long, look inside their machines (why so slow?)."""
STUCK_PROBE = (
    "systemctl is-system-running; systemctl is-active ssh.socket ssh.service | paste -sd/; "
    "journalctl -b -q --no-pager | grep -c 'Failed to create inotify object' || true"
)


def inotify_usage() -> dict[str, int]:
    """inotify instances held by root (the machines' uid: no user namespaces) and the
    per-user limit. systemd, dbus and logind in each machine hold about 7."""
    used = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if proc.stat().st_uid != 0:
                continue
            used += sum(
                1 for fd in (proc / "fd").iterdir() if os.readlink(fd) == "anon_inode:inotify"
            )
        except OSError:
            continue
    limit = int(read_text("/proc/sys/fs/inotify/max_user_instances") or 0)
    return {"root_instances_in_use": used, "max_user_instances": limit}


async def inspect_pending(instance: Instance, runs: list[StartRun]) -> list[dict[str, str]]:
    """What the machines of starts that have not answered yet are doing."""
    answered = {r.playground_id for r in runs if r.playground_id}
    runc = Runc(instance.settings.runc_root)
    found = []
    for container in await runc.list():
        if container.split("-", 1)[0] in answered:
            continue
        try:
            proc = await asyncio.create_subprocess_exec(
                "runc",
                "--root",
                str(runc.root),
                "exec",
                container,
                "sh",
                "-c",
                STUCK_PROBE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            async with asyncio.timeout(20):
                out, _ = await proc.communicate()
            text = out.decode(errors="replace").strip()
            ok = proc.returncode == 0
        except (OSError, TimeoutError) as exc:
            text, ok = repr(exc), False
        lines = text.split("\n") if ok else []
        if "stopped container" in text:  # PID 1 is gone: its last words are on the console
            console_log = (
                instance.settings.playgrounds_dir
                / container.split("-", 1)[0]
                / "machines"
                / PLAYGROUND
                / "console.log"
            )
            text += " | console.log: " + read_text(console_log)[-300:]
        found.append(
            {
                "container": container,
                "system": lines[0] if lines else "?",
                "ssh_socket/service": lines[1] if len(lines) > 1 else "?",
                "inotify_failures_logged": lines[2] if len(lines) > 2 else "?",
                "probe_error": "" if ok else text[-600:],
            }
        )
    return found


async def simultaneous_starts(
    instance: Instance, client: httpx.AsyncClient, meter: CpuMeter, sizes: Sizes
) -> dict[str, Any]:
    destroyed = await destroy_all(client, instance)
    console.print(f"(destroyed the terminal playgrounds in {destroyed:.1f} s)")
    runs = [StartRun(user=i // PER_USER) for i in range(sizes.starts)]
    users = len({r.user for r in runs})
    console.print(f"[bold]{sizes.starts} starts at once[/] over {users} users")
    load_before = loadavg()
    inotify_before = inotify_usage()
    starting = asyncio.gather(*(one_start(client, instance, r) for r in runs))
    pending: list[dict[str, str]] = []
    inotify_during: dict[str, int] | None = None
    with CpuSpan(meter, instance.settings.instance, "") as cpu:
        done, _ = await asyncio.wait({starting}, timeout=INSPECT_AFTER_S)
        if not done:
            pending = await inspect_pending(instance, runs)
            console.print(f"  still starting after {INSPECT_AFTER_S:g} s: {len(pending)}")
            for machine in pending:
                console.print(f"    {machine}")
            inotify_during = inotify_usage()
        await starting
    load_after = loadavg()
    await asyncio.gather(*(start_phases(instance, r) for r in runs))
    ok = [r for r in runs if r.error is None]
    failed = [r for r in runs if r.error is not None]
    for r in sorted(runs, key=lambda r: r.seconds):
        tag = "[green]ok[/]" if r.error is None else f"[red]{r.error}[/]"
        console.print(f"  user {r.user} {r.seconds:7.2f} s {r.phases_s or ''} {tag}")
    phases: dict[str, dict[str, float]] = {}
    for name in ("request_to_pid1", "pid1_to_sshd", "sshd_to_response"):
        values = [r.phases_s[name] for r in ok if name in r.phases_s]
        if values:
            phases[name] = {
                "median_s": round(statistics.median(values), 3),
                "max_s": round(max(values), 3),
            }
    destroy_s = await destroy_all(client, instance)
    timeouts = [r for r in failed if "did not start within" in (r.error or "")]
    summary = {
        "starts": sizes.starts,
        "users": users,
        "errors": len(failed),
        "timeouts": len(timeouts),
        "error_messages": [f"user {r.user} after {r.seconds:.1f} s: {r.error}" for r in failed],
        "wall_s": round(cpu.wall, 2),
        "ok_median_s": round(statistics.median([r.seconds for r in ok]), 2) if ok else None,
        "ok_p95_s": round(nearest_rank([r.seconds for r in ok], 95), 2) if ok else None,
        "all_seconds": sorted(round(r.seconds, 2) for r in runs),
        "phases": phases,
        "server_cpu_percent": cpu.percent()["server"],
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "destroy_all_s": round(destroy_s, 2),
        "start_timeout_s": instance.settings.start_timeout_s,
        "inotify_before": inotify_before,
        "inotify_while_pending": inotify_during,
        "pending_after_s": INSPECT_AFTER_S,
        "pending_machines": pending,
    }
    console.print(f"  {summary}")
    return summary


# -- report --------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "[green]PASS[/]" if ok else "[red]MISS[/]"


Row = Callable[[str, str, str, bool | None], None]


def throughput_rows(row: Row, title: str, put: dict[str, Any], tmux: bool) -> None:
    """MB/s per path and the server's CPU per MB; the target applies to the WebSocket.
    With tmux the wire carries screen repaints, not the output itself: there the payload
    rate (how fast the output is consumed) is judged, without tmux the wire rate."""
    target = TARGETS["throughput_ws_mb_s"]
    names = {"server": "WebSocket", "server_no_deflate": "WS no deflate", "direct_ssh": "SSH"}
    for name, label in names.items():
        if name not in put:
            continue
        r = put[name]
        cpu = r["server_cpu_ms_per_payload_mb"] if name != "direct_ssh" else None
        figure = f"{r['wire_mb_s']} ({r['payload_mb_s']})" + (
            f", server {cpu} ms/MB" if cpu is not None else ""
        )
        judged = name == "server" and "base64" in title
        value = r["payload_mb_s"] if tmux else r["wire_mb_s"]
        row(
            f"{title}: {label} wire (payload) MB/s",
            figure,
            f"{'payload' if tmux else 'wire'} >= {target}" if judged else "",
            value >= target if judged else None,
        )


def print_report(results: dict[str, Any]) -> None:
    table = Table(title="labyard terminals and starts (loopback)")
    for column in ("measure", "figure", "target", ""):
        table.add_column(column)

    def row(measure: str, figure: str, target: str = "", ok: bool | None = None) -> None:
        table.add_row(measure, figure, target, "" if ok is None else verdict(ok))

    for label in ("tmux", "no_tmux"):
        echo = results.get(f"echo_{label}")
        if echo:
            s, d = echo["server"], echo["direct_ssh"]
            row(f"echo {label}: server p50/p99 ms", f"{s['median_ms']} / {s['p99_ms']}")
            row(f"echo {label}: direct SSH p50/p99 ms", f"{d['median_ms']} / {d['p99_ms']}")
            added = echo["added_p99_ms"]
            target = TARGETS["echo_added_p99_ms"]
            row(
                f"echo {label}: added p50 / p99 ms",
                f"{echo['added_median_ms']} / {added}",
                f"p99 <= {target}" if label == "tmux" else "",
                added <= target if label == "tmux" else None,
            )
        for suffix in ("", "_text"):
            put = results.get(f"throughput_{label}{suffix}")
            if put:
                kind = suffix.strip("_") or "base64"
                throughput_rows(row, f"output {label}, {kind}", put, label == "tmux")
        conn = results.get(f"connect_{label}_s")
        if conn:
            row(
                f"connect {label}: server / direct s",
                f"{conn['server']} / {conn['direct_ssh']}",
            )
    raw = results.get("throughput_raw_pty_direct_ssh")
    if raw:
        row("output: direct SSH, no shell/tmux MB/s", f"{raw['wire_mb_s']}")
    many = results.get("terminals")
    if many:
        row(f"{many['terminals']} terminals: errors", str(many["errors"]), "0", many["errors"] == 0)
        for name, label in (("server", "WebSocket"), ("direct_ssh", "direct SSH")):
            part = many[name]
            c, e = part["connect_to_prompt"], part["echo_under_load"]
            row(
                f"  {label}: connect -> prompt p50/p95 ms",
                f"{c.get('median_ms')} / {c.get('p95_ms')}",
            )
            row(f"  {label}: echo p50/p99 ms", f"{e.get('median_ms')} / {e.get('p99_ms')}")
        if many["direct_ssh"]["errors"]:
            row("  direct SSH errors", str(many["direct_ssh"]["errors"]))
    starts = results.get("starts")
    if starts:
        row(
            f"{starts['starts']} starts at once: errors",
            f"{starts['errors']} ({starts['timeouts']} timeouts)",
            "0",
            starts["errors"] == 0,
        )
        row("  wall s", str(starts["wall_s"]))
        row("  per start p50/p95 s (successful)", f"{starts['ok_median_s']} / {starts['ok_p95_s']}")
        for phase, values in starts["phases"].items():
            row(f"  {phase} p50/max s", f"{values['median_s']} / {values['max_s']}")
        pending = starts["pending_machines"]
        if pending:
            starved = sum(1 for m in pending if m["inotify_failures_logged"] not in ("0", "?"))
            row(
                f"  pending after {starts['pending_after_s']:g} s",
                f"{len(pending)} ({starved} logged inotify failures)",
            )
        ino = starts["inotify_before"]
        row(
            "  root inotify instances / limit before",
            f"{ino['root_instances_in_use']} / {ino['max_user_instances']}",
        )
    console.print(table)


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (smaller sizes)")
    parser.add_argument(
        "--json", type=Path, default=REPO / "bench/results/terminals.json", help="output"
    )
    parser.add_argument("--keep-data", action="store_true", help="keep the temp data dir")
    parser.add_argument(
        "--only",
        default="single,terminals,starts",
        help="comma-separated parts: single (echo+throughput), terminals, starts",
    )
    return parser.parse_args(argv)


async def bench(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    users = max(1, math.ceil(sizes.starts / PER_USER))
    instance = await launch(users)
    console.print(
        f"server {instance.url} (pid {instance.process.pid}), data {instance.settings.data_dir}"
    )
    meter = CpuMeter(instance.process.pid)
    results: dict[str, Any] = {}
    try:
        async with httpx.AsyncClient(base_url=instance.url) as client:
            if "single" in parts:
                results.update(await single_terminal(instance, client, meter, sizes))
            if "terminals" in parts:
                results["terminals"] = await many_terminals(instance, client, meter, sizes)
            if "starts" in parts:
                results["starts"] = await simultaneous_starts(instance, client, meter, sizes)
            await destroy_all(client, instance)
    finally:
        errors = [ln for ln in read_text(instance.log).splitlines() if '"level": "error"' in ln]
        results["server_log_errors"] = errors[:50]
        await asyncio.shield(shutdown(instance, args.keep_data))
    return results


def check_images(settings_images: Path) -> None:
    for machine in load_manifest(PLAYGROUND).machines:
        try:
            find_image(settings_images, machine.image)
        except NotFound:
            sys.exit(
                f"error: image {machine.image!r} is not built in {settings_images}; "
                f"build it first: sudo .venv/bin/labyard image build {machine.image}"
            )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("error: labyard runs runc, netns and nftables: run this benchmark as root")
    check_images(Path(os.environ.get("LABYARD_IMAGES_DIR", "/var/lib/labyard/images")))
    sizes = QUICK if args.quick else FULL
    facts = {**machine_facts(), "loadavg_at_start": loadavg()}
    console.print("machine: " + ", ".join(f"{k}={v}" for k, v in facts.items()))
    results = asyncio.run(bench(args, sizes))
    facts["loadavg_at_end"] = loadavg()
    print_report(results)
    console.print(
        f"machine: {facts['cpu']}, {facts['cores']} cores, {facts['ram_gib']} GiB, "
        f"kernel {facts['kernel']}; load average {facts['loadavg_at_start']} at start, "
        f"{facts['loadavg_at_end']} at end"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    output = {**results, "sizes": asdict(sizes), "machine": facts, "targets": TARGETS}
    args.json.write_text(json.dumps(output, indent=2))
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
