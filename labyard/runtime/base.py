"""The one seam between the control plane and whatever runs the sandboxes.

A driver turns a `PlaygroundSpec` into running machines that answer SSH, and takes them
away again. It knows nothing about users, plans or content. Services own timeouts and call
`destroy` when a start fails; a driver only promises that `destroy` removes everything it
made for that playground, however far `start` got, and that `destroy` of something already
gone succeeds.
"""

from __future__ import annotations

import abc
import enum
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from labyard.manifest import Manifest

ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
ID_PATTERN = re.compile(r"^[a-z0-9]{8}$")
"""Playground ids: short enough to type, and to fit in Linux interface names."""


def new_playground_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(8))


class MachineState(enum.StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    """Halted, with its writable layer kept: `start` brings it back as it was."""
    MISSING = "missing"
    """Nothing of it exists on the host."""


@dataclass(frozen=True)
class PlaygroundSpec:
    """What to run: the manifest plus the keys that make SSH into it trustworthy."""

    id: str
    manifest: Manifest
    authorized_key: str
    """OpenSSH public key the control plane logs in with, installed for root."""
    host_keys: dict[str, str]
    """Machine name -> OpenSSH private host key, so the control plane can pin each one."""
    owner: str = ""
    """Who asked for it: a label only, for drivers that tag resources (Kubernetes)."""


@dataclass(frozen=True)
class MachineEndpoint:
    name: str
    address: str
    ssh_port: int = 22


@dataclass(frozen=True)
class Started:
    machines: list[MachineEndpoint]
    saved_state: dict[str, Any] = field(default_factory=dict)
    """JSON-able: driver name and version, and the names of what it made on the host."""


class Driver(abc.ABC):
    name: str
    version: str

    @abc.abstractmethod
    async def start(self, spec: PlaygroundSpec) -> Started:
        """Run every machine of `spec` and return once each has been started.

        If the playground was stopped earlier, its machines come back with their writable
        layers as they were. Readiness (SSH answering) is the caller's to wait for.
        """

    @abc.abstractmethod
    async def status(self, playground_id: str) -> dict[str, MachineState]:
        """Machine name -> state, as the host sees it now ({} when nothing exists)."""

    @abc.abstractmethod
    async def stop(self, playground_id: str, now: bool = False) -> None:
        """Halt every machine, keeping writable layers. `now` kills instead of shutting down."""

    @abc.abstractmethod
    async def destroy(self, playground_id: str) -> None:
        """Remove everything made for the playground. Already gone is success."""

    @abc.abstractmethod
    async def list(self) -> list[str]:
        """Ids of every playground this driver has anything of on the host."""

    async def machine_memory(self, playground_id: str) -> dict[str, int]:
        """Machine name -> bytes of memory in use, excluding reclaimable page cache."""
        return {}
