"""Warm pools on real machines (local driver): a claim hands a pre-started playground to a
learner with a fresh key, owner, lifetime, usage session and a clean shell (on LXD
containers too: the lxd driver); a released pool
takes its unclaimed playgrounds along; the reconciler leaves warm ones alone and cleans up
what a crashed release left; cold starts queue at most `cap` at a time; an operator pool
turns an ordinary start into a claim. The bookkeeping on SQLite and PostgreSQL:
tests/services/test_pools_bookkeeping.py."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import delete

from labyard.access import PtySession, connect, public_key_of
from labyard.errors import AccessFailure, LimitExceeded, NotFound
from labyard.manifest import load_manifest
from labyard.services import Labyard, Playground, Pools, Queued, reconcile
from labyard.services.pools import pool_owner, scoped_key
from labyard.services.terminals import open_terminal
from labyard.services.usage import Launch
from labyard.store import PlaygroundRow
from labyard.store.models import PoolRow
from labyard.types import LaunchedBy

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")


async def until(terminal_output: AsyncIterator[bytes], pattern: str, deadline: float = 15) -> str:
    text = ""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(deadline):
            async for chunk in terminal_output:
                text += chunk.decode(errors="replace")
                if re.search(pattern, ANSI.sub("", text)):
                    return text
    pytest.fail(f"no {pattern!r} within {deadline} s in {text!r}")


async def output(pty: PtySession) -> AsyncIterator[bytes]:
    while data := await pty.read():
        yield data


async def run(labyard: Labyard, playground_id: str, command: str) -> tuple[int, str]:
    async with await labyard.playgrounds.connect(playground_id) as connection:
        result = await connection.run(command, timeout=30)
    return result.exit_code, result.stdout


def warm_ids(labyard: Labyard, key: str) -> list[str]:
    with labyard.db.session() as session:
        rows = session.query(PlaygroundRow).filter_by(pool_key=key, claimed_at=None)
        return sorted(row.id for row in rows)


@pytest.fixture
async def pools(labyard: Labyard) -> AsyncIterator[Pools]:
    yield labyard.pools
    for state in labyard.pools.pools():
        if state.key.startswith("test-"):  # this module's; other suites' are theirs
            await labyard.pools.release(state.key)


@pytest.fixture(params=["local", "lxd"])
def engine(request: pytest.FixtureRequest) -> Labyard:
    """The local driver's runc machines, then the lxd driver's LXD containers."""
    found: Labyard = request.getfixturevalue(
        "labyard" if request.param == "local" else "lxd_labyard"
    )
    return found


async def test_a_claim_hands_over_a_fresh_key_owner_lifetime_and_a_clean_shell(
    engine: Labyard,
) -> None:
    labyard, pools = engine, engine.pools
    key = scoped_key("test-claim", "linux")
    state = await pools.warm(key, 1)
    assert (state.warm, state.starting, state.claimed) == (1, 0, 0)
    (warm_id,) = warm_ids(labyard, key)
    warm = await labyard.playgrounds.get(warm_id)
    assert warm.owner == pool_owner(key)
    assert labyard.usage.sessions(playground_id=warm_id) == []  # a warm one is not metered

    # Pre-start work in the learner's future shell: a terminal tab with history in it.
    terminal = await open_terminal(labyard.playgrounds, warm_id, "linux", pool_owner(key))
    terminal.pty.write(b"echo prestart-secret-$((6*7)); history -w\n")
    await until(output(terminal.pty), "prestart-secret-42")
    await terminal.close()
    assert (await run(labyard, warm_id, "tmux -L labyard ls"))[0] == 0
    assert "prestart-secret" in (await run(labyard, warm_id, "cat /root/.bash_history"))[1]
    old_target = labyard.playgrounds.target(warm_id)

    user = labyard.accounts.create_user(f"claimer-{warm_id}@example.org", "a long password")
    launch = Launch(account_id=user.id, by=LaunchedBy.CLASS, content_key="challenges/x")
    before = time.time()
    claimed = await pools.claim(key, user, lifetime_s=900, launch=launch)
    assert claimed is not None and claimed.id == warm_id
    try:
        assert claimed.owner == user.owner and claimed.state == "running"
        assert claimed.created_at.timestamp() >= before
        assert (claimed.expires_at - claimed.created_at).total_seconds() == 900
        with pytest.raises(AccessFailure):  # the pre-start key no longer gets in
            await connect(old_target)
        new_target = labyard.playgrounds.target(warm_id, owner=user.owner)
        assert new_target.client_private_key != old_target.client_private_key
        _, keys = await run(labyard, warm_id, "cat /root/.ssh/authorized_keys")
        assert keys.strip() == public_key_of(new_target.client_private_key)
        assert (await run(labyard, warm_id, "tmux -L labyard ls"))[0] != 0
        _, history = await run(labyard, warm_id, "cat /root/.bash_history 2>/dev/null")
        assert "prestart" not in history
        # What the learner's first terminal shows: a fresh shell, none of the pre-start tab.
        terminal = await open_terminal(labyard.playgrounds, warm_id, "linux", user.owner)
        terminal.pty.write(b"echo history=$(history | wc -l)-lines\n")
        seen = ANSI.sub("", await until(output(terminal.pty), r"history=\d+-lines"))
        await terminal.close()
        assert "prestart-secret" not in seen
        found = re.search(r"history=(\d+)-lines", seen)
        assert found is not None and int(found.group(1)) <= 1  # only the line just typed

        (session,) = labyard.usage.sessions(playground_id=warm_id)
        assert (session.account_id, session.launched_by) == (user.id, "class")
        assert session.content_key == "challenges/x"
        assert session.started_at.timestamp() >= before
        after = pools.state(key)
        assert after is not None and (after.claimed, after.warm, after.wanted) == (1, 0, 0)
        assert await pools.claim(key, "someone-else") is None  # the pool is empty now
    finally:
        await labyard.playgrounds.destroy(warm_id)
        await pools.release(key)


async def test_release_takes_only_unclaimed_ones_and_the_reconciler_cleans_leftovers(
    labyard: Labyard, pools: Pools
) -> None:
    key = scoped_key("test-release", "linux")
    await pools.warm(key, 2)
    first, second = warm_ids(labyard, key)
    report = await reconcile(labyard.playgrounds)  # warm ones are nobody's orphans
    assert not {first, second} & {*report.orphans, *report.pool_leftovers, *report.expired}
    assert set(await labyard.driver.list()) >= {first, second}

    user = labyard.accounts.create_user("release@example.org", "a long password")
    for playground_id in list(pools._held):  # as after a restart: the claim connects anew
        pools._let_go(playground_id)
    old_targets = {p: labyard.playgrounds.target(p) for p in (first, second)}
    claimed = await pools.claim(key, user, launch=user.launch())
    assert claimed is not None
    try:
        assert (await run(labyard, claimed.id, "echo in"))[1] == "in\n"
        with pytest.raises(AccessFailure):
            await connect(old_targets[claimed.id])
        assert await pools.release(key) == 1
        assert pools.state(key) is None
        on_host = await labyard.driver.list()
        assert claimed.id in on_host and ({first, second} - {claimed.id}).isdisjoint(on_host)
        assert (await labyard.playgrounds.get(claimed.id)).state == "running"
    finally:
        await labyard.playgrounds.destroy(claimed.id)

    # A release that died after forgetting the pool, before destroying its playgrounds:
    await pools.warm(key, 1)
    (left,) = warm_ids(labyard, key)
    with labyard.db.session() as session:
        session.execute(delete(PoolRow).where(PoolRow.key == key))
    report = await reconcile(labyard.playgrounds)
    assert report.pool_leftovers == [left]
    assert left not in await labyard.driver.list()
    assert warm_ids(labyard, key) == []


async def test_a_release_waits_for_warm_starts_under_way(
    labyard: Labyard, pools: Pools, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Released while two warm starts are under way but not recorded yet (no row for the
    release to find), a pool leaves no machine behind: the release returns once each start
    finished and destroyed its playground, seeing the pool gone."""
    key = scoped_key("test-release-early", "linux")
    gate = asyncio.Event()
    waiting = 0
    made: list[str] = []
    real_start = labyard.playgrounds.start

    async def start_later(*args: Any, **kwargs: Any) -> Playground:
        nonlocal waiting
        waiting += 1
        await gate.wait()  # between the pool's check and the playground's first row
        started = await real_start(*args, **kwargs)
        made.append(started.id)
        return started

    monkeypatch.setattr(labyard.playgrounds, "start", start_later)
    warming = asyncio.create_task(pools.warm(key, 2))
    async with asyncio.timeout(10):
        while waiting < 2:
            await asyncio.sleep(0.01)
    assert warm_ids(labyard, key) == []  # nothing for a release to find yet
    release = asyncio.create_task(pools.release(key))
    await asyncio.sleep(0.2)
    assert not release.done()  # it waits for the starts under way
    gate.set()
    async with asyncio.timeout(60):
        await release
        with pytest.raises(NotFound, match="no pool"):  # the warm() call: its pool is gone
            await warming
    assert len(made) == 2  # both booted for real
    assert warm_ids(labyard, key) == [] and pools.state(key) is None
    assert not set(made) & {p.id for p in await labyard.playgrounds.list()}
    assert not set(made) & set(await labyard.driver.list())  # no machine left running


