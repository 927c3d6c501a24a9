"""Looks over a learner's shoulder in the services layer, on SQLite and PostgreSQL with the
fake driver: who may watch whom (the class's instructor and admins; only members, only
their class playground), the log (start, end, input granted; who may read it), and the
grant (only the learner watched; it ends on revoke and when the look finishes)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from labyard.errors import Conflict, Forbidden, InvalidInput, NotFound
from labyard.services.class_starts import Started
from labyard.services.looks import Looks
from labyard.store.models import LookRow
from tests.classes.conftest import Room
from tests.services.fake_driver import LINUX


@pytest.fixture
def looks(room: Room) -> Looks:
    return Looks(room.classes, room.world.playgrounds)


async def test_only_the_instructor_and_admins_watch_members_in_their_class_playground(
    room: Room, looks: Looks
) -> None:
    teacher, admin = room.instructor(), room.world.account(role="admin")
    made = room.running_class(teacher)
    elsewhere = room.running_class()  # another instructor's class
    learner, classmate, outsider = (room.world.account() for _ in range(3))
    for who in (learner, classmate):
        room.classes.join(who, made.join_code)
    room.classes.join(outsider, elsewhere.join_code)

    with pytest.raises(Conflict, match="has no playground of this class running"):
        await looks.locate(teacher, made.id, learner.id)
    own = await room.world.playgrounds.start(LINUX, launch=learner.launch())  # free play
    started = await room.room.start(learner, made.id, "linux")
    assert isinstance(started, Started)
    await room.room.start(outsider, elsewhere.id, "linux")

    target = await looks.locate(teacher, made.id, learner.id)
    assert target.playground_id == started.playground.id != own.id  # never free play
    assert (target.owner, target.tab, target.learner_id) == (learner.owner, "main", learner.id)
    assert target.machine == started.playground.machines[0].name
    assert await looks.locate(admin, made.id, learner.id) == target
    look = looks.begin(teacher, target)
    looks.begin(admin, target)

    with pytest.raises(Forbidden):
        await looks.locate(classmate, made.id, learner.id)  # a learner never watches another
    with pytest.raises(Forbidden):
        await looks.locate(learner, made.id, learner.id)
    with pytest.raises(NotFound):
        await looks.locate(room.instructor(), made.id, learner.id)  # not their class
    with pytest.raises(NotFound, match="no member"):
        await looks.locate(teacher, made.id, outsider.id)  # a learner of another class
    with pytest.raises(NotFound):
        await looks.locate(teacher, elsewhere.id, outsider.id)
    with pytest.raises(NotFound, match="no machine 'nope'"):
        await looks.locate(teacher, made.id, learner.id, machine="nope")
    with pytest.raises(InvalidInput, match="tab name"):
        await looks.locate(teacher, made.id, learner.id, tab="a b")

    await room.room.remove(teacher, made.id, learner.id)
    with pytest.raises(NotFound, match="no member"):
        await looks.locate(teacher, made.id, learner.id)
    with room.world.db.session() as session:
        logged = session.scalars(select(LookRow)).all()
        assert sorted(r.watcher_id for r in logged) == sorted([teacher.id, admin.id])
    assert look.live


async def test_the_log_and_the_grant(room: Room, looks: Looks) -> None:
    teacher = room.instructor()
    made = room.running_class(teacher)
    learner, classmate = room.world.account(), room.world.account()
    for who in (learner, classmate):
        room.classes.join(who, made.join_code)
    await room.room.start(learner, made.id, "linux")
    target = await looks.locate(teacher, made.id, learner.id)
    assert looks.at(target.playground_id) == []  # located, not yet shown: no look
    look = looks.begin(teacher, target)
    assert [x.id for x in looks.at(target.playground_id)] == [look.id]

    with looks.subscribe(target.playground_id) as changes:
        with pytest.raises(Forbidden, match="has not let you type"):
            looks.input_grant(teacher, made.id, look.id)
        for nobody in (teacher, classmate, room.instructor()):
            with pytest.raises(NotFound):
                looks.grant(nobody, made.id, look.id)  # only the learner watched decides
            if nobody is not teacher:
                with pytest.raises(NotFound):
                    looks.input_grant(nobody, made.id, look.id)

        granted = looks.grant(learner, made.id, look.id)
        assert granted.typing and granted.input_granted
        await asyncio.wait_for(changes.get(), 1)
        where, grant_ended = looks.input_grant(teacher, made.id, look.id)
        assert where == target and not grant_ended.is_set()

        revoked = looks.revoke(learner, made.id, look.id)
        assert not revoked.typing and revoked.input_granted  # the log keeps that it was
        assert grant_ended.is_set()
        with pytest.raises(Forbidden):
            looks.input_grant(teacher, made.id, look.id)

        looks.grant(learner, made.id, look.id)
        _, second = looks.input_grant(teacher, made.id, look.id)
        looks.finish(look.id)
        assert second.is_set() and looks.look(look.id) is None  # the grant ends with it
        await asyncio.wait_for(changes.get(), 1)
        assert looks.at(target.playground_id) == []
        with pytest.raises(NotFound):
            looks.grant(learner, made.id, look.id)
        with pytest.raises(NotFound):
            looks.input_grant(teacher, made.id, look.id)

    quiet = looks.begin(teacher, await looks.locate(teacher, made.id, learner.id))
    (mine,) = [x for x in looks.log(learner, made.id) if x.id == look.id]
    assert mine.ended_at is not None and mine.input_granted and not mine.live
    newest = looks.log(teacher, made.id)
    assert [x.id for x in newest] == [quiet.id, look.id]
    assert newest[0].live and newest[0].ended_at is None and not newest[0].input_granted
    assert (newest[1].watcher, newest[1].learner) == (teacher.email, learner.email)
    assert looks.log(classmate, made.id) == []  # a member sees the looks at them only
    with pytest.raises(NotFound):
        looks.log(room.world.account(), made.id)
    with pytest.raises(NotFound):
        looks.log(room.instructor(), made.id)
