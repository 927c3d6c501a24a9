"""The package's fake driver (labyard/runtime/fake), held and broken on demand, for tests of
the services' bookkeeping (plans, entitlements, usage sessions, pools) on SQLite and
PostgreSQL: its machines are processes answering real SSH, up in a fraction of a second.

What it cannot show (real machines, their isolation) the suites with the local driver do;
tests/services/test_usage_real.py runs the same usage bookkeeping on real playgrounds.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from labyard.errors import RuntimeFailure
from labyard.manifest import Manifest, load_manifest, manifest_from_text
from labyard.runtime import PlaygroundSpec, Started
from labyard.runtime.fake import FakeDriver as PackageFakeDriver
from labyard.runtime.fake import end_machine
from labyard.services import Entitlements, Playgrounds, Usage, User
from labyard.services.accounts import Accounts
from labyard.services.plans import PlanBook, builtin_plans
from labyard.settings import Settings
from labyard.store import Database
from tests.conftest import IMAGES_DIR


class FakeDriver(PackageFakeDriver):
    """The fake driver, with a gate to hold starts at and a switch to make them fail."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.starts = 0
        """Calls of start(): how many starts got past the plan check."""
        self.gate: asyncio.Event | None = None
        """When set to an unset event, start() waits for it (after counting the start)."""
        self.fail = False

    async def start(self, spec: PlaygroundSpec) -> Started:
        self.starts += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeFailure("the fake driver was told to fail")
        return await super().start(spec)

    @property
    def machines(self) -> list[str]:
        """Ids of the playgrounds it has machines of."""
        return sorted(p.name for p in self.root.iterdir()) if self.root.exists() else []

    def end_all(self) -> None:
        """End every machine it has (a test's teardown): none outlives the test."""
        for playground_id in self.machines:
            self.crash(playground_id)

    def crash(self, playground_id: str) -> None:
        """Its machines vanish behind labyard's back (a host reboot, say)."""
        for machine in (self.root / playground_id).iterdir():
            end_machine(machine)
        shutil.rmtree(self.root / playground_id)


LINUX = load_manifest("linux")
CLUSTER = load_manifest("linux-cluster")  # 3 machines


def manifest(text: str) -> Manifest:
    return manifest_from_text(text, "test.yaml")


@dataclass
class World:
    settings: Settings
    db: Database
    driver: FakeDriver
    playgrounds: Playgrounds
    accounts: Accounts
    usage: Usage
    plans: PlanBook
    _emails: list[str] = field(default_factory=list)

    @property
    def entitlements(self) -> Entitlements:
        return self.accounts.entitlements

    def account(self, plan: str | None = None, role: str = "learner") -> User:
        email = f"u{len(self._emails)}@example.org"
        self._emails.append(email)
        return self.accounts.create_user(email, "a long password", role=role, plan=plan)

    def restarted(self) -> World:
        """The same database and host seen by a new process (a restarted server)."""
        db = Database(self.settings.database_url)
        db.migrate()
        playgrounds = Playgrounds(self.settings, db, self.driver, self.plans)
        return World(
            self.settings,
            db,
            self.driver,
            playgrounds,
            Accounts(db, self.plans),
            Usage(db),
            self.plans,
        )

    def close(self) -> None:
        self.db.close()


def make_world(
    database_url: str,
    tmp_path: Path,
    plans: PlanBook | None = None,
) -> World:
    settings = Settings(
        data_dir=tmp_path / "data", images_dir=IMAGES_DIR, database_url=database_url
    )
    db = Database(database_url)
    db.migrate()
    plans = plans or builtin_plans()
    driver = FakeDriver(settings.data_dir / "fake-machines")  # where LABYARD_DRIVER=fake looks
    playgrounds = Playgrounds(settings, db, driver, plans)
    return World(settings, db, driver, playgrounds, Accounts(db, plans), Usage(db), plans)