async def test_cold_starts_queue_at_most_cap_at_a_time(labyard: Labyard) -> None:
    pools = Pools(labyard.playgrounds, labyard.catalog, cold_starts=1)
    users = [
        labyard.accounts.create_user(f"queue{i}@example.org", "pw long enough") for i in range(3)
    ]
    answers = [await pools.start(u, "linux", u.launch()) for u in users]
    started: list[Playground] = []
    try:
        assert all(isinstance(a, Queued) for a in answers)
        views = [a for a in answers if isinstance(a, Queued)]
        assert [(v.state, v.position) for v in views] == [
            ("starting", 0),
            ("waiting", 1),
            ("waiting", 2),
        ]
        assert views[2].message.startswith("you are 2nd in the queue")
        again = await pools.start(users[2], "linux", users[2].launch())
        assert isinstance(again, Queued) and again.ticket == views[2].ticket
        for user, view in zip(users, views, strict=True):
            done = await pools.start(user, "linux", user.launch(), wait_s=60)
            assert isinstance(done, Playground), done
            assert done.owner == user.owner and done.state == "running"
            assert await pools.poll(view.ticket, user) == done
            started.append(done)
        assert pools.queue.most_at_once == 1
        assert (await run(labyard, started[-1].id, "echo up"))[1].strip() == "up"
    finally:
        for playground in started:
            await labyard.playgrounds.destroy(playground.id)


