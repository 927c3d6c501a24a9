"""Start latency and idle memory of built-in playgrounds, on a private labyard instance.

For each playground: one untimed warm-up start+destroy (fills the page cache), then N runs of
  t0 = just before `playgrounds.start(manifest)`
  t1 = once `true` has run over a fresh SSH connection on every machine (concurrently)
  t2 = (docker) once `docker info` answers over that same connection
and, outside the timed region, an idle-memory sample per machine before the destroy.

`--peer lxc`: Debian's lxc booting the same rootfs, start -> `systemctl is-system-running`
says `running`, interleaved run by run with labyard's start -> the same answer over SSH.

Run as root: `.venv/bin/python bench/start_latency.py --runs 10`. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from labyard.access import Connection
from labyard.errors import LabyardError, NotFound
from labyard.images import find_image
from labyard.manifest import Manifest, load_manifest
from labyard.runtime.local import cgroups
from labyard.runtime.local.names import cgroup_parent, nft_table
from labyard.services import Labyard, Playground
from labyard.settings import Settings

REPO = Path(__file__).resolve().parent.parent

PLAYGROUNDS = ("linux", "linux-cluster", "docker")
TARGETS = {"linux_median_s": 1.0, "linux-cluster_median_s": 2.0, "idle_machine_mib": 40}
IDLE_TARGETED = ("linux", "linux-cluster")
"""Playgrounds whose idle memory is held to the target (docker's machine also runs dockerd)."""
READY_PROBES = {"docker": ("docker_info", "docker info")}
"""Per playground: a second figure, start -> this command exits 0 on every machine."""
IDLE_DEADLINE_S = 30.0
"""Longest wait for `systemctl is-system-running` to leave `starting`."""
SETTLE_S = 2.0
"""Extra quiet time after the boot job queue is empty, before sampling memory."""
POLL_S = 0.01
"""Pause between two polls (`docker info`, `systemctl is-system-running`)."""
POLL_DEADLINE_S = 60.0
"""Longest a poll goes on before the run counts as failed."""
PENDING_STATES = ("", "offline", "unknown", "initializing", "starting")
"""`is-system-running` answers that mean "not booted yet" (empty: systemd not reachable)."""
MIB = 1024 * 1024

console = Console()


@dataclass
class Samples:
    latencies_s: list[float] = field(default_factory=list)
    idle_bytes: list[int] = field(default_factory=list)
    probe_s: list[float] = field(default_factory=list)


# -- the private instance ------------------------------------------------------------------


def private_settings() -> Settings:
    images_dir = Path(os.environ.get("LABYARD_IMAGES_DIR", "/var/lib/labyard/images"))
    data_dir = Path(tempfile.mkdtemp(prefix="labyard-bench-"))
    return Settings(
        data_dir=data_dir, images_dir=images_dir, database_url=f"sqlite:///{data_dir}/labyard.db"
    )


def check_images(settings: Settings, manifests: Sequence[Manifest]) -> None:
    """Exit with a clear message when an image a playground needs is not built."""
    for name in sorted({m.image for manifest in manifests for m in manifest.machines}):
        try:
            find_image(settings.images_dir, name)
        except NotFound:
            sys.exit(
                f"error: image {name!r} is not built in {settings.images_dir}.\n"
                f"Build it first: sudo .venv/bin/labyard image build {name} "
                "(or point LABYARD_IMAGES_DIR at a directory with built images)."
            )


async def teardown(labyard: Labyard, keep_data: bool) -> None:
    """Destroy whatever is left (after a failure too) and remove the instance's traces."""
    for playground_id in await labyard.driver.list():
        await labyard.driver.destroy(playground_id)
    table = nft_table(labyard.settings.instance)
    subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True, check=False)
    for parent in cgroups.parents(cgroup_parent(labyard.settings.instance)):
        with contextlib.suppress(OSError):  # only ever empty by now; not there: fine
            parent.rmdir()
    labyard.close()
    if keep_data:
        console.print(f"data dir kept: {labyard.settings.data_dir}")
    else:
        shutil.rmtree(labyard.settings.data_dir, ignore_errors=True)


