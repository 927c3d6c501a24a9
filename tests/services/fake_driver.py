"""A driver that runs nothing, for tests of the services' bookkeeping (plans, entitlements,
usage sessions) on SQLite and PostgreSQL in milliseconds.

It records what it is asked and reports machines as running; SSH readiness is patched to
succeed at once (`make_world`). What it cannot show (machines, SSH, init tasks) the suites
with the real local driver do; tests/services/test_usage_real.py runs the same usage
bookkeeping on real playgrounds.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from labyard.errors import RuntimeFailure
from labyard.manifest import Manifest, load_manifest, manifest_from_text
from labyard.runtime import Driver, MachineEndpoint, MachineState, PlaygroundSpec, Started
from labyard.services import Entitlements, Playgrounds, Usage, User
from labyard.services import playgrounds as playgrounds_module
from labyard.services.accounts import Accounts
from labyard.services.plans import PlanBook, builtin_plans
from labyard.settings import Settings
from labyard.store import Database
from tests.conftest import IMAGES_DIR


class FakeDriver(Driver):
    name = "fake"
    version = "1"

    def __init__(self) -> None:
        self.machines: dict[str, dict[str, MachineState]] = {}
        self.starts = 0
        """Calls of start(): how many starts got past the plan check."""
        self.gate: asyncio.Event | None = None
        """When set to an unset event, start() waits for it."""
        self.fail = False

    async def start(self, spec: PlaygroundSpec) -> Started:
        self.starts += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeFailure("the fake driver was told to fail")
        names = [m.name for m in spec.manifest.machines]
        self.machines[spec.id] = dict.fromkeys(names, MachineState.RUNNING)
        return Started([MachineEndpoint(n, "192.0.2.1") for n in names], {"driver": "fake"})

    async def status(self, playground_id: str) -> dict[str, MachineState]:
        return dict(self.machines.get(playground_id, {}))

    async def stop(self, playground_id: str, now: bool = False) -> None:
        if playground_id in self.machines:
            self.machines[playground_id] = dict.fromkeys(
                self.machines[playground_id], MachineState.STOPPED
            )

    async def destroy(self, playground_id: str) -> None:
        self.machines.pop(playground_id, None)

    async def list(self) -> list[str]:
        return list(self.machines)

    def crash(self, playground_id: str) -> None:
        """Its machines vanish behind labyard's back (a host reboot, say)."""
        self.machines.pop(playground_id)


class _Connection:
    def close(self) -> None:
        pass


async def _ready(*_args: Any, **_kwargs: Any) -> _Connection:
    return _Connection()


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
    monkeypatch: pytest.MonkeyPatch,
    plans: PlanBook | None = None,
) -> World:
    monkeypatch.setattr(playgrounds_module, "ssh_ready", _ready)
    settings = Settings(
        data_dir=tmp_path / "data", images_dir=IMAGES_DIR, database_url=database_url
    )
    db = Database(database_url)
    db.migrate()
    plans = plans or builtin_plans()
    driver = FakeDriver()
    playgrounds = Playgrounds(settings, db, driver, plans)
    return World(settings, db, driver, playgrounds, Accounts(db, plans), Usage(db), plans)
