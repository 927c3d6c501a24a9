"""Services: what labyard does, independent of how it is asked (CLI, HTTP) or run (driver)."""

from __future__ import annotations

from pathlib import Path

from labyard.runtime import Driver, make_driver
from labyard.services.accounts import Accounts, User
from labyard.services.analytics import Analytics
from labyard.services.billing import Billing
from labyard.services.catalog import Catalog
from labyard.services.class_pools import ClassPools
from labyard.services.class_results import ClassResults
from labyard.services.class_room import ClassRoom
from labyard.services.classes import Classes
from labyard.services.cluster import load_regions
from labyard.services.cluster.members import Cluster
from labyard.services.entitlements import Entitlement, Entitlements
from labyard.services.files import Files
from labyard.services.looks import Looks
from labyard.services.lti import Lti
from labyard.services.machine_ports import MachinePorts
from labyard.services.plans import Plan, PlanBook, load_plans
from labyard.services.playgrounds import Playgrounds
from labyard.services.pools import Pools, PoolState, Queued
from labyard.services.reconciler import Report, reconcile
from labyard.services.saved import SavedPlayground, SavedPlaygrounds
from labyard.services.shares import Share, Shares
from labyard.services.tasks import AttemptRecord, Attempts
from labyard.services.tasks.devtools import TaskDevTools
from labyard.services.teams import Team, Teams
from labyard.services.usage import Launch, Usage, UsageSession
from labyard.settings import Settings
from labyard.store import Database
from labyard.types import MachineView, Playground

__all__ = [
    "Accounts",
    "Analytics",
    "Attempts",
    "Billing",
    "Catalog",
    "ClassResults",
    "ClassRoom",
    "Classes",
    "Entitlement",
    "Entitlements",
    "Labyard",
    "Launch",
    "MachineView",
    "Plan",
    "PlanBook",
    "Playground",
    "Playgrounds",
    "PoolState",
    "Pools",
    "Queued",
    "Report",
    "SavedPlayground",
    "SavedPlaygrounds",
    "Share",
    "Shares",
    "Team",
    "Teams",
    "Usage",
    "UsageSession",
    "User",
    "reconcile",
]


class Labyard:
    """One labyard instance: its settings, database and driver, wired together. The driver
    is the one given, else the one `settings.driver` (LABYARD_DRIVER) names. A plans file
    (`<data dir>/plans.yaml`) that does not validate stops it here (SettingsFileError)."""

    def __init__(
        self, settings: Settings, driver: Driver | None = None, content_dir: Path | None = None
    ) -> None:
        self.settings = settings
        self.plans = load_plans(settings.data_dir)
        self.db = Database(settings.database_url)
        self.db.migrate()
        self.driver = driver or make_driver(settings.driver, settings)
        self.regions = load_regions(settings.data_dir)
        self.playgrounds = Playgrounds(settings, self.db, self.driver, self.plans, self.regions)
        self.cluster = Cluster(self.playgrounds, self.regions)  # members, regions, draining
        self.accounts = Accounts(self.db, self.plans)
        self.entitlements = self.accounts.entitlements
        self.usage = Usage(self.db)
        self.analytics = Analytics(self.db, self.plans)
        self.billing = Billing(settings, self.db, self.plans, self.entitlements)
        self.teams = Teams(self.db, self.entitlements)
        self.shares = Shares(self.playgrounds)
        self.machine_ports = MachinePorts(self.playgrounds)  # the port proxy's, over SSH
        self.files = Files(self.playgrounds)  # the editor tab's, over SFTP
        self.catalog = Catalog(content_dir, self.driver.images)
        self.pools = Pools(self.playgrounds, self.catalog, settings.pools.warm)
        self.playgrounds.claim_warm = self.pools.claim_matching  # operator pools (LABYARD_POOLS)
        self.attempts = Attempts(self.playgrounds, self.catalog, on_solved=self._solved)
        self.task_dev_tools = TaskDevTools(self.attempts)  # authors' task panel
        self.classes = Classes(self.db, self.accounts, self.catalog, self.regions)
        self.lti = Lti(settings.data_dir, self.db, self.accounts, content_dir, self.classes)
        self.class_room = ClassRoom(self.classes, self.playgrounds, self.attempts, self.pools)
        self.class_results = ClassResults(self.class_room)
        self.class_pools = ClassPools(self.db, self.pools)  # a class's pool fills and empties
        self.looks = Looks(self.classes, self.playgrounds)  # over a learner's shoulder
        self.saved = SavedPlaygrounds(self.playgrounds, self.plans)  # save-as and fork

    def _solved(self, record: AttemptRecord) -> None:
        self.lti.solved(record)  # the grade to the LMS, in the background
        self.entitlements.challenge_solved(record.owner, record.content_key)

    def close(self) -> None:
        self.machine_ports.close()
        self.db.close()
