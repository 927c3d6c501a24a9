"""Fixtures for the class tests: `room`, the class services over a fresh SQLite or
PostgreSQL database with the fake driver (tests/services/fake_driver.py), and helpers to
make a class that runs now."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from labyard.services import Attempts, Catalog, User
from labyard.services.class_results import ClassResults
from labyard.services.class_room import ClassRoom
from labyard.services.class_spec import ClassSpec
from labyard.services.classes import Classes, ClassView
from labyard.services.pools import Pools
from tests.api.conftest import browser, server  # noqa: F401  (the real server, Chromium)
from tests.services.fake_driver import World, make_world
from tests.store.databases import KINDS, fresh_database_url


@dataclass
class Room:
    world: World
    classes: Classes
    room: ClassRoom
    results: ClassResults
    pools: Pools

    def instructor(self) -> User:
        return self.world.account(role="instructor")

    def spec(self, **changes: object) -> ClassSpec:
        at = datetime.now(UTC)
        fields: dict[str, object] = {
            "title": "Linux 101",
            "content": ["linux"],
            "seats": 5,
            "starts_at": at - timedelta(minutes=5),
            "ends_at": at + timedelta(hours=2),
            "guests": True,
        }
        return ClassSpec.model_validate({**fields, **changes})

    def running_class(self, instructor: User | None = None, **changes: object) -> ClassView:
        return self.classes.create(instructor or self.instructor(), self.spec(**changes))


@pytest.fixture(params=KINDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def room(database_url: str, tmp_path: Path) -> AsyncIterator[Room]:
    world = make_world(database_url, tmp_path)
    catalog = Catalog(None)
    attempts = Attempts(world.playgrounds, catalog)
    pools = Pools(world.playgrounds, catalog)
    classes = Classes(world.db, world.accounts, catalog, world.playgrounds.regions)
    class_room = ClassRoom(classes, world.playgrounds, attempts, pools)
    yield Room(world, classes, class_room, ClassResults(class_room), pools)
    await pools.close()
    await attempts.shutdown()
    world.driver.end_all()
    world.close()
