"""Reading machines' writable layers for save-as and fork (services/saved.py).

A stopped machine's disk is mounted read-only for the time of the read; a running one is
frozen (`runc pause`: every process stopped by the cgroup freezer) while its layer is read
on the mounted disk, then thawed. Frozen, nothing writes: the copy is what a power cut at
that moment would leave, as consistent as a crash is (what was in a process's memory and
not yet written is not in it).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from labyard.errors import Conflict, NotFound, RuntimeFailure
from labyard.runtime.local import storage
from labyard.runtime.local.names import HostNames
from labyard.settings import Settings

_MOUNT_TRIES = 5


def _runc(settings: Settings, *args: str) -> None:
    command = ["runc", "--root", str(settings.runc_root), *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeFailure(f"cannot {args[0]} machine {args[-1]}", detail=result.stderr)


@contextmanager
def _frozen(settings: Settings, container: str) -> Iterator[None]:
    _runc(settings, "pause", container)
    try:
        yield
    finally:
        _runc(settings, "resume", container)


@contextmanager
def _stopped_disk(machine_dir: Path) -> Iterator[Path]:
    image = machine_dir / "disk.img"
    if not image.exists():
        raise NotFound(f"machine {machine_dir.name} has no disk")
    with tempfile.TemporaryDirectory(prefix=".snapshot-", dir=machine_dir) as point:
        command = ["mount", "-o", "loop,ro,noload", str(image), point]
        for attempt in range(_MOUNT_TRIES):
            # A loop device the kernel is still releasing (a machine just stopped) can make
            # the first try fail; a moment later it works.
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode == 0:
                break
            time.sleep(0.2 * (attempt + 1))
        else:
            raise RuntimeFailure(
                f"cannot read machine {machine_dir.name}'s disk: {result.stderr.strip()}",
                detail=result.stderr,
            )
        try:
            yield Path(point)
        finally:
            storage.unmount_all(Path(point))


@contextmanager
def machine_layers(
    settings: Settings, playground_id: str, machines: list[str], running: bool
) -> Iterator[dict[str, tuple[Path, int]]]:
    """Machine -> (its upper layer directory, its root's host id), readable and unchanging
    while held. `running`: the machines run and are frozen meanwhile; else they are stopped."""
    names = HostNames(settings.instance, playground_id, settings.playgrounds_dir)
    layers: dict[str, tuple[Path, int]] = {}
    with ExitStack() as stack:
        for machine in machines:
            machine_dir = names.machine_dir(machine)
            if running:
                disk = machine_dir / "disk"
                if disk not in storage.mounted_under(disk):
                    raise Conflict(f"machine {machine} of {playground_id} is not running")
                stack.enter_context(_frozen(settings, names.container(machine)))
            else:
                if (machine_dir / "disk") in storage.mounted_under(machine_dir / "disk"):
                    raise Conflict(f"machine {machine} of {playground_id} is not stopped")
                disk = stack.enter_context(_stopped_disk(machine_dir))
            upper = disk / "upper"
            layers[machine] = (upper, os.stat(upper).st_uid)
        yield layers
