"""Runtime drivers: the one seam to whatever runs the sandboxes (base.py), the optional
capabilities some drivers have (capabilities.py), and the drivers side by side: `local/`
(runc system containers on this host), `lxd/` (an LXD or Incus server or cluster) and
`fake/` (for tests and demos)."""

from labyard.runtime.base import (
    Driver,
    DriverState,
    MachineEndpoint,
    MachineStatus,
    PlaygroundSpec,
    Started,
    new_playground_id,
)
from labyard.settings import Settings
from labyard.types import MachineState

__all__ = [
    "Driver",
    "DriverState",
    "MachineEndpoint",
    "MachineState",
    "MachineStatus",
    "PlaygroundSpec",
    "Started",
    "make_driver",
    "new_playground_id",
]


def make_driver(name: str, settings: Settings) -> Driver:
    """The driver called `name` (LABYARD_DRIVER): `local` (the default), `lxd` or `fake`."""
    if name == "local":
        from labyard.runtime.local.driver import LocalDriver

        return LocalDriver(settings)
    if name == "lxd":
        from labyard.runtime.lxd.driver import LxdDriver

        return LxdDriver(settings)
    if name == "fake":
        from labyard.runtime.fake import FakeDriver

        return FakeDriver(settings.data_dir / "fake-machines")
    from labyard.errors import InvalidInput

    raise InvalidInput(
        f"LABYARD_DRIVER={name!r} is no runtime driver (available: local, lxd, fake)"
    )
