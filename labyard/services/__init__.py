"""Services: what labyard does, independent of how it is asked (CLI, HTTP) or run (driver)."""

from __future__ import annotations

from pathlib import Path

from labyard.runtime import make_driver
from labyard.services.accounts import Accounts, User
from labyard.services.catalog import Catalog
from labyard.services.playgrounds import MachineView, Playground, Playgrounds
from labyard.services.reconciler import Report, reconcile
from labyard.services.shares import Share, Shares
from labyard.services.tasks import Attempts
from labyard.settings import Settings
from labyard.store import Database

__all__ = [
    "Accounts",
    "Attempts",
    "Catalog",
    "Labyard",
    "MachineView",
    "Playground",
    "Playgrounds",
    "Report",
    "Share",
    "Shares",
    "User",
    "reconcile",
]


class Labyard:
    """One labyard instance: its settings, database and driver, wired together."""

    def __init__(
        self, settings: Settings, driver: str = "local", content_dir: Path | None = None
    ) -> None:
        self.settings = settings
        self.db = Database(settings.database_url)
        self.db.migrate()
        self.driver = make_driver(driver, settings)
        self.playgrounds = Playgrounds(settings, self.db, self.driver)
        self.accounts = Accounts(self.db)
        self.shares = Shares(self.playgrounds)
        self.catalog = Catalog(content_dir)
        self.attempts = Attempts(self.playgrounds, self.catalog)

    def close(self) -> None:
        self.db.close()
