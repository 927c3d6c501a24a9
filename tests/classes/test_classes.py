"""Classes in the services layer, on SQLite and PostgreSQL with the fake driver: creating
(instructors only), join codes, guests, members starting the class's content over their own
plan's limits while it runs (and not outside its dates or once removed), the start race,
the usage record, extra time capped by the class's end, ending and deleting."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from labyard.errors import Conflict, Forbidden, InvalidInput, ManifestError, NotFound
from labyard.services.class_spec import parse_class_text, read_class_file
from labyard.services.class_starts import Queued, Started, pool_key
from labyard.services.codes import ALPHABET
from labyard.store import UsageSessionRow, UserRow
from labyard.types import LaunchedBy, Role
from tests.classes.conftest import Room
from tests.services.fake_driver import LINUX


async def started(result: Started | Queued) -> Started:
    assert isinstance(result, Started), result
    return result


async def test_only_instructors_and_admins_create_classes_with_a_six_character_code(
    room: Room,
) -> None:
    learner = room.world.account()
    with pytest.raises(Forbidden, match="only instructors and admins"):
        room.classes.create(learner, room.spec())
    made = room.running_class()
    assert len(made.join_code) == 6 and set(made.join_code) <= set(ALPHABET)
    assert made.state == "running"
    admin = room.world.account(role="admin")
    assert room.classes.create(admin, room.spec()).instructor_id == admin.id
    with pytest.raises(InvalidInput, match="content\\[0\\]: no playground 'nope'"):
        room.classes.create(room.instructor(), room.spec(content=["nope"]))
    with pytest.raises(InvalidInput, match="ends_at: a class must end after it starts"):
        at = datetime.now(UTC)
        room.classes.create(room.instructor(), room.spec(starts_at=at, ends_at=at))


async def test_joining_by_code_is_case_insensitive_and_seats_cap_the_members(room: Room) -> None:
    made = room.running_class(seats=2)
    a, b, c = room.world.account(), room.world.account(), room.world.account()
    typed = made.join_code.lower()[:3] + "-" + made.join_code.lower()[3:]
    joined = room.classes.join(a, typed)
    assert joined.me is not None and joined.members is None  # a member sees only themselves
    assert room.classes.join(a, made.join_code).me == joined.me  # again: nothing changes
    room.classes.join(b, made.join_code)
    with pytest.raises(Conflict, match="all 2 seats"):
        room.classes.join(c, made.join_code)
    with pytest.raises(NotFound, match="no class has this join code"):
        room.classes.join(c, "ZZZZZZ")
    with pytest.raises(NotFound):
        room.classes.get(c, made.id)  # a stranger: as if it did not exist
    view = room.classes.get(room.world.accounts.get(made.instructor_id), made.id)
    assert [m.account_id for m in view.members or []] == [a.id, b.id]


async def test_members_start_over_their_plan_while_the_class_runs(room: Room) -> None:
    made = room.running_class()
    learner = room.world.account()  # free plan: one playground at a time
    own = await room.world.playgrounds.start(LINUX, launch=learner.launch())
    room.classes.join(learner, made.join_code)

    got = await started(await room.room.start(learner, made.id, "linux"))
    assert got.playground.owner == learner.owner and got.attempt is None
    assert len(await room.world.playgrounds.list(owner=learner.owner)) == 2
    again = await started(await room.room.start(learner, made.id, "linux"))
    assert again.playground.id == got.playground.id  # what runs is what you get

    with room.world.db.session() as session:
        usage = session.scalar(
            select(UsageSessionRow).where(UsageSessionRow.playground_id == got.playground.id)
        )
        assert usage is not None
        assert (usage.launched_by, usage.class_id, usage.account_id) == (
            LaunchedBy.CLASS,
            made.id,
            learner.id,
        )
    # Lifetime: never past the class's end.
    assert got.playground.expires_at <= made.ends_at + timedelta(seconds=1)
    await room.world.playgrounds.destroy(own.id)


async def test_outside_its_dates_or_once_removed_nothing_starts(room: Room) -> None:
    at = datetime.now(UTC)
    later = room.running_class(starts_at=at + timedelta(hours=1), ends_at=at + timedelta(hours=2))
    learner = room.world.account()
    room.classes.join(learner, later.join_code)
    with pytest.raises(Conflict, match="starts at"):
        await room.room.start(learner, later.id, "linux")

    now_on = room.running_class()
    instructor = room.world.accounts.get(now_on.instructor_id)
    room.classes.join(learner, now_on.join_code)
    got = await started(await room.room.start(learner, now_on.id, "linux"))
    await room.room.remove(instructor, now_on.id, learner.id)
    assert got.playground.id not in [p.id for p in await room.world.playgrounds.list()]
    with pytest.raises(Forbidden, match="removed you"):
        await room.room.start(learner, now_on.id, "linux")
    with pytest.raises(Forbidden, match="removed you"):
        room.classes.join(learner, now_on.join_code)

    stranger = room.world.account()
    with pytest.raises(NotFound):
        await room.room.start(stranger, now_on.id, "linux")


async def test_the_admission_itself_refuses_a_non_member_and_other_content(room: Room) -> None:
    """The plan check in the services layer, not just the room's pre-check."""
    from dataclasses import replace

    made = room.running_class()
    learner = room.world.account()
    launch = replace(learner.launch(), by=LaunchedBy.CLASS, class_id=made.id, content_key="linux")
    with pytest.raises(Forbidden, match="not a member"):
        await room.world.playgrounds.start(LINUX, launch=launch)
    room.classes.join(learner, made.join_code)
    other = replace(launch, content_key="linux-cluster")
    with pytest.raises(Forbidden, match="does not use 'linux-cluster'"):
        await room.world.playgrounds.start(LINUX, launch=other)
    assert await room.world.playgrounds.list() == []


