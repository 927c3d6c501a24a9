"""Usage sessions: opened with the playground's row, closed exactly once by whichever way
it ends (stop, destroy, expiry, crash, reconcile, failed start), a new one per restart, and
nothing counted twice by a restarted server. On SQLite and PostgreSQL, with the fake driver
(see fake_driver.py); test_usage_real.py does the same on real playgrounds."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from labyard.errors import RuntimeFailure
from labyard.services import Playground, UsageSession, reconcile
from labyard.services.usage import Launch, close_sessions, rebuild_days, used_minutes
from labyard.store import PlaygroundDayRow, PlaygroundRow, UsageDayRow, UsageSessionRow
from labyard.types import EndReason, LaunchedBy, PlaygroundState
from tests.services.fake_driver import CLUSTER, LINUX, World


def sessions(world: World, playground: Playground | str) -> list[UsageSession]:
    playground_id = playground if isinstance(playground, str) else playground.id
    return world.usage.sessions(playground_id=playground_id)


def backdate(world: World, playground_id: str, minutes: float) -> datetime:
    """Make the playground's open session (and the playground) start `minutes` ago."""
    start = datetime.now(UTC) - timedelta(minutes=minutes)
    with world.db.session() as session:
        session.execute(
            update(UsageSessionRow)
            .where(UsageSessionRow.playground_id == playground_id)
            .where(UsageSessionRow.ended_at.is_(None))
            .values(started_at=start)
        )
        session.execute(
            update(PlaygroundRow).where(PlaygroundRow.id == playground_id).values(created_at=start)
        )
    return start


def days(world: World) -> list[tuple[object, ...]]:
    """The daily roll-ups: (day, plan, launched_by | playground, launches, minutes) rows."""
    with world.db.session() as session:
        kinds = session.execute(select(UsageDayRow)).scalars()
        names = session.execute(select(PlaygroundDayRow)).scalars()
        rows = [
            (r.day, r.plan, r.launched_by, r.launches, round(r.machine_minutes, 6)) for r in kinds
        ]
        rows += [
            (r.day, "", r.playground_name, r.launches, round(r.machine_minutes, 6)) for r in names
        ]
    return sorted(rows, key=str)


def assert_days_sum_the_closed_sessions(world: World) -> None:
    """What close_sessions added to the roll-ups equals them summed afresh from the sessions."""
    live = days(world)
    assert live, "no closed session in the roll-ups"
    with world.db.session() as session:
        rebuild_days(session)
    assert days(world) == live


async def test_a_start_opens_a_session_with_who_and_why(world: World) -> None:
    user = world.account()
    launch = Launch(user.id, by=LaunchedBy.CHALLENGE, content_key="challenges/hello")
    playground = await world.playgrounds.start(CLUSTER, launch=launch)
    assert playground.owner == user.owner
    [found] = sessions(world, playground)
    assert (found.account_id, found.plan, found.launched_by, found.content_key) == (
        user.id,
        "free",
        "challenge",
        "challenges/hello",
    )
    assert (found.playground_name, found.machines, found.restart) == ("linux-cluster", 3, False)
    assert found.ended_at is None and found.end_reason is None and found.machine_minutes is None
    assert abs(found.started_at - playground.created_at) < timedelta(seconds=1)

    local = await world.playgrounds.start(LINUX)  # the operator's CLI: no account, no plan
    [operator] = sessions(world, local)
    assert (operator.account_id, operator.plan, operator.launched_by) == (None, "", "free-play")


async def test_stop_restart_and_destroy_each_close_the_session_once(world: World) -> None:
    user = world.account()
    playground = await world.playgrounds.start(CLUSTER, launch=user.launch())
    start = backdate(world, playground.id, 10)

    await world.playgrounds.stop(playground.id)
    [first] = sessions(world, playground)
    assert first.end_reason == "stopped" and first.ended_at is not None
    assert first.machine_minutes == pytest.approx(
        3 * (first.ended_at - start) / timedelta(minutes=1)
    )
    assert 29.9 < first.machine_minutes < 30.5

    await world.playgrounds.restart(playground.id, account_id=user.id)
    first_again, second = sessions(world, playground)
    assert first_again == first  # untouched by the restart
    assert (second.restart, second.ended_at, second.plan) == (True, None, "free")
    assert (second.account_id, second.launched_by) == (user.id, "free-play")

    await world.playgrounds.restart(playground.id)  # a running one: stop + start
    _, second, third = sessions(world, playground)
    assert second.end_reason == "stopped" and third.ended_at is None and third.restart

    await world.playgrounds.destroy(playground.id)
    *_, last = sessions(world, playground)
    assert last.end_reason == "destroyed"
    assert all(s.ended_at is not None for s in sessions(world, playground))
    with world.db.session() as session:  # closing again changes nothing
        assert close_sessions(session, playground.id, EndReason.DESTROYED, datetime.now(UTC)) == 0
    assert sessions(world, playground)[-1] == last
    # One launch (the restarts are none), each session's minutes on the day it started,
    # by its plan (the last restart had none: no account asked for it).
    kinds: dict[tuple[object, ...], list[float]] = {}
    names: dict[tuple[object, ...], list[float]] = {}
    for closed in sessions(world, playground):
        day = closed.started_at.date()
        for key, table in (
            ((day, closed.plan, "free-play"), kinds),
            ((day, "", CLUSTER.name), names),
        ):
            row = table.setdefault(key, [0, 0.0])
            row[0] += not closed.restart
            row[1] += closed.machine_minutes or 0
    expected = [(*k, n, round(m, 6)) for table in (kinds, names) for k, (n, m) in table.items()]
    assert days(world) == sorted(expected, key=str)
    assert sum(n for *_, n, _ in expected) == 2  # the launch, in each roll-up
    assert_days_sum_the_closed_sessions(world)