# -- one run -------------------------------------------------------------------------------


def machine_names(playground: Playground) -> list[str]:
    return [m.name for m in playground.machines]


async def poll(ask: Callable[[], Awaitable[str | None]], what: str) -> str:
    """Ask every POLL_S until the answer is not None; returns it."""
    deadline = time.perf_counter() + POLL_DEADLINE_S
    while (answer := await ask()) is None:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{what}: no answer within {POLL_DEADLINE_S:g} s")
        await asyncio.sleep(POLL_S)
    return answer


async def probe_ok(connection: Connection, command: str) -> str | None:
    result = await connection.run(command, timeout=30)
    return "ok" if result.exit_code == 0 else None


async def first_exec(
    labyard: Labyard, playground: Playground, machine: str, probe: str | None
) -> tuple[float, float | None]:
    """Open a fresh SSH connection, as a user would, and run `true`; then poll `probe` on
    the same connection until it exits 0. Returns both moments (perf_counter)."""
    async with await labyard.playgrounds.connect(playground.id, machine) as connection:
        result = await connection.run("true", timeout=30)
        t_exec = time.perf_counter()
        if result.exit_code != 0:
            raise RuntimeError(f"`true` exited {result.exit_code} on {machine}: {result.stderr}")
        if probe is None:
            return t_exec, None
        await poll(lambda: probe_ok(connection, probe), f"`{probe}` on {machine}")
        return t_exec, time.perf_counter()


async def run_on(labyard: Labyard, playground: Playground, machine: str, command: str) -> str:
    async with await labyard.playgrounds.connect(playground.id, machine) as connection:
        result = await connection.run(command, timeout=30)
    return result.stdout.strip()


async def system_state(connection: Connection) -> str:
    result = await connection.run("systemctl is-system-running", timeout=10)
    return result.stdout.strip()


async def wait_idle(labyard: Labyard, playground: Playground, machine: str) -> str:
    """Wait until systemd's boot job queue is empty; returns the final system state.

    `running` (or `degraded`: a unit failed) means every boot job finished. Memory is
    sampled SETTLE_S later still, because services that just reached "active" keep
    faulting in pages and journald is still flushing; sampling at once would add that
    transient to what is meant to be the idle footprint.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + IDLE_DEADLINE_S
    state = ""
    async with await labyard.playgrounds.connect(playground.id, machine) as connection:
        while loop.time() < deadline:
            state = await system_state(connection)
            if state not in ("initializing", "starting"):
                break
            await asyncio.sleep(0.2)
    return state


async def idle_memory(labyard: Labyard, playground: Playground) -> list[int]:
    """Bytes of working set per machine once booted and quiet, in manifest order."""
    machines = machine_names(playground)
    states = await asyncio.gather(*(wait_idle(labyard, playground, m) for m in machines))
    unsettled = {m: s for m, s in zip(machines, states, strict=True) if s != "running"}
    if unsettled:
        console.print(f"  [yellow]note[/]: system state {unsettled}")
    await asyncio.sleep(SETTLE_S)
    memory = await labyard.driver.machine_memory(playground.id)
    return [memory[m] for m in machines]


async def one_run(labyard: Labyard, manifest: Manifest, samples: Samples | None) -> None:
    """Start, first exec (and probe) on every machine, (sample idle memory), destroy."""
    probe = READY_PROBES.get(manifest.name, (None, None))[1]
    t0 = time.perf_counter()
    playground = await labyard.playgrounds.start(manifest)
    try:
        machines = machine_names(playground)
        moments = await asyncio.gather(
            *(first_exec(labyard, playground, m, probe) for m in machines)
        )
        if samples is not None:
            samples.latencies_s.append(max(t for t, _ in moments) - t0)
            if probe is not None:
                samples.probe_s.append(max(p or 0.0 for _, p in moments) - t0)
            samples.idle_bytes.extend(await idle_memory(labyard, playground))
    finally:
        await labyard.playgrounds.destroy(playground.id)


async def measure(labyard: Labyard, manifest: Manifest, runs: int) -> Samples:
    console.print(f"[bold]{manifest.name}[/]: untimed warm-up start+destroy (page cache)")
    await one_run(labyard, manifest, None)
    samples = Samples()
    for i in range(runs):
        await one_run(labyard, manifest, samples)
        idle = samples.idle_bytes[-len(manifest.machines) :]
        probe = ""
        if manifest.name in READY_PROBES:
            probe = f", {READY_PROBES[manifest.name][0]} {samples.probe_s[-1]:.3f} s"
        console.print(
            f"  run {i + 1:>2}/{runs}: {samples.latencies_s[-1]:.3f} s{probe}, "
            f"idle {', '.join(f'{b / MIB:.1f}' for b in idle)} MiB"
        )
    return samples


# -- the LXC peer --------------------------------------------------------------------------

LXC_TOOLS = ("lxc-start", "lxc-attach", "lxc-stop", "lxc-destroy", "lxc-ls")
LXC_COMMON = Path("/usr/share/lxc/config/common.conf")
# What `lxc-create` writes for a privileged container with Debian's default profile
# (/etc/lxc/default.conf, common.conf), less the network: labyard's peer gets none.
LXC_CONFIG = """\
lxc.include = {common}
lxc.arch = linux64
lxc.uts.name = {name}
lxc.rootfs.path = overlay:{lower}:{upper}
lxc.apparmor.profile = generated
lxc.apparmor.allow_nesting = 1
lxc.net.0.type = empty
"""


def check_lxc() -> None:
    """Exit with the install command when Debian's lxc is not there; never install it."""
    missing = [tool for tool in LXC_TOOLS if shutil.which(tool) is None]
    if missing or not LXC_COMMON.exists():
        sys.exit(
            f"error: --peer lxc needs Debian's lxc package ({', '.join(missing) or LXC_COMMON}"
            " missing). Install it first: apt-get install -y lxc"
        )


