"""The plan check of a start, restart and extension, made once in the services layer: each
limit with its message, the daily allowance with when it resets, and concurrent starts that
never get past the concurrent limit. On SQLite and PostgreSQL, with the fake driver."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

import pytest

from labyard.errors import Forbidden, LimitExceeded
from labyard.services import Playground
from labyard.services.admission import _duration
from labyard.store import UsageSessionRow
from labyard.types import EntitlementKind
from tests.services.fake_driver import CLUSTER, LINUX, World, manifest

FOUR = """\
kind: playground
name: four
machines: [{name: m1}, {name: m2}, {name: m3}, {name: m4}]
"""
BIG = """\
kind: playground
name: big
machines:
  - {name: small}
  - {name: large, cpus: 3, memory: 4GiB}
"""
HUNGRY = """\
kind: playground
name: hungry
machines: [{name: m, cpus: 1, memory: 6GiB}]
"""


async def settle(tasks: list[asyncio.Task[Playground]], world: World) -> None:
    """Wait (with a deadline) until every start is decided: refused (done), or admitted and
    waiting in the driver."""
    async with asyncio.timeout(30):
        while sum(t.done() for t in tasks) + world.driver.starts < len(tasks):
            await asyncio.sleep(0.01)  # polling a condition under a deadline


@pytest.mark.parametrize(("plan", "limit", "tries"), [("free", 1, 6), ("premium", 5, 8)])
async def test_concurrent_starts_never_pass_the_concurrent_limit(
    world: World, plan: str, limit: int, tries: int
) -> None:
    """Several starts of one account at once. The fake driver is enough here: the race is in
    the services layer, between counting the account's playgrounds and recording a new one.
    Each start does that in a worker thread (as in production), so these really run side by
    side against the database; the driver holds the admitted ones until all are decided."""
    user = world.account(plan if plan != "free" else None)
    world.driver.gate = asyncio.Event()
    tasks = [
        asyncio.create_task(world.playgrounds.start(LINUX, launch=user.launch()))
        for _ in range(tries)
    ]
    await settle(tasks, world)
    assert world.driver.starts == limit  # admitted; the rest were refused
    world.driver.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    refused = [r for r in results if isinstance(r, LimitExceeded)]
    started = [r for r in results if isinstance(r, Playground)]
    assert (len(started), len(refused)) == (limit, tries - limit), results
    assert world.driver.starts == limit
    assert all(f"runs {limit} playground(s) at a time" in r.message for r in refused)
    assert len(await world.playgrounds.list(owner=user.owner)) == limit
    assert len(world.usage.sessions(account_id=user.id)) == limit  # refused: no session


async def test_each_limit_says_what_is_over(world: World) -> None:
    learner = world.account()
    author = world.account(role="author")
    with pytest.raises(LimitExceeded, match="'four' has 4 machines; the Free plan allows 3"):
        await world.playgrounds.start(manifest(FOUR), launch=author.launch(own_manifest=True))
    with pytest.raises(LimitExceeded, match="'large' asks for 3 CPUs; the Free plan allows 2"):
        await world.playgrounds.start(manifest(BIG), launch=author.launch(own_manifest=True))
    with pytest.raises(LimitExceeded, match="6 GiB of memory; the Free plan allows 2 GiB"):
        await world.playgrounds.start(manifest(HUNGRY), launch=author.launch(own_manifest=True))
    with pytest.raises(LimitExceeded, match="7200 s is over the Free plan's 3600 s"):
        await world.playgrounds.start(LINUX, lifetime_s=7200, launch=learner.launch())
    with pytest.raises(Forbidden, match="only authors"):
        await world.playgrounds.start(manifest(FOUR), launch=learner.launch(own_manifest=True))
    assert await world.playgrounds.list() == [] and world.driver.starts == 0

    # Premium: bigger machines, own manifests for learners, a manifest's own lifetime.
    world.entitlements.grant(learner.id, "premium", EntitlementKind.TRIAL, source="test")
    big = await world.playgrounds.start(manifest(BIG), launch=learner.launch(own_manifest=True))
    assert [m.name for m in big.machines] == ["small", "large"]
    long = await world.playgrounds.start(LINUX, lifetime_s=7200, launch=learner.launch())
    assert long.expires_at - long.created_at == timedelta(seconds=7200)


async def test_a_manifests_lifetime_is_cut_to_the_plan_and_extensions_stop_there(
    world: World,
) -> None:
    user = world.account()
    long = manifest("kind: playground\nname: long\nlifetime: 3h\nmachines: [{name: m}]\n")
    playground = await world.playgrounds.start(long, launch=user.launch())
    assert playground.expires_at - playground.created_at == timedelta(hours=1)
    with pytest.raises(LimitExceeded, match="the Free plan allows 3600 s in all"):
        await world.playgrounds.extend(playground.id, 60, account_id=user.id)
    await world.playgrounds.destroy(playground.id)

    short = await world.playgrounds.start(LINUX, lifetime_s=600, launch=user.launch())
    extended = await world.playgrounds.extend(short.id, 600, account_id=user.id)
    assert extended.expires_at - short.expires_at == timedelta(seconds=600)
    operator = await world.playgrounds.extend(short.id, 86400)  # no account: no plan
    assert operator.expires_at - extended.expires_at == timedelta(seconds=86400)


def use_minutes(world: World, account_id: int, minutes: float) -> None:
    """Record a closed session, from 00:00 UTC today to now, worth at least `minutes`
    machine-minutes (however early in the day the test runs)."""
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = max((now - midnight) / timedelta(minutes=1), 1 / 60)
    with world.db.session() as session:
        session.add(
            UsageSessionRow(
                account_id=account_id,
                owner=f"user:{account_id}",
                plan="free",
                launched_by="free-play",
                playground_id="earlier1",
                playground_name="linux",
                machines=math.ceil(minutes / elapsed),
                started_at=midnight,
                ended_at=now,
                end_reason="destroyed",
                machine_minutes=minutes,
            )
        )


async def test_over_the_daily_allowance_a_start_is_refused_until_midnight(world: World) -> None:
    user = world.account()
    playground = await world.playgrounds.start(CLUSTER, lifetime_s=1800, launch=user.launch())
    await world.playgrounds.stop(playground.id)
    use_minutes(world, user.id, 120)
    assert world.usage.used_today(user.id) >= 120

    with pytest.raises(LimitExceeded) as refused:
        await world.playgrounds.restart(playground.id, account_id=user.id)
    message = refused.value.message
    assert "today's 120 machine-minutes of the Free plan" in message
    assert "resets at 00:00 UTC, in " in message
    assert refused.value.reason == "allowance_exceeded"
    assert (await world.playgrounds.get(playground.id)).state == "stopped"  # left as it was
    await world.playgrounds.destroy(playground.id)
    with pytest.raises(LimitExceeded, match="resets at 00:00 UTC"):
        await world.playgrounds.start(LINUX, launch=user.launch())
    assert world.driver.starts == 1
    assert len(world.usage.sessions(account_id=user.id)) == 2  # the start, and the one above

    world.entitlements.grant(user.id, "premium", EntitlementKind.SUBSCRIPTION, source="sub_1")
    assert (await world.playgrounds.start(LINUX, launch=user.launch())).state == "running"


async def test_a_playground_runs_on_past_the_allowance_but_is_not_extended(world: World) -> None:
    user = world.account()
    playground = await world.playgrounds.start(LINUX, lifetime_s=600, launch=user.launch())
    use_minutes(world, user.id, 125)
    assert (await world.playgrounds.get(playground.id)).state == "running"
    with pytest.raises(LimitExceeded, match="machine-minutes"):
        await world.playgrounds.extend(playground.id, 60, account_id=user.id)


def test_time_left_reads_as_hours_and_minutes() -> None:
    assert _duration(timedelta(hours=3, minutes=12, seconds=40)) == "3 h 12 min"
    assert _duration(timedelta(minutes=5, seconds=2)) == "5 min"
    assert _duration(timedelta(seconds=20)) == "under a minute"
