"""Machines' writable layers, read consistently (save-as and fork): what a driver offers
beyond the start/stop contract. Only the local driver can, so far."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

from labyard.errors import Conflict
from labyard.runtime.base import Driver


def machine_layers(
    driver: Driver, playground_id: str, machines: list[str], running: bool
) -> AbstractContextManager[dict[str, tuple[Path, int]]]:
    """Machine -> (upper layer directory, host id of its root), held still while entered."""
    if driver.name != "local":
        raise Conflict(f"the {driver.name} driver cannot save playgrounds")
    from labyard.runtime.local import snapshot

    settings = getattr(driver, "settings")  # noqa: B009 (the local driver's, by contract)
    return snapshot.machine_layers(settings, playground_id, machines, running)
