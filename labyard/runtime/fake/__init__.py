"""The fake driver: machines that are processes on this host, answering real SSH.

Each machine is `machine.py` running detached in `<root>/<playground>/<machine>/`, in user,
mount, PID and UTS namespaces of its own (its own /root, /home, /tmp and /var, the host's
system read-only): it serves SSH on a loopback port with the playground's keys, so exec,
terminals, task checks and file copy work against it, in well under a second and without
root or runc. Its files and processes outlive the control plane like real machines do, so a
restarted server adopts them. Machines can be made slow, never ready or failing
(`Behaviour`), for the contract suite and for tests of how services cope. It saves and
forks (its machines' own directories), and has no memory figures.

It shares the host's network and kernel freely: it is for tests and demos on a trusted
machine, never for strangers.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from labyard.errors import NotFound, RuntimeFailure
from labyard.images import recipe_names
from labyard.runtime.base import (
    ID_PATTERN,
    Driver,
    DriverState,
    MachineEndpoint,
    MachineStatus,
    PlaygroundSpec,
    Started,
)
from labyard.types import MachineState

VERSION = "1"
_MACHINE = "labyard.runtime.fake.machine"
_KEYS = shutil.ignore_patterns("authorized_keys")
"""Left out of a saved image: the playground it came from let its own client key in."""
_NAMESPACES = [
    "unshare",
    "--user",
    "--map-root-user",
    "--mount",
    "--propagation",
    "private",
    "--uts",
    "--pid",
    "--fork",
    "--kill-child",  # unshare ends -> the machine's PID 1 ends -> all it ran ends
]


@dataclass(frozen=True)
class Behaviour:
    """How the machines it starts from now on behave."""

    boot_delay_s: float = 0.0
    """Seconds a machine stays `pending` before it answers SSH."""
    never_ready: bool = False
    """Machines run but never answer SSH (a start times out)."""
    fail: str = ""
    """Machines end at boot with this sentence (`failed`)."""
    placed_in: tuple[str, ...] | None = None
    """Starts say they ran on a server of these groups, as a cluster's driver does (so
    the notice of a playground run outside its region can be tested without a cluster)."""


class FakeDriver(Driver):
    name = "fake"
    version = VERSION

    def __init__(self, root: Path, behaviour: Behaviour | None = None) -> None:
        self.root = root
        self.behaviour = behaviour or Behaviour()
        self._adopted: set[str] = set()
        """Started or adopted here: the only ones it dials (as a driver that keeps where
        machines are in memory must), so tests catch a caller that forgot to adopt."""

    def _dir(self, playground_id: str) -> Path:
        if not ID_PATTERN.match(playground_id):
            raise NotFound(f"no playground {playground_id!r}")
        return self.root / playground_id

    # -- start ---------------------------------------------------------------------------

    async def start(self, spec: PlaygroundSpec) -> Started:
        directory = self._dir(spec.id)
        runnable = self.images()
        for machine in spec.manifest.machines:
            if machine.image not in runnable:
                raise NotFound(f"no image {machine.image!r} on the fake driver")
        for machine in spec.manifest.machines:
            status = _status(directory / machine.name)
            if status.state not in (MachineState.RUNNING, MachineState.PENDING):
                saved = self._saved / machine.image / "fs"
                await asyncio.to_thread(
                    self._launch, directory / machine.name, spec, machine.name, saved
                )
        machines = [MachineEndpoint(m.name, "127.0.0.1") for m in spec.manifest.machines]
        self._adopted.add(spec.id)
        return Started(machines, self._state(spec), self.behaviour.placed_in)

    def _launch(self, directory: Path, spec: PlaygroundSpec, machine: str, saved: Path) -> None:
        first = not (directory / "fs").exists()
        if first and saved.is_dir():  # a saved image's files
            shutil.copytree(saved, directory / "fs", symlinks=True)
        control = directory / "control"
        control.mkdir(parents=True, exist_ok=True)
        for leftover in ("port", "failed", "stopped", "pid"):
            (control / leftover).unlink(missing_ok=True)
        config = {
            "name": machine,
            "host_key": spec.host_keys[machine],
            "behaviour": asdict(self.behaviour),
        }
        (directory / "machine.json").write_text(json.dumps(config))
        keys = directory / "fs" / "root" / ".ssh"
        if first:  # started again, it keeps its own (a claim may have replaced it since)
            keys.mkdir(parents=True, exist_ok=True, mode=0o700)
            (keys / "authorized_keys").write_text(spec.authorized_key + "\n")
        with open(directory / "console.log", "ab") as console:
            process = subprocess.Popen(
                [*_NAMESPACES, sys.executable, "-m", _MACHINE, str(directory)],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=console,
                start_new_session=True,  # outlives the control plane, like a real machine
            )
        (control / "pid").write_text(str(process.pid))
        _reap_later(process)

    def _state(self, spec: PlaygroundSpec) -> DriverState:
        return {
            "driver": self.name,
            "version": VERSION,
            "machines": [m.name for m in spec.manifest.machines],
        }

    def adopt(self, playground_id: str, state: DriverState) -> DriverState:
        if state and state.get("driver") != self.name:
            raise RuntimeFailure(
                f"playground {playground_id} was started by the {state.get('driver')} driver, "
                "not the fake one"
            )
        self._adopted.add(playground_id)
        return state  # the machines' directories say the rest

    # -- observe -------------------------------------------------------------------------

    def _machines(self, playground_id: str) -> list[Path]:
        directory = self._dir(playground_id)
        return sorted(p for p in directory.iterdir() if p.is_dir()) if directory.exists() else []

    async def status(self, playground_id: str) -> dict[str, MachineStatus]:
        return {m.name: _status(m) for m in self._machines(playground_id)}

    async def dial(
        self, playground_id: str, machine: str, port: int = 22, timeout: float = 10.0
    ) -> socket.socket:
        directory = self._dir(playground_id) / machine
        if playground_id not in self._adopted or not (directory / "machine.json").exists():
            raise NotFound(f"playground {playground_id} has no machine {machine!r}")
        try:
            listening = int((directory / "control" / "port").read_text())
        except (OSError, ValueError) as exc:
            raise ConnectionRefusedError(f"machine {machine} is not listening yet") from exc
        if port != 22:
            raise ConnectionRefusedError(f"the fake machine {machine} serves only SSH")
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, ("127.0.0.1", listening))
        except BaseException:
            sock.close()
            raise
        return sock

    async def list(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if ID_PATTERN.match(p.name))

    def images(self) -> dict[str, str]:
        """Every recipe's name (it needs no build: its machines are processes), and the
        images saved here, each its owner's."""
        found = dict.fromkeys(recipe_names(), "")
        if self._saved.exists():
            found |= {p.name: (p / "owner").read_text() for p in self._saved.iterdir()}
        return found

    @property
    def _saved(self) -> Path:
        return self.root / ".images"

    # -- save-as and fork (the Snapshots capability) --------------------------------------

    async def save_images(
        self,
        playground_id: str,
        images: dict[str, str],
        *,
        running: bool,
        owner: str,
        description: str,
    ) -> None:
        """A machine's own files (/root, /home, /tmp, /var) kept as an image; a running
        machine is not held still while they are copied (this is a fake)."""
        made: builtins.list[str] = []
        try:
            for machine, image in images.items():
                files = self._dir(playground_id) / machine / "fs"
                if not files.is_dir():
                    raise NotFound(f"playground {playground_id} has no machine {machine!r}")
                target = self._saved / image
                await asyncio.to_thread(
                    shutil.copytree, files, target / "fs", symlinks=True, ignore=_KEYS
                )
                made.append(image)
                (target / "owner").write_text(owner)
                (target / "description").write_text(f"machine {machine} of {description}")
        except BaseException:
            self.remove_images(made)
            raise

    def remove_images(self, images: builtins.list[str]) -> None:
        for image in images:
            shutil.rmtree(self._saved / image, ignore_errors=True)

    # -- stop and destroy ----------------------------------------------------------------

    async def stop(self, playground_id: str, now: bool = False) -> None:
        for machine in self._machines(playground_id):
            (machine / "control" / "stopped").touch()
            await asyncio.to_thread(end_machine, machine)
            (machine / "control" / "port").unlink(missing_ok=True)

    async def destroy(self, playground_id: str) -> None:
        directory = self._dir(playground_id)
        for machine in self._machines(playground_id):
            (machine / "control" / "stopped").touch()
            await asyncio.to_thread(end_machine, machine)
        await asyncio.to_thread(shutil.rmtree, directory, True)
        self._adopted.discard(playground_id)