class LxcPeer:
    """Privileged LXC containers over an overlay of `lower`, one fresh container (config,
    upper and work dir) per run, all in a private lxcpath. The overlay is mounted by
    lxc-start inside the container's mount namespace, so it goes with the container."""

    def __init__(self, lower: Path) -> None:
        self.lower = lower
        self.path = Path(tempfile.mkdtemp(prefix="labyard-bench-lxc-"))
        self.count = 0

    def _lxc(self, tool: str, name: str, *args: str) -> list[str]:
        return [tool, "-P", str(self.path), "-n", name, *args]

    async def run(self) -> tuple[float, str]:
        """lxc-start -> `systemctl is-system-running` leaves `starting`; (seconds, answer)."""
        self.count += 1
        name = f"bench{self.count}"
        directory = self.path / name
        (directory / "upper").mkdir(parents=True)
        config = LXC_CONFIG.format(
            common=LXC_COMMON, name=name, lower=self.lower, upper=directory / "upper"
        )
        (directory / "config").write_text(config)
        log = directory / "lxc.log"
        try:
            t0 = time.perf_counter()
            started = await asyncio.create_subprocess_exec(
                *self._lxc("lxc-start", name, "-o", str(log), "-l", "WARN"),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            _, stderr = await started.communicate()
            if started.returncode != 0:
                detail = stderr.decode(errors="replace") + read_text(str(log))[-2000:]
                raise RuntimeError(f"lxc-start {name} exited {started.returncode}: {detail}")
            state = await poll(lambda: self._state(name), f"LXC {name} booting")
            return time.perf_counter() - t0, state
        finally:
            self.remove(name)

    async def _state(self, name: str) -> str | None:
        attach = await asyncio.create_subprocess_exec(
            *self._lxc("lxc-attach", name, "--", "systemctl", "is-system-running"),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        stdout, _ = await attach.communicate()
        state = stdout.decode(errors="replace").strip()
        return None if state in PENDING_STATES else state

    def remove(self, name: str) -> None:
        """Kill and destroy one container (synchronously: this also runs while cancelled)."""
        for command in (self._lxc("lxc-stop", name, "-k"), self._lxc("lxc-destroy", name)):
            subprocess.run(command, capture_output=True, check=False, timeout=60)
        shutil.rmtree(self.path / name, ignore_errors=True)

    def close(self) -> list[str]:
        """Remove every container and mount under the lxcpath; returns what had been left."""
        listed = subprocess.run(
            ["lxc-ls", "-P", str(self.path), "-1"], capture_output=True, text=True, check=False
        ).stdout.split()
        left = sorted(set(listed) | {p.name for p in self.path.iterdir() if p.is_dir()})
        for name in left:
            self.remove(name)
        mounts = mounts_under(self.path)
        for mount in reversed(mounts):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
        shutil.rmtree(self.path, ignore_errors=True)
        return left + mounts


def mounts_under(path: Path) -> list[str]:
    lines = read_text("/proc/self/mountinfo").splitlines()
    points = [line.split()[4] for line in lines if len(line.split()) > 4]
    return [p for p in points if p == str(path) or p.startswith(f"{path}/")]


async def labyard_running(labyard: Labyard, manifest: Manifest) -> tuple[float, str]:
    """Start -> `systemctl is-system-running` leaves `starting`, asked over SSH on one
    connection opened once start() returned; (seconds, answer)."""
    t0 = time.perf_counter()
    playground = await labyard.playgrounds.start(manifest)
    try:
        machine = machine_names(playground)[0]
        async with await labyard.playgrounds.connect(playground.id, machine) as connection:

            async def ask() -> str | None:
                state = await system_state(connection)
                return None if state in PENDING_STATES else state

            state = await poll(ask, f"labyard {machine} booting")
            return time.perf_counter() - t0, state
    finally:
        await labyard.playgrounds.destroy(playground.id)


async def peer_lxc(labyard: Labyard, runs: int) -> dict[str, Any]:
    """One warm-up of each, then lxc, labyard, lxc, labyard, ... `runs` times each."""
    manifest = load_manifest("linux")
    lower = find_image(labyard.settings.images_dir, "linux").rootfs
    console.print(f"[bold]peer lxc[/]: overlay over {lower}; untimed warm-up of each")
    peer = LxcPeer(lower)
    lxc: list[tuple[float, str]] = []
    ours: list[tuple[float, str]] = []
    try:
        await peer.run()
        await labyard_running(labyard, manifest)
        for i in range(runs):
            lxc.append(await peer.run())
            ours.append(await labyard_running(labyard, manifest))
            console.print(
                f"  run {i + 1:>2}/{runs}: lxc {lxc[-1][0]:.3f} s ({lxc[-1][1]}), "
                f"labyard {ours[-1][0]:.3f} s ({ours[-1][1]})"
            )
    finally:
        left = peer.close()
        if left:
            console.print(f"  [yellow]cleaned up after a failure[/]: {left}")
    return summarize_peer(lxc, ours)


def summarize_peer(lxc: list[tuple[float, str]], ours: list[tuple[float, str]]) -> dict[str, Any]:
    lxc_median = statistics.median(s for s, _ in lxc)
    ours_median = statistics.median(s for s, _ in ours)
    return {
        "lxc_running_median_s": round(lxc_median, 3),
        "labyard_running_median_s": round(ours_median, 3),
        "ratio": round(ours_median / lxc_median, 2),
        "runs": len(lxc),
        "lxc_samples_s": [round(s, 4) for s, _ in lxc],
        "labyard_samples_s": [round(s, 4) for s, _ in ours],
        "lxc_states": dict(Counter(state for _, state in lxc)),
        "labyard_states": dict(Counter(state for _, state in ours)),
        "counted_until": "first answer of `systemctl is-system-running` past `starting`",
    }


# -- trace ---------------------------------------------------------------------------------

TRACE_UNITS = {"docker": ("ssh.socket", "ssh.service", "containerd.service", "docker.service")}
DEFAULT_TRACE_UNITS = ("ssh.socket", "ssh.service")
TRACE_COMMANDS = (
    "systemd-analyze time",
    "systemd-analyze critical-chain ssh.socket",
    "systemd-analyze blame | head -n 12",
)
# Host-side steps timed during the traced start, where they exist (both the current and
# older revisions: a name that is not there is skipped). (module, attribute) for module
# functions, ("driver" | "runc", attribute) for methods of the instance's driver.
HOST_STEPS = (
    ("driver", "start"),
    ("driver", "_ensure_networks"),
    ("labyard.runtime.local.network", "ensure_bridge"),
    ("labyard.runtime.local.firewall", "add_bridge"),
    ("driver", "_prepare_machine"),
    ("labyard.runtime.local.network", "ensure_netns"),
    ("labyard.runtime.local.network", "ensure_namespaces"),
    ("labyard.runtime.local.storage", "mount_disk"),
    ("labyard.runtime.local.storage", "mount_rootfs"),
    ("labyard.runtime.local.network", "attach"),
    ("labyard.runtime.local.driver", "_write_machine_files"),
    ("labyard.runtime.local.driver", "machine_config"),
    ("runc", "run_detached"),
    ("runc", "create"),
    ("labyard.runtime.local.cgroups", "delegate"),
    ("runc", "start"),
    ("labyard.services.playgrounds", "ssh_ready"),
    ("labyard.services.playgrounds", "run_init_tasks"),
)
Span = tuple[str, float, float]


def _timed(label: str, fn: Callable[..., Any], spans: list[Span]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn):

        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            try:
                return await fn(*args, **kwargs)
            finally:
                spans.append((label, start, time.monotonic()))

        return timed_async

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            spans.append((label, start, time.monotonic()))

    return timed


@contextlib.contextmanager
def host_steps(labyard: Labyard) -> Iterator[list[Span]]:
    """Wrap HOST_STEPS with timers for the duration; yields the (label, start, end) list."""
    spans: list[Span] = []
    driver = labyard.driver
    owners: dict[str, Any] = {"driver": driver, "runc": getattr(driver, "runc", None)}
    undo: list[tuple[Any, str, Any]] = []
    for where, name in HOST_STEPS:
        owner = owners[where] if where in owners else importlib.import_module(where)
        original = getattr(owner, name, None)
        if callable(original):
            undo.append((owner, name, owner.__dict__.get(name)))
            setattr(owner, name, _timed(f"{where.rsplit('.', 1)[-1]}.{name}", original, spans))
    try:
        yield spans
    finally:
        for owner, name, before in reversed(undo):
            if before is None:
                delattr(owner, name)  # an instance attribute hid the class's method
            else:
                setattr(owner, name, before)


def print_host_steps(spans: list[Span], t0: float) -> None:
    console.print("  host side (labyard's own steps; calls, first start, last end, sum in ms):")
    by_label: dict[str, list[Span]] = {}
    for span in spans:
        by_label.setdefault(span[0], []).append(span)
    for label, group in sorted(by_label.items(), key=lambda item: min(s[1] for s in item[1])):
        first = (min(s[1] for s in group) - t0) * 1000
        last = (max(s[2] for s in group) - t0) * 1000
        total = sum(s[2] - s[1] for s in group) * 1000
        console.print(f"    {label:<34} {len(group):>3} {first:>7.0f} {last:>7.0f} {total:>7.0f}")


async def machine_phases(
    labyard: Labyard, playground: Playground, machine: str, units: Sequence[str]
) -> list[float]:
    """Monotonic seconds at which systemd started, each unit became active and the boot
    jobs finished (0: never). The container shares the host's CLOCK_MONOTONIC (runc makes
    no time namespace), so these line up with time.monotonic() here."""
    await wait_idle(labyard, playground, machine)
    show = "systemctl show --value -p"
    probe = "; ".join(
        [f"{show} UserspaceTimestampMonotonic"]
        + [f"{show} ActiveEnterTimestampMonotonic {unit}" for unit in units]
        + [f"{show} FinishTimestampMonotonic"]
    )
    return [int(v) / 1e6 for v in (await run_on(labyard, playground, machine, probe)).split()]


async def trace(labyard: Labyard, manifest: Manifest) -> None:
    """One extra, untimed-by-the-table start, phase by phase, in ms after t0."""
    units = TRACE_UNITS.get(manifest.name, DEFAULT_TRACE_UNITS)
    probe = READY_PROBES.get(manifest.name, (None, None))[1]
    with host_steps(labyard) as spans:
        t0 = time.monotonic()
        playground = await labyard.playgrounds.start(manifest)
    t_ready = time.monotonic()
    machines = machine_names(playground)
    try:
        moments = await asyncio.gather(
            *(first_exec(labyard, playground, m, probe) for m in machines)
        )
        offset = time.monotonic() - time.perf_counter()  # first_exec reports perf_counter
        phases = await asyncio.gather(
            *(machine_phases(labyard, playground, m, units) for m in machines)
        )
        console.print(f"\n[bold]trace[/]: one {manifest.name} start, ms after t0")
        print_host_steps(spans, t0)
        heads = ["PID 1", *units, "boot done"]
        console.print("  in the machine: " + " | ".join(heads))
        for machine, values in zip(machines, phases, strict=True):
            cells = [f"{(v - t0) * 1000:.0f}" if v else "-" for v in values]
            console.print(f"    {machine:<10} " + " | ".join(cells))
        console.print(f"  start() returned (all answered SSH): {(t_ready - t0) * 1000:.0f}")
        last_exec = max(t for t, _ in moments) + offset
        console.print(f"  first exec done on every machine:    {(last_exec - t0) * 1000:.0f}")
        if probe is not None:
            last_probe = max(p or 0.0 for _, p in moments) + offset
            console.print(f"  `{probe}` answered:  {(last_probe - t0) * 1000:.0f}")
        for command in TRACE_COMMANDS:
            console.print(f"\n$ {command}   # on {machines[0]}")
            console.print(await run_on(labyard, playground, machines[0], command), markup=False)
    finally:
        await labyard.playgrounds.destroy(playground.id)


# -- reporting -----------------------------------------------------------------------------


def nearest_rank(values: Sequence[float], percentile: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percentile / 100 * len(ordered)) - 1)]