async def test_concurrent_starts_of_one_member_admit_exactly_one(room: Room) -> None:
    """The count-then-start race: the class row's lock makes starts of a class take turns."""
    from dataclasses import replace

    made = room.running_class()
    learner = room.world.account()
    room.classes.join(learner, made.join_code)
    launch = replace(learner.launch(), by=LaunchedBy.CLASS, class_id=made.id, content_key="linux")
    room.world.driver.gate = asyncio.Event()
    tasks = [
        asyncio.create_task(room.world.playgrounds.start(LINUX, launch=launch)) for _ in range(5)
    ]
    async with asyncio.timeout(30):
        while sum(t.done() for t in tasks) + room.world.driver.starts < len(tasks):
            await asyncio.sleep(0.01)  # polling a condition under a deadline
    room.world.driver.gate.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    admitted = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, Conflict)]
    assert len(admitted) == 1 and len(refused) == 4, outcomes
    assert "running already" in str(refused[0])


async def test_extend_is_capped_by_the_class_end_and_end_destroys_everything(room: Room) -> None:
    at = datetime.now(UTC)
    made = room.running_class(ends_at=at + timedelta(minutes=90))  # linux lives 60
    instructor = room.world.accounts.get(made.instructor_id)
    a, b = room.world.account(), room.world.account()
    for learner in (a, b):
        room.classes.join(learner, made.join_code)
    first = await started(await room.room.start(a, made.id, "linux"))
    second = await started(await room.room.start(b, made.id, "linux"))
    with pytest.raises(InvalidInput, match="10, 30, 60"):
        await room.room.extend(instructor, made.id, 15)
    with pytest.raises(Forbidden):
        await room.room.extend(a, made.id, 10)

    extended = await room.room.extend(instructor, made.id, 60, account_id=a.id)
    assert [e["playground_id"] for e in extended] == [first.playground.id]
    longer = await room.world.playgrounds.get(first.playground.id)
    assert abs((longer.expires_at - made.ends_at).total_seconds()) < 2  # capped at the end

    room.room.broadcast(instructor, made.id, "five minutes left")
    room.room.broadcast(instructor, made.id, "just for b", account_id=b.id)
    assert [x.message for x in room.room.broadcasts(a, made.id)] == ["five minutes left"]
    assert len(room.room.broadcasts(b, made.id)) == 2
    assert len(room.room.broadcasts(instructor, made.id)) == 2

    key = pool_key(made.id, "linux")
    await room.pools.warm(key, 2)  # the class's warm pool: its unclaimed machines go too
    warm = {p.id for p in await room.world.playgrounds.list() if p.owner.startswith("pool:")}
    assert len(warm) == 2
    async with asyncio.timeout(60):
        await room.room.end(instructor, made.id)
    assert room.pools.state(key) is None
    assert not warm & {p.id for p in await room.world.playgrounds.list()}
    live = [p.id for p in await room.world.playgrounds.list()]
    assert first.playground.id not in live and second.playground.id not in live
    assert room.classes.get(instructor, made.id).state == "ended"
    with pytest.raises(Conflict, match="has ended"):
        await room.room.start(a, made.id, "linux")
    results = room.results.results(instructor, made.id)  # kept after the end
    active = {x["account_id"]: x["active_s"] for x in results["learners"]}
    assert set(active) == {a.id, b.id} and all(s >= 0 for s in active.values())


