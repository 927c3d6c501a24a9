"""Services: what labyard does, independent of how it is asked (CLI, HTTP) or run (driver)."""

from __future__ import annotations

from pathlib import Path

from labyard.runtime import make_driver
from labyard.services.accounts import Accounts, User
from labyard.services.analytics import Analytics
from labyard.services.billing import Billing
from labyard.services.catalog import Catalog
from labyard.services.entitlements import Entitlement, Entitlements
from labyard.services.plans import Plan, PlanBook, load_plans
from labyard.services.playgrounds import MachineView, Playground, Playgrounds
from labyard.services.reconciler import Report, reconcile
from labyard.services.shares import Share, Shares
from labyard.services.tasks import AttemptRecord, Attempts
from labyard.services.usage import Launch, Usage, UsageSession
from labyard.settings import Settings
from labyard.store import Database

__all__ = [
    "Accounts",
    "Analytics",
    "Attempts",
    "Billing",
    "Catalog",
    "Entitlement",
    "Entitlements",
    "Labyard",
    "Launch",
    "MachineView",
    "Plan",
    "PlanBook",
    "Playground",
    "Playgrounds",
    "Report",
    "Share",
    "Shares",
    "Usage",
    "UsageSession",
    "User",
    "reconcile",
]


class Labyard:
    """One labyard instance: its settings, database and driver, wired together. A plans
    file (`<data dir>/plans.yaml`) that does not validate stops it here
    (SettingsFileError)."""

    def __init__(
        self, settings: Settings, driver: str = "local", content_dir: Path | None = None
    ) -> None:
        self.settings = settings
        self.plans = load_plans(settings.data_dir)
        self.db = Database(settings.database_url)
        self.db.migrate()
        self.driver = make_driver(driver, settings)
        self.playgrounds = Playgrounds(settings, self.db, self.driver, self.plans)
        self.accounts = Accounts(self.db, self.plans)
        self.entitlements = self.accounts.entitlements
        self.usage = Usage(self.db)
        self.analytics = Analytics(self.db, self.plans)
        self.billing = Billing(settings, self.db, self.plans, self.entitlements)
        self.shares = Shares(self.playgrounds)
        self.catalog = Catalog(content_dir, settings.images_dir)
        self.attempts = Attempts(self.playgrounds, self.catalog, on_solved=self._solved)

    def _solved(self, record: AttemptRecord) -> None:
        self.entitlements.challenge_solved(record.owner, record.content_key)

    def close(self) -> None:
        self.db.close()
