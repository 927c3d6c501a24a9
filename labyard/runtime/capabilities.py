"""What some drivers can do beyond the contract in base.py, each a protocol of its own.

Callers ask with `isinstance(driver, Snapshots)`, never by a driver's name; a
driver without the capability gets a `Conflict` that says so (HTTP 409, CLI exit 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from labyard.errors import Conflict
from labyard.runtime.base import Driver


@runtime_checkable
class Snapshots(Protocol):
    """Save-as and fork: machines' writable layers made into images it can run again."""

    async def save_images(
        self,
        playground_id: str,
        images: dict[str, str],
        *,
        running: bool,
        owner: str,
        description: str,
    ) -> None:
        """Machine -> name of the new image to make of it, only `owner`'s to run. A running
        playground is held still meanwhile (consistent as a power cut); a stopped one is
        read as it is. On failure none of the images is left behind."""

    def remove_images(self, images: list[str]) -> None:
        """Remove saved images; already gone is success, one still in use is `Conflict`.
        Blocking (files or an engine's API): run it in a thread from async code."""


@runtime_checkable
class MemoryFigures(Protocol):
    """How much memory each machine uses now."""

    async def machine_memory(self, playground_id: str) -> dict[str, int]:
        """Machine name -> bytes of memory in use, excluding reclaimable page cache."""


def lacks(driver: Driver, what: str) -> Conflict:
    """The error for asking `driver` to do `what`, which none of its capabilities covers."""
    return Conflict(f"the {driver.name} runtime cannot {what}", reason="not_supported")


@dataclass(frozen=True)
class ClusterMember:
    """One server of a driver that runs machines on several."""

    name: str
    groups: tuple[str, ...]
    """The engine's groups it is in: regions are made of these."""
    state: str
    """`online`, `offline` (unreachable) or `evacuated` (taking no playgrounds)."""
    playgrounds: int
    memory_free: int | None
    """Bytes; None when the member did not answer."""
    memory_total: int | None
    address: str


@runtime_checkable
class Cluster(Protocol):
    """Machines on several servers: which there are, and taking one out of placement."""

    async def members(self) -> list[ClusterMember]:
        """Every member, as it is now (an unreachable one says so; this never hangs on it)."""

    async def playgrounds_on(self, member: str) -> list[str]:
        """Ids of the playgrounds whose machines are on `member`."""

    async def set_evacuated(self, member: str, evacuated: bool) -> None:
        """Take `member` out of placement (evacuated) or put it back."""
