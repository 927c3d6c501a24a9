"""Runtime drivers: the one seam to whatever runs the sandboxes."""

from labyard.runtime.base import (
    Driver,
    MachineEndpoint,
    MachineState,
    PlaygroundSpec,
    Started,
    new_playground_id,
)
from labyard.settings import Settings

__all__ = [
    "Driver",
    "MachineEndpoint",
    "MachineState",
    "PlaygroundSpec",
    "Started",
    "make_driver",
    "new_playground_id",
]


def make_driver(name: str, settings: Settings) -> Driver:
    """The driver called `name`; the local one is the default and the only one so far."""
    if name == "local":
        from labyard.runtime.local.driver import LocalDriver

        return LocalDriver(settings)
    from labyard.errors import InvalidInput

    raise InvalidInput(f"unknown runtime driver {name!r} (available: local)")