def _pid(machine: Path) -> int | None:
    """The machine's `unshare` process, while it runs."""
    try:
        pid = int((machine / "control" / "pid").read_text())
        stat = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    # A zombie has ended; and a pid reused by another program is not ours.
    if stat.rsplit(")", 1)[1].split()[0] == "Z" or str(machine).encode() not in command:
        return None
    return pid


def _status(machine: Path) -> MachineStatus:
    control = machine / "control"
    if not (machine / "machine.json").exists():
        return MachineStatus(MachineState.MISSING)
    if _pid(machine) is not None:
        ready = (control / "port").exists()
        return MachineStatus(MachineState.RUNNING if ready else MachineState.PENDING)
    if (control / "stopped").exists():
        return MachineStatus(MachineState.STOPPED)
    failed = control / "failed"
    reason = failed.read_text() if failed.exists() else "its process ended by itself"
    return MachineStatus(MachineState.FAILED, f"machine {machine.name}: {reason}")


def end_machine(machine: Path) -> None:
    """End the machine and everything it ran (its PID namespace goes with its PID 1)."""
    pid = _pid(machine)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(200):  # the kernel tears the namespace down in milliseconds
        if _pid(machine) is None:
            return
        time.sleep(0.01)
    raise RuntimeFailure(f"fake machine {machine.name} (pid {pid}) would not end")


def _reap_later(process: subprocess.Popen[bytes]) -> None:
    """Collect the machine's exit status when it ends, so no zombie stays behind in a
    long-lived control plane (a new one adopts machines it did not start: not its child)."""
    threading.Thread(target=process.wait, daemon=True).start()
