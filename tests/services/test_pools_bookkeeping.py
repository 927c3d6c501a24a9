"""Pools' bookkeeping on SQLite and PostgreSQL, with the fake driver: claims count against
the plan and open the usage session, concurrent claims never share a playground, the
reserve is topped up, the queue keeps its order and its cap, the reconciler cleans up after
pools, a restarted server finds its pools, and LABYARD_POOLS is read strictly.

The fake driver has no machines to SSH into, so the pool's SSH connections are stand-ins and
the claim's reset of the machines (new key, clean shell) is recorded instead of run;
tests/services/test_pools.py runs it for real."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import delete

from labyard.access import public_key_of
from labyard.errors import InvalidInput, LimitExceeded, NotFound, RuntimeFailure
from labyard.services import Playground, Pools, Queued, reconcile
from labyard.services.catalog import Catalog
from labyard.services.pools import scoped_key
from labyard.services.start_queue import ordinal
from labyard.services.usage import Launch
from labyard.settings import Settings
from labyard.store import PlaygroundRow
from labyard.store.models import PoolRow
from labyard.types import LaunchedBy
from tests.services.fake_driver import World

KEY = scoped_key("class-1", "linux")


@pytest.fixture
async def pools(world: World) -> AsyncIterator[Pools]:
    found = Pools(world.playgrounds, Catalog(None))
    yield found
    await found.close()


def warm_ids(world: World, key: str = KEY) -> list[str]:
    with world.db.session() as session:
        rows = session.query(PlaygroundRow).filter_by(pool_key=key, claimed_at=None)
        return sorted(row.id for row in rows)


async def test_a_claim_is_admitted_by_the_plan_and_metered_from_the_claim(
    world: World, pools: Pools
) -> None:
    state = await pools.warm(KEY, 2)
    assert (state.warm, state.wanted, world.driver.starts) == (2, 2, 2)
    user = world.account()
    launch = Launch(account_id=user.id, by=LaunchedBy.CLASS)
    claimed = await pools.claim(KEY, user, lifetime_s=600, launch=launch)
    assert claimed is not None and claimed.owner == user.owner
    assert (claimed.expires_at - claimed.created_at).total_seconds() == 600
    (session,) = world.usage.sessions(account_id=user.id)
    assert (session.playground_id, session.launched_by, session.plan) == (
        claimed.id,
        "class",
        "free",
    )
    with world.db.session() as session_:
        client_key = session_.get(PlaygroundRow, claimed.id).client_key
    # The claim put the learner's key in (over real SSH): only it opens the machine now.
    async with await world.playgrounds.connect(claimed.id) as connection:
        keys = await connection.run("cat /root/.ssh/authorized_keys")
    assert keys.stdout.strip() == public_key_of(client_key)
    # The free plan runs one playground: a second claim is refused and takes nothing.
    with pytest.raises(LimitExceeded, match="1 playground"):
        await pools.claim(KEY, user, launch=launch)
    after = pools.state(KEY)
    assert after is not None and (after.claimed, after.warm) == (1, 1)
    other = world.account()
    with pytest.raises(LimitExceeded, match="lifetime"):
        await pools.claim(KEY, other, lifetime_s=10**6, launch=Launch(account_id=other.id))
    assert pools.state(KEY).warm == 1  # type: ignore[union-attr]


async def test_concurrent_claims_never_share_and_the_reserve_is_topped_up(
    world: World, pools: Pools
) -> None:
    await pools.warm(KEY, 3, reserve=1)
    users = [world.account() for _ in range(5)]
    claims = await asyncio.gather(
        *(pools.claim(KEY, u, launch=Launch(account_id=u.id)) for u in users)
    )
    got = [c for c in claims if c is not None]
    # Four were warm (3 + the reserve); a top-up may have made one more in time.
    assert 4 <= len(got) <= 5 and len({c.id for c in got}) == len(got)
    assert all(c.owner == u.owner for c, u in zip(claims, users, strict=True) if c is not None)
    await asyncio.gather(*pools._topups.values())
    state = pools.state(KEY)
    assert state is not None and state.claimed == len(got)
    assert (state.wanted, state.warm) == (1, 1)  # max(3 - claimed, 0) + 1


async def test_release_destroys_the_unclaimed_and_keeps_the_claimed(
    world: World, pools: Pools
) -> None:
    await pools.warm(KEY, 3)
    user = world.account()
    claimed = await pools.claim(KEY, user, launch=Launch(account_id=user.id))
    assert claimed is not None
    assert await pools.release(KEY) == 2
    assert warm_ids(world) == [] and pools.state(KEY) is None
    assert set(world.driver.machines) == {claimed.id}
    assert await pools.claim(KEY, world.account()) is None
    with pytest.raises(NotFound):
        pools.manifest_of(scoped_key("x", "no-such-entry"))


async def test_queue_positions_the_cap_and_a_refusal_up_front(world: World, pools: Pools) -> None:
    pools.queue.cap = 2
    world.driver.gate = asyncio.Event()
    users = [world.account() for _ in range(5)]
    answers = [await pools.start(u, "linux", Launch(account_id=u.id)) for u in users]
    views = [a for a in answers if isinstance(a, Queued)]
    assert [(v.state, v.position) for v in views] == [
        ("starting", 0),
        ("starting", 0),
        ("waiting", 1),
        ("waiting", 2),
        ("waiting", 3),
    ]
    assert views[4].message == "you are 3rd in the queue; your playground starts soon"
    assert views[4].to_json()["position"] == 3
    again = await pools.start(users[4], "linux", Launch(account_id=users[4].id))
    assert isinstance(again, Queued) and again.ticket == views[4].ticket
    with pytest.raises(NotFound):
        await pools.poll(views[4].ticket, users[0])  # another user's ticket
    world.driver.gate.set()
    done = [await pools.poll(v.ticket, u, wait_s=10) for v, u in zip(views, users, strict=True)]
    assert all(isinstance(d, Playground) for d in done)
    assert [d.owner for d in done if isinstance(d, Playground)] == [u.owner for u in users]
    assert pools.queue.most_at_once == 2
    # Over the plan (one playground running already): refused at once, nothing queued.
    with pytest.raises(LimitExceeded):
        await pools.start(users[0], scoped_key("other", "linux"), Launch(account_id=users[0].id))
    assert pools.queue.waiting == 0 and pools.queue.starting == 0


async def test_a_queued_start_claims_when_a_warm_one_appears(world: World, pools: Pools) -> None:
    pools.queue.cap = 1
    gate = world.driver.gate = asyncio.Event()
    first, second = world.account(), world.account()
    await pools.start(first, KEY, Launch(account_id=first.id))
    waiting = await pools.start(second, KEY, Launch(account_id=second.id))
    assert isinstance(waiting, Queued) and waiting.position == 1
    async with asyncio.timeout(10):
        while world.driver.starts < 1:  # the first start is held at the gate
            await asyncio.sleep(0.01)
    world.driver.gate = None  # only the first start stays held
    await pools.warm(KEY, 1)  # a warm one, ready before the second's turn
    gate.set()
    done = await pools.poll(waiting.ticket, second, wait_s=10)
    assert isinstance(done, Playground) and done.owner == second.owner
    assert world.driver.starts == 2  # the first's boot and the warm one: the second claimed


async def test_a_failed_cold_start_is_raised_on_poll(world: World, pools: Pools) -> None:
    world.driver.fail = True
    user = world.account()
    answer = await pools.start(user, "linux", Launch(account_id=user.id))
    assert isinstance(answer, Queued)
    with pytest.raises(RuntimeFailure, match="told to fail"):
        await pools.poll(answer.ticket, user, wait_s=10)
    with pytest.raises(RuntimeFailure, match="told to fail"):  # and on every poll after
        await pools.poll(answer.ticket, user)
    assert await world.playgrounds.list() == []  # rolled back


async def test_the_reconciler_leaves_warm_ones_and_cleans_up_after_pools(
    world: World, pools: Pools
) -> None:
    await pools.warm(KEY, 2)
    other = scoped_key("class-2", "linux")
    await pools.warm(other, 1)
    report = await reconcile(world.playgrounds)
    assert not report.changed and len(world.driver.machines) == 3
    # The host rebooted under one warm playground; another pool's release died half way.
    crashed = warm_ids(world)[0]
    world.driver.crash(crashed)
    (orphaned,) = warm_ids(world, other)
    with world.db.session() as session:
        session.execute(delete(PoolRow).where(PoolRow.key == other))
    report = await reconcile(world.playgrounds)
    assert report.marked_stopped == [crashed] and report.pool_leftovers == [orphaned]
    report = await reconcile(world.playgrounds)
    assert report.pool_leftovers == [crashed]
    assert len(warm_ids(world)) == 1 and warm_ids(world, other) == []
    assert (await pools.warm(KEY, 2)).warm == 2  # topped up again


async def test_a_restarted_server_finds_its_pools(world: World, pools: Pools) -> None:
    await pools.warm(KEY, 2, reserve=1)
    before = warm_ids(world)
    later = world.restarted()
    again = Pools(later.playgrounds, Catalog(None))
    try:
        state = again.state(KEY)
        assert state is not None and (state.count, state.reserve, state.warm) == (2, 1, 3)
        user = later.account()
        claimed = await again.claim(KEY, user, launch=Launch(account_id=user.id))
        assert claimed is not None and claimed.id in before
    finally:
        await again.close()
        later.close()


async def test_operator_pools_follow_the_setting(world: World, pools: Pools) -> None:
    operator = Pools(world.playgrounds, Catalog(None), operator_pools=(("linux", 2),))
    try:
        await operator.keep_warm()
        await asyncio.gather(*operator._topups.values())
        state = operator.state("linux")
        assert state is not None and (state.warm, state.wanted) == (2, 2)
        await operator.warm(KEY, 1)  # a class's pool: not the operator's to release
        gone = Pools(world.playgrounds, Catalog(None))  # LABYARD_POOLS emptied
        await gone.keep_warm()
        assert gone.state("linux") is None and gone.state(KEY) is not None
        assert warm_ids(world, "linux") == []
    finally:
        await operator.close()


def test_labyard_pools_is_read_strictly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABYARD_POOLS", " linux=2, docker=1 ,")
    assert Settings.from_env().pools.warm == (("linux", 2), ("docker", 1))
    for bad in ("linux", "linux=two", "=3", "linux=-1", "linux=1000"):
        monkeypatch.setenv("LABYARD_POOLS", bad)
        with pytest.raises(InvalidInput, match="LABYARD_POOLS entry"):
            Settings.from_env()
    monkeypatch.delenv("LABYARD_POOLS")
    assert Settings.from_env().pools.warm == ()


async def test_bad_pool_arguments_are_refused(pools: Pools) -> None:
    assert pools.queue.cap == 20  # cold starts at a time, unless told otherwise
    with pytest.raises(InvalidInput, match="count is 0 to 500"):
        await pools.warm(KEY, 501)
    with pytest.raises(InvalidInput, match="pool key"):
        await pools.warm("a:b:c", 1)
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101)] == [
        "1st",
        "2nd",
        "3rd",
        "4th",
        "11th",
        "12th",
        "13th",
        "21st",
        "22nd",
        "101st",
    ]