async def test_the_reconciler_closes_expired_crashed_and_abandoned_ones(world: World) -> None:
    user = world.account("premium")
    expired = await world.playgrounds.start(LINUX, launch=user.launch())
    crashed = await world.playgrounds.start(LINUX, launch=user.launch())
    abandoned = await world.playgrounds.start(LINUX, launch=user.launch())
    backdate(world, expired.id, 30)
    expiry = datetime.now(UTC) - timedelta(minutes=5)
    with world.db.session() as session:
        session.execute(
            update(PlaygroundRow).where(PlaygroundRow.id == expired.id).values(expires_at=expiry)
        )
        session.execute(  # as a starter that died would leave it
            update(PlaygroundRow)
            .where(PlaygroundRow.id == abandoned.id)
            .values(state=PlaygroundState.STARTING)
        )
    world.driver.crash(crashed.id)

    report = await reconcile(world.playgrounds)
    assert (report.expired, report.marked_stopped, report.abandoned) == (
        [expired.id],
        [crashed.id],
        [abandoned.id],
    )
    [gone] = sessions(world, expired)
    assert (gone.end_reason, gone.ended_at) == ("expired", expiry)  # not the round's time
    assert gone.machine_minutes == pytest.approx(25, abs=0.1)
    assert sessions(world, crashed)[0].end_reason == "crashed"
    assert sessions(world, abandoned)[0].end_reason == "reconciled"

    await reconcile(world.playgrounds)
    await world.playgrounds.destroy(crashed.id)  # stopped now; destroying ends nothing more
    assert [s.end_reason for s in world.usage.sessions(account_id=user.id)] == [
        "expired",
        "crashed",
        "reconciled",
    ]


async def test_a_failed_or_cancelled_start_closes_its_session(world: World) -> None:
    user = world.account()
    world.driver.fail = True
    with pytest.raises(RuntimeFailure):
        await world.playgrounds.start(LINUX, launch=user.launch())
    world.driver.fail = False
    [failed] = world.usage.sessions(account_id=user.id)
    assert failed.end_reason == "failed" and failed.ended_at is not None
    assert await world.playgrounds.list() == []

    world.driver.gate = asyncio.Event()
    starting = asyncio.create_task(world.playgrounds.start(LINUX, launch=user.launch()))
    while world.driver.starts < 2:
        await asyncio.sleep(0.01)  # until it waits in the driver
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert [s.end_reason for s in world.usage.sessions(account_id=user.id)] == ["failed"] * 2
    assert await world.playgrounds.list() == []


async def test_a_restarted_server_counts_nothing_twice(world: World) -> None:
    user = world.account()
    playground = await world.playgrounds.start(LINUX, launch=user.launch())
    backdate(world, playground.id, 20)
    again = world.restarted()
    try:
        for instance in (again, world, again):
            report = await reconcile(instance.playgrounds)
            assert not report.changed, report
        assert [s.ended_at for s in again.usage.sessions(account_id=user.id)] == [None]
        assert again.usage.used_today(user.id) == pytest.approx(
            world.usage.used_today(user.id), abs=0.05
        )

        await again.playgrounds.destroy(playground.id)
        [closed] = again.usage.sessions(account_id=user.id)
        world.playgrounds.forget(playground.id)  # the old process, late: changes nothing
        world.playgrounds.forget(playground.id, EndReason.EXPIRED)
        assert world.usage.sessions(account_id=user.id) == [closed]
        assert closed.end_reason == "destroyed"
        assert closed.machine_minutes == pytest.approx(20, abs=0.1)
        [(*_, launches, minutes), _] = days(world)
        assert (launches, minutes) == (1, round(closed.machine_minutes, 6))
        assert_days_sum_the_closed_sessions(world)
    finally:
        again.close()


async def test_used_today_counts_from_midnight_utc_and_open_ones_up_to_now(world: World) -> None:
    user = world.account()
    at = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
    rows = [  # (machines, start, end)
        (2, datetime(2025, 3, 3, 23, 0, tzinfo=UTC), datetime(2025, 3, 4, 1, 0, tzinfo=UTC)),
        (3, datetime(2025, 3, 4, 9, 0, tzinfo=UTC), datetime(2025, 3, 4, 9, 10, tzinfo=UTC)),
        (1, datetime(2025, 3, 4, 9, 30, tzinfo=UTC), None),
        (5, datetime(2025, 3, 3, 8, 0, tzinfo=UTC), datetime(2025, 3, 3, 9, 0, tzinfo=UTC)),
    ]
    with world.db.session() as session:
        for i, (machines, start, end) in enumerate(rows):
            session.add(
                UsageSessionRow(
                    account_id=user.id,
                    owner=user.owner,
                    plan="free",
                    launched_by="free-play",
                    playground_id=f"p{i}",
                    playground_name="linux",
                    machines=machines,
                    started_at=start,
                    ended_at=end,
                )
            )
    midnight = datetime(2025, 3, 4, tzinfo=UTC)
    with world.db.session() as session:
        used = used_minutes(session, user.id, midnight, at)
    assert used == pytest.approx(2 * 60 + 3 * 10 + 1 * 30)
    assert world.usage.used_today(user.id, at) == pytest.approx(used)
    with world.db.session() as session:
        assert session.scalar(select(UsageSessionRow.machine_minutes).limit(1)) is None
