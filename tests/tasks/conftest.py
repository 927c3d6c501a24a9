"""Task engine fixtures: challenges written inline into a content folder, an `Attempts`
engine on the session's labyard instance, and helpers that wait on conditions with a
deadline."""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from labyard.content.loader import Item, load_item
from labyard.services import Labyard
from labyard.services.tasks import AttemptRecord, Attempts

FIXTURES = Path(__file__).parent / "fixtures"


def write_challenge(root: Path, slug: str, front: str, body: str = "Do it.\n") -> Item:
    """`root/challenges/<slug>/index.md` from YAML front matter and a Markdown body."""
    folder = root / "challenges" / slug
    folder.mkdir(parents=True)
    text = f"---\n{textwrap.dedent(front).strip()}\n---\n{textwrap.dedent(body)}"
    (folder / "index.md").write_text(text)
    return load_item(folder)


async def eventually(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        await asyncio.sleep(interval)  # polling a condition under a deadline
    pytest.fail(f"not within {timeout} s: {what}")


def states(record: AttemptRecord) -> dict[str, str]:
    return {name: t.state for name, t in record.tasks.items()}


class Engine:
    """An `Attempts` engine whose attempts (and their playgrounds) end with the test."""

    def __init__(self, labyard: Labyard, **options: Any) -> None:
        self.labyard = labyard
        self.attempts = Attempts(labyard.playgrounds, labyard.catalog, **options)
        self.started: list[str] = []

    async def start(self, item: Item, owner: str = "test") -> AttemptRecord:
        record = await self.attempts.start(item, owner)
        self.started.append(record.id)
        return record

    def now(self, attempt_id: str) -> AttemptRecord:
        return self.attempts.store.load(attempt_id)

    async def sh(self, record: AttemptRecord, command: str, machine: str | None = None) -> str:
        connection = await self.labyard.playgrounds.connect(record.playground_id or "", machine)
        async with connection:
            result = await connection.run(command, timeout=30)
        assert result.exit_code == 0, result
        return result.stdout

    async def close(self) -> None:
        await self.attempts.shutdown()
        for attempt_id in self.started:
            await self.attempts.end(attempt_id)


@pytest.fixture
async def engine(labyard: Labyard) -> AsyncIterator[Engine]:
    found = Engine(labyard, idle_pause_s=None)
    yield found
    await asyncio.shield(found.close())
