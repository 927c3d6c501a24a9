"""Services: what labyard does, independent of how it is asked (CLI, HTTP) or run (driver)."""

from __future__ import annotations

from labyard.runtime import make_driver
from labyard.services.playgrounds import MachineView, Playground, Playgrounds
from labyard.services.reconciler import Report, reconcile
from labyard.settings import Settings
from labyard.store import Database

__all__ = ["Labyard", "MachineView", "Playground", "Playgrounds", "Report", "reconcile"]


class Labyard:
    """One labyard instance: its settings, database and driver, wired together."""

    def __init__(self, settings: Settings, driver: str = "local") -> None:
        self.settings = settings
        self.db = Database(settings.database_url)
        self.db.migrate()
        self.driver = make_driver(driver, settings)
        self.playgrounds = Playgrounds(settings, self.db, self.driver)

    def close(self) -> None:
        self.db.close()