def summarize(name: str, samples: Samples) -> dict[str, Any]:
    lat = samples.latencies_s
    row: dict[str, Any] = {
        "median_s": round(statistics.median(lat), 3),
        "p95_s": round(nearest_rank(lat, 95), 3),
        "runs": len(lat),
        "idle_machine_mib": round(statistics.median(samples.idle_bytes) / MIB, 1),
        "min_s": round(min(lat), 3),
        "max_s": round(max(lat), 3),
        "samples_s": [round(s, 4) for s in lat],
        "idle_samples_mib": [round(b / MIB, 2) for b in samples.idle_bytes],
    }
    if samples.probe_s:
        key = READY_PROBES[name][0]
        row[f"{key}_median_s"] = round(statistics.median(samples.probe_s), 3)
        row[f"{key}_p95_s"] = round(nearest_rank(samples.probe_s, 95), 3)
        row[f"{key}_samples_s"] = [round(s, 4) for s in samples.probe_s]
    return row


def read_text(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine_facts() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in read_text("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    mem_kib = next(
        (
            int(line.split()[1])
            for line in read_text("/proc/meminfo").splitlines()
            if "MemTotal" in line
        ),
        0,
    )
    try:
        runc = subprocess.run(["runc", "--version"], capture_output=True, text=True, check=False)
        runc_version = runc.stdout.splitlines()[0].removeprefix("runc version ").strip()
    except (OSError, IndexError):
        runc_version = "unknown"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "runc": runc_version,
        "python": platform.python_version(),
        "loadavg_at_start": read_text("/proc/loadavg").split()[:3],
    }


