"""What the local driver records about a playground it started, and reads back (`adopt`).

Version 2 adds each machine's address, which `dial` connects to. Version 1 (labyard before
the driver dialled machines itself) had none: adopting one reads the address from the
machine's network namespace on the host, while it still has one.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from labyard.errors import RuntimeFailure
from labyard.images import Image
from labyard.manifest import Manifest
from labyard.runtime.base import DriverState, MachineEndpoint
from labyard.runtime.local import network
from labyard.runtime.local.names import HostNames

VERSION = "2"
_CONSOLE_TAIL = 4096


@dataclass(frozen=True)
class RecordedMachine:
    name: str
    container: str
    netns: str
    image: str
    """The exact build it runs on: `<name>-<digest>`, a directory of the images dir."""
    address: str = ""


@dataclass(frozen=True)
class Recorded:
    instance: str
    networks: list[dict[str, str]]
    machines: list[RecordedMachine]

    def address(self, machine: str) -> str | None:
        found = [m.address for m in self.machines if m.name == machine and m.address]
        return found[0] if found else None

    def image(self, machine: str) -> str:
        return next((m.image for m in self.machines if m.name == machine), "")

    def to_json(self) -> DriverState:
        return {
            "driver": "local",
            "version": VERSION,
            "instance": self.instance,
            "networks": self.networks,
            "machines": [asdict(m) for m in self.machines],
        }


def record(
    instance: str,
    names: HostNames,
    manifest: Manifest,
    images: dict[str, Image],
    subnets: list[ipaddress.IPv4Network],
    endpoints: list[MachineEndpoint],
) -> Recorded:
    addresses = {e.name: e.address for e in endpoints}
    return Recorded(
        instance,
        [
            {"name": n.name, "bridge": names.bridge(i), "subnet": str(subnets[i])}
            for i, n in enumerate(manifest.networks)
        ],
        [
            RecordedMachine(
                m.name,
                names.container(m.name),
                names.netns(m.name),
                f"{m.image}-{images[m.image].digest}",
                addresses[m.name],
            )
            for m in manifest.machines
        ],
    )


def load(saved: DriverState, names: HostNames) -> Recorded:
    """The record in `saved` (either version; {} from a start that never got this far)."""
    if not saved:
        return Recorded(names.instance, [], [])
    if saved.get("driver") != "local" or saved.get("version") not in ("1", VERSION):
        raise RuntimeFailure(
            f"playground {names.playground_id} was started by the "
            f"{saved.get('driver')} driver (state version {saved.get('version')}), "
            f"not by this local driver (version {VERSION})"
        )
    machines = [_machine(m, saved["version"]) for m in saved.get("machines", [])]
    return Recorded(saved.get("instance", names.instance), saved.get("networks", []), machines)


def _machine(data: dict[str, Any], version: str) -> RecordedMachine:
    address = data.get("address", "")
    if version == "1":
        address = network.namespace_address(data["netns"]) or ""
    return RecordedMachine(data["name"], data["container"], data["netns"], data["image"], address)


def ended_by_itself(machine: str, console_log: Path) -> str:
    """A sentence for a machine whose init ended though nobody stopped it."""
    try:
        with console_log.open("rb") as log:
            log.seek(0, 2)
            log.seek(max(0, log.tell() - _CONSOLE_TAIL))
            tail = log.read().decode(errors="replace")
    except OSError:
        tail = ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    last = f"; its console's last line: {lines[-1][:200]}" if lines else ""
    return f"machine {machine} stopped by itself (its init ended){last}"