async def test_an_operator_pool_makes_a_free_play_start_a_claim(labyard: Labyard) -> None:
    operator = Pools(labyard.playgrounds, labyard.catalog, operator_pools=(("linux", 1),))
    labyard.playgrounds.claim_warm = operator.claim_matching
    user = labyard.accounts.create_user("operator-pool@example.org", "a long password")
    started: list[str] = []
    try:
        booted = time.monotonic()
        await operator.keep_warm()
        await asyncio.gather(*operator._topups.values())
        boot_s = time.monotonic() - booted
        (warm_id,) = warm_ids(labyard, "linux")

        claimed_at = time.monotonic()
        playground = await labyard.playgrounds.start(load_manifest("linux"), launch=user.launch())
        claim_s = time.monotonic() - claimed_at
        started.append(playground.id)
        print(f"operator pool: warm boot {boot_s:.3f} s, claim {claim_s:.3f} s")
        assert playground.id == warm_id and playground.owner == user.owner
        assert claim_s < boot_s  # a sanity check only; the figures are bench/class_join.py's
        (session,) = labyard.usage.sessions(playground_id=warm_id)
        assert session.launched_by == "free-play" and session.plan == "free"
        # Still admitted by the plan: the free plan's one playground is running.
        with pytest.raises(LimitExceeded, match="1 playground"):
            await labyard.playgrounds.start(load_manifest("linux"), launch=user.launch())
        await asyncio.gather(*operator._topups.values())  # the claim asked for a new one
        assert len(warm_ids(labyard, "linux")) == 1
        # An own manifest named like the entry is not the entry: it boots.
        own = await labyard.playgrounds.start(
            load_manifest("linux"), launch=Launch(own_manifest=True)
        )
        started.append(own.id)
        assert own.id not in warm_ids(labyard, "linux")
        assert labyard.usage.sessions(playground_id=own.id)[0].account_id is None
    finally:
        labyard.playgrounds.claim_warm = labyard.pools.claim_matching
        await operator.release("linux")
        for playground_id in started:
            await labyard.playgrounds.destroy(playground_id)
    assert warm_ids(labyard, "linux") == []