def print_table(results: dict[str, dict[str, Any]]) -> None:
    table = Table(title="playground start -> first exec on every machine")
    columns = ("median_s", "p95_s", "min_s", "max_s", "runs", "idle_machine_mib")
    table.add_column("playground")
    for column in columns:
        table.add_column(column, justify="right")
    for name, row in results.items():
        table.add_row(name, *(str(row[c]) for c in columns))
    console.print(table)
    for name, row in results.items():
        if name in READY_PROBES:
            key, command = READY_PROBES[name]
            console.print(
                f"  {name}: start -> `{command}` answering: median "
                f"{row[f'{key}_median_s']} s, p95 {row[f'{key}_p95_s']} s"
            )


def print_peer(peer: dict[str, Any]) -> None:
    console.print(
        "peer lxc (start -> `systemctl is-system-running` past `starting`): "
        f"lxc median {peer['lxc_running_median_s']} s {peer['lxc_states']}, "
        f"labyard median {peer['labyard_running_median_s']} s {peer['labyard_states']}, "
        f"ratio labyard/lxc {peer['ratio']}"
    )


def print_targets(results: dict[str, dict[str, Any]]) -> None:
    checks: list[tuple[str, float, float]] = [
        (f"{name} median_s", results[name]["median_s"], TARGETS[f"{name}_median_s"])
        for name in results
        if f"{name}_median_s" in TARGETS
    ]
    checks += [
        (f"{name} idle_machine_mib", results[name]["idle_machine_mib"], TARGETS["idle_machine_mib"])
        for name in results
        if name in IDLE_TARGETED
    ]
    for label, value, target in checks:
        verdict = "[green]PASS[/]" if value <= target else "[red]MISS[/]"
        console.print(f"  {verdict}  {label} = {value} (target <= {target})")


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per playground")
    parser.add_argument(
        "--json", type=Path, default=REPO / "bench/results/start_latency.json", help="output"
    )
    parser.add_argument(
        "--playgrounds",
        default=",".join(PLAYGROUNDS),
        help="comma-separated built-in names (empty: only the peer)",
    )
    parser.add_argument(
        "--peer", choices=["lxc"], help="also measure a peer, interleaved with labyard"
    )
    parser.add_argument("--keep-data", action="store_true", help="keep the temp data dir")
    parser.add_argument(
        "--trace",
        action="store_true",
        help="also trace one extra start of each playground, phase by phase",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    args.names = [n.strip() for n in args.playgrounds.split(",") if n.strip()]
    if not args.names and not args.peer:
        parser.error("nothing to measure: give --playgrounds or --peer")
    return args


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    manifests = [load_manifest(n) for n in args.names]
    settings = private_settings()
    check_images(settings, [*manifests, *([load_manifest("linux")] if args.peer else [])])
    console.print(f"private instance: data {settings.data_dir}, images {settings.images_dir}")
    labyard = Labyard(settings)
    results: dict[str, Any] = {}
    try:
        for m in manifests:
            results[m.name] = summarize(m.name, await measure(labyard, m, args.runs))
        if args.peer == "lxc":
            results["peer_lxc"] = await peer_lxc(labyard, args.runs)
        if args.trace:
            for manifest in manifests:
                await trace(labyard, manifest)
    finally:
        await asyncio.shield(teardown(labyard, args.keep_data))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("error: labyard runs runc, netns and nftables: run this benchmark as root")
    if args.peer == "lxc":
        check_lxc()
    facts = machine_facts()
    console.print("machine: " + ", ".join(f"{k}={v}" for k, v in facts.items()))
    try:
        results = asyncio.run(bench(args))
    except LabyardError as exc:
        sys.exit(f"error: {exc}")
    except KeyboardInterrupt:
        sys.exit("interrupted: the playgrounds and LXC containers it started were removed")
    playgrounds = {k: v for k, v in results.items() if k != "peer_lxc"}
    if playgrounds:
        print_table(playgrounds)
    if "peer_lxc" in results:
        print_peer(results["peer_lxc"])
    print_targets(playgrounds)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({**results, "machine": facts, "targets": TARGETS}, indent=2))
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
