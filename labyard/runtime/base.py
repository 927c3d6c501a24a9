"""The one seam between the control plane and whatever runs the sandboxes.

A driver turns a `PlaygroundSpec` into running machines that answer SSH, reaches their sshd
for the control plane (`dial`), says what state they are in, and takes them away again. It
knows nothing about users, plans or content. Services own timeouts and call `destroy` when
a start fails; a driver only promises that `destroy` removes everything it made for that
playground, however far `start` got, and that `destroy` of something already gone succeeds.

What a driver made is described by an opaque, versioned state it returns from `start`; the
caller stores it and hands it back through `adopt` (in this process or in a new one, after a
restart or an upgrade), JupyterHub's `get_state`/`load_state`. Callers never look inside it.

What not every driver can do is a protocol of its own (capabilities.py), asked with
`isinstance`, never by the driver's name.
"""

from __future__ import annotations

import abc
import re
import secrets
import socket
from dataclasses import dataclass
from typing import Any

from labyard.manifest import Manifest
from labyard.types import MachineState

ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
ID_PATTERN = re.compile(r"^[a-z0-9]{8}$")
"""Playground ids: short enough to type, and to fit in Linux interface names."""

DriverState = dict[str, Any]
"""JSON-able; at least `driver` (its name) and `version` (of the state's layout)."""


def new_playground_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(8))


@dataclass(frozen=True)
class MachineStatus:
    state: MachineState
    reason: str = ""
    """For `failed`: one sentence a user can read (what happened, not a stack trace)."""


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
    """Who asked for it: a label only, for drivers that tag resources."""
    region: str = ""
    """Where it should run, for drivers with several places (an LXD cluster group): tried
    first; elsewhere when it is full or down (`Started.placed_in` says where). "": anywhere."""


@dataclass(frozen=True)
class MachineEndpoint:
    name: str
    address: str = ""
    """The machine's address on its playground network, to show users; never dialled
    (the control plane reaches machines only through `Driver.dial`)."""


@dataclass(frozen=True)
class Started:
    machines: list[MachineEndpoint]
    state: DriverState
    """What the driver needs to find this playground again (see `Driver.adopt`)."""
    placed_in: tuple[str, ...] | None = None
    """The groups of the server it runs on, for drivers with several places (so the caller
    can tell the user when that is not the region asked for); None for one place."""


class Driver(abc.ABC):
    name: str
    version: str
    """Of the state layout this driver writes; `adopt` reads older ones."""

    @abc.abstractmethod
    async def start(self, spec: PlaygroundSpec) -> Started:
        """Run every machine of `spec` and return once each has been started.

        If the playground was stopped earlier, its machines come back with their writable
        layers as they were; machines already running or pending are left as they are.
        Readiness (SSH answering through `dial`) is the caller's to wait for. The playground
        counts as adopted afterwards.
        """

    @abc.abstractmethod
    def adopt(self, playground_id: str, state: DriverState) -> DriverState:
        """Take charge of a playground from the state a `start` returned (perhaps another
        process's, or an older version's); return the state in this version's layout, for
        the caller to store when it changed. No I/O beyond the host's own files."""

    @abc.abstractmethod
    async def status(self, playground_id: str) -> dict[str, MachineStatus]:
        """Machine name -> status, as the engine sees it now ({} when nothing exists)."""

    @abc.abstractmethod
    async def dial(
        self, playground_id: str, machine: str, port: int = 22, timeout: float = 10.0
    ) -> socket.socket:
        """A connected, non-blocking stream socket to `port` of the machine (the control
        plane dials its sshd, 22, and rides everything else on SSH). An engine whose path is
        no socket hands back one end of a socketpair it pumps. OSError or TimeoutError when
        nothing answers; `NotFound` for a playground neither started nor adopted here."""

    @abc.abstractmethod
    async def stop(self, playground_id: str, now: bool = False) -> None:
        """Halt every machine, keeping writable layers. `now` kills instead of shutting down."""

    @abc.abstractmethod
    async def destroy(self, playground_id: str) -> None:
        """Remove everything made for the playground, adopted or not. Already gone is
        success. What another process still holds on the host may be left inert, for a
        later `destroy` (the reconciler's) to finish: `list` reports it until then."""

    @abc.abstractmethod
    async def list(self) -> list[str]:
        """Ids of every playground this driver has anything of, adopted or not."""

    @abc.abstractmethod
    def images(self) -> dict[str, str]:
        """What machines it can run now: image name -> its owner ("" for everyone)."""
