"""Earned premium through the real engine: a learner solves a challenge in a real
playground and the instance's entitlements grant what plans.yaml says it earns, once; the
attempt's playground is metered as a challenge launch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from labyard.services import Labyard
from labyard.settings import Settings
from labyard.types import AttemptState
from tests.tasks.conftest import eventually, write_challenge

PLANS = """\
plans:
  free:
    title: Free
    rank: 0
    limits: {concurrent_playgrounds: 1, lifetime: 1h, machines_per_playground: 3,
             cpus_per_machine: 2, memory_per_machine: 2GiB, daily_machine_minutes: 120}
  premium:
    title: Premium
    rank: 10
    limits: {concurrent_playgrounds: 5, lifetime: 8h, machines_per_playground: 5,
             cpus_per_machine: 4, memory_per_machine: 8GiB}
earned: {plan: premium, challenges: 1, days: 30}
"""
TOUCH = """
kind: challenge
title: Touch it
playground: linux
tasks:
  touched:
    run: test -f /tmp/touched
"""


@pytest.fixture
def earning(settings: Settings, tmp_path: Path) -> Iterator[Labyard]:
    """A second instance on the session's database and host, whose plans.yaml grants 30
    days of premium per solved challenge."""
    plans = settings.data_dir / "plans.yaml"
    plans.write_text(PLANS)
    try:
        instance = Labyard(settings, content_dir=tmp_path)
    finally:
        plans.unlink()
    yield instance
    instance.close()


async def test_solving_a_challenge_earns_premium_once(earning: Labyard, tmp_path: Path) -> None:
    labyard = earning
    user = labyard.accounts.create_user("earner@example.org", "a long password")
    assert user.plan == "free"
    item = write_challenge(tmp_path, "touch-it", TOUCH)
    record = await labyard.attempts.start(item, user.owner, launch=user.launch())
    try:
        [session] = labyard.usage.sessions(account_id=user.id)
        assert (session.launched_by, session.content_key, session.plan) == (
            "challenge",
            "challenges/touch-it",
            "free",
        )
        assert record.playground_id is not None
        async with await labyard.playgrounds.connect(record.playground_id) as connection:
            assert (await connection.run("touch /tmp/touched", timeout=30)).exit_code == 0
        solved = await eventually(
            lambda: (r := labyard.attempts.store.load(record.id)).finished and r, 10, "solved"
        )
        assert solved.state == AttemptState.SOLVED
        [earned] = await eventually(lambda: labyard.entitlements.list(user.id), 5, "the grant")
        assert (earned.kind, earned.plan, earned.source) == (
            "earned",
            "premium",
            "1 challenges solved",
        )
        assert labyard.accounts.get(user.id).plan == "premium"
        assert labyard.entitlements.challenge_solved(user.owner, item.key) == []
    finally:
        await labyard.attempts.end(record.id)
        await labyard.attempts.shutdown()
    [closed] = labyard.usage.sessions(account_id=user.id)
    assert closed.end_reason == "destroyed" and closed.machine_minutes is not None
