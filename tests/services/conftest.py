"""Fixtures for the plan, entitlement and usage tests: a fresh SQLite or PostgreSQL database
per test (`database_url`), and `world`: the services over it with the fake driver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.services.fake_driver import World, make_world
from tests.store.databases import KINDS, fresh_database_url


@pytest.fixture(params=KINDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def world(database_url: str, tmp_path: Path) -> AsyncIterator[World]:
    found = make_world(database_url, tmp_path)
    yield found
    found.driver.end_all()
    found.close()