async def test_guests_join_with_a_name_start_nothing_else_and_go_with_the_class(
    room: Room,
) -> None:
    made = room.running_class()
    instructor = room.world.accounts.get(made.instructor_id)
    guest, view = room.classes.join_as_guest(made.join_code, "  Ada   Lovelace ")
    assert guest.role == Role.GUEST and view.me is not None
    assert view.me.display_name == "Ada Lovelace" and view.me.guest
    with pytest.raises(Forbidden, match="guest account starts only"):
        await room.world.playgrounds.start(LINUX, launch=guest.launch())
    with pytest.raises(Forbidden, match="own class"):
        room.classes.join(guest, room.running_class().join_code)
    from labyard.errors import Unauthenticated

    with pytest.raises(Unauthenticated):
        room.world.accounts.authenticate(guest.email, "!guest")
    got = await started(await room.room.start(guest, made.id, "linux"))

    no_guests = room.running_class(guests=False)
    with pytest.raises(Forbidden, match="takes no guests"):
        room.classes.join_as_guest(no_guests.join_code, "Bob")
    with pytest.raises(InvalidInput, match="display name"):
        room.classes.join_as_guest(made.join_code, "   ")

    await room.room.delete(instructor, made.id)
    assert got.playground.id not in [p.id for p in await room.world.playgrounds.list()]
    with room.world.db.session() as session:
        assert session.get(UserRow, guest.id) is None
    with pytest.raises(NotFound):
        room.classes.get(instructor, made.id)


async def test_a_class_file_is_validated_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "class.yaml"
    path.write_text(
        "title: Kubernetes day\n"
        "content:\n"
        "  - linux\n"
        "seats: 0\n"
        "starts_at: 2031-05-06T09:00:00Z\n"
        "ends_at: 2031-05-06T17:00:00Z\n"
        "colour: blue\n"
    )
    with pytest.raises(ManifestError) as caught:
        read_class_file(path)
    problems = caught.value.problems
    assert any(p.startswith(f"{path}:4: seats:") for p in problems), problems
    assert any(p.startswith(f"{path}:7: colour:") for p in problems), problems
    with pytest.raises(ManifestError, match=r"x\.yaml:3: ends_at: a class must end after"):
        parse_class_text(
            "title: t\ncontent: [linux]\nends_at: 2031-05-06T08:00:00Z\nseats: 3\n"
            "starts_at: 2031-05-06T09:00:00Z\n",
            "x.yaml",
        )
    spec, _ = parse_class_text(
        "title: t\ncontent: [linux]\nseats: 3\nstarts_at: 2031-05-06 09:00\n"
        "ends_at: 2031-05-06 17:00\nguests: true\n",
        "ok.yaml",
    )
    assert spec.starts_at == datetime(2031, 5, 6, 9, tzinfo=UTC) and spec.guests


async def test_starts_past_the_boot_slots_queue_with_their_position(room: Room) -> None:
    """At most `cold_starts` boot at once (20 in production; 1 here): the next member's
    start is queued with position 1, never refused, and starts once a slot frees."""
    from labyard.services.class_room import ClassRoom
    from labyard.services.pools import Pools

    pools = Pools(room.world.playgrounds, room.classes.catalog, cold_starts=1)
    one_slot = ClassRoom(room.classes, room.world.playgrounds, room.room.attempts, pools)
    made = room.running_class()
    a, b = room.world.account(), room.world.account()
    for learner in (a, b):
        room.classes.join(learner, made.join_code)
    room.world.driver.gate = asyncio.Event()
    first = asyncio.create_task(one_slot.start(a, made.id, "linux"))
    async with asyncio.timeout(30):
        while room.world.driver.starts < 1:
            await asyncio.sleep(0.01)  # polling a condition under a deadline
    queued = await one_slot.start(b, made.id, "linux")
    assert isinstance(queued, Queued) and queued.position == 1, queued
    assert await one_slot.current(b, made.id) == queued  # asking again: the same place
    room.world.driver.gate.set()
    assert isinstance(await first, Started)
    async with asyncio.timeout(30):
        while not isinstance(found := await one_slot.current(b, made.id), Started):
            await asyncio.sleep(0.05)  # polling a condition under a deadline
    assert found.playground.owner == b.owner
    await pools.close()


async def test_the_board_marks_a_learner_stuck_after_ten_minutes_without_progress(
    room: Room,
) -> None:
    """Read from stored results only: an attempt under way, started 11 minutes ago, with
    nothing completed since."""
    from labyard.store import AttemptRow
    from labyard.store.models import ClassAttemptRow

    made = room.running_class()
    instructor = room.world.accounts.get(made.instructor_id)
    slow, fresh = room.world.account(), room.world.account()
    at = datetime.now(UTC)
    for learner in (slow, fresh):
        room.classes.join(learner, made.join_code)
    with room.world.db.session() as session:
        for i, (learner, minutes) in enumerate(((slow, 11), (fresh, 2))):
            attempt_id = f"a{i:014x}"
            session.add(
                AttemptRow(
                    id=attempt_id,
                    owner=learner.owner,
                    content_key="challenges/x",
                    state="active",
                    spec={},
                    started_at=at - timedelta(minutes=minutes),
                )
            )
            session.flush()
            session.add(
                ClassAttemptRow(
                    attempt_id=attempt_id,
                    class_id=made.id,
                    account_id=learner.id,
                    hints=[],
                    created_at=at,
                )
            )
    board = room.results.board(instructor, made.id)
    stuck = {x["account_id"]: (x["stuck"], x["working"]) for x in board["learners"]}
    assert stuck == {slow.id: (True, True), fresh.id: (False, True)}
    idle = {x["account_id"]: x["idle_s"] for x in board["learners"]}
    assert idle[slow.id] >= 660 and idle[fresh.id] < 600
    with pytest.raises(Forbidden):
        room.results.board(slow, made.id)


async def test_a_class_pool_fills_ten_minutes_before_and_empties_twenty_after_the_start(
    room: Room,
) -> None:
    from labyard.services.class_pools import ClassPools

    tender = ClassPools(room.world.db, room.pools)
    at = datetime.now(UTC)
    soon = room.running_class(
        seats=4, starts_at=at + timedelta(minutes=5), ends_at=at + timedelta(hours=2)
    )
    later = room.running_class(
        starts_at=at + timedelta(minutes=30), ends_at=at + timedelta(hours=2)
    )
    key = pool_key(soon.id, "linux")
    assert await tender.tend(at) == {key: "warming"}
    assert await tender.tend(at) == {}  # once
    async with asyncio.timeout(30):
        while (state := room.pools.state(key)) is None or state.warm < 3:
            await asyncio.sleep(0.05)  # polling a condition under a deadline
    assert (state.count, state.reserve) == (3, 2)  # 75 % of 4 seats, and a reserve of 2
    assert room.pools.state(pool_key(later.id, "linux")) is None

    done = await tender.tend(soon.starts_at + timedelta(minutes=21))
    later_key = pool_key(later.id, "linux")  # starts 4 minutes after that: its turn
    assert set(done) == {key, later_key} and done[later_key] == "warming"
    assert done[key].startswith("released") and room.pools.state(key) is None
    left = {p.id for p in await room.world.playgrounds.list() if p.owner.endswith(key)}
    assert left == set(), done
    async with asyncio.timeout(30):
        while (state := room.pools.state(later_key)) is None or state.warm < 4:
            await asyncio.sleep(0.05)  # polling a condition under a deadline
    await room.pools.release(later_key)
    await tender.close()
    assert [p for p in await room.world.playgrounds.list() if p.owner.startswith("pool:")] == []
