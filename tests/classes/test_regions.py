"""A class pinned to a region: every start made for it (a member's, a warm pool's) runs in
the class's region whatever the learner's country, an unpinned class's in each learner's
own; an unknown region is refused naming the field and the regions; the JSON API, the class
pages and `labyard class create` set it; migration 0016 gives existing classes none.

What is observed is what the driver is asked for: the cluster group of each start
(`PlaygroundSpec.region`, recorded by a fake driver that keeps it), from a regions file
whose countries map India to one region and everything else to the other."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy import func, select

from labyard.api.app import create_app
from labyard.errors import Forbidden, InvalidInput
from labyard.runtime import PlaygroundSpec, Started
from labyard.services import Labyard
from labyard.services.class_pools import ClassPools, wanted
from labyard.services.class_spec import ClassChanges
from labyard.services.class_starts import Queued, pool_key
from labyard.services.class_starts import Started as ClassStarted
from labyard.services.cluster import load_regions
from labyard.services.geo import country_of
from labyard.services.usage import Launch
from labyard.settings import Settings
from labyard.store import Database
from labyard.store.db import make_engine
from labyard.store.models import ClassRow, PoolRow, UTCDateTime
from tests.api.test_authz import api, make_account
from tests.classes.conftest import Room
from tests.classes.test_cli import PASSWORD, labyard
from tests.conftest import IMAGES_DIR, dismantle
from tests.services.fake_driver import FakeDriver
from tests.services.test_regions import REGIONS
from tests.store.databases import upgrade_to

GROUP = {"europe": "eu", "india": "india"}
"""The cluster group the driver is asked for, by region."""
IN_INDIA = "49.36.0.1"
"""A client address the server tells is in India (IN)."""


class RecordingDriver(FakeDriver):
    """The fake driver, keeping the cluster group each playground was started for."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.groups: dict[str, str] = {}

    async def start(self, spec: PlaygroundSpec) -> Started:
        self.groups[spec.id] = spec.region
        return await super().start(spec)


@pytest.fixture
def regional(room: Room) -> Room:
    """The class services with the two-region file and a recording driver."""
    data_dir = room.world.settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "regions.yaml").write_text(REGIONS)
    room.world.playgrounds.regions = room.classes.regions = load_regions(data_dir)
    driver = RecordingDriver(room.world.driver.root)
    room.world.driver = room.world.playgrounds.driver = driver
    return room


def recording(room: Room) -> RecordingDriver:
    assert isinstance(room.world.driver, RecordingDriver)
    return room.world.driver


async def started(result: ClassStarted | Queued) -> ClassStarted:
    assert isinstance(result, ClassStarted), result
    return result


async def test_a_pinned_class_runs_every_start_in_its_region_whatever_the_country(
    regional: Room,
) -> None:
    room, driver = regional, recording(regional)
    in_india = room.running_class(region="india")
    in_europe = room.running_class(region="europe")
    anywhere = room.running_class()
    assert (in_india.region, in_europe.region, anywhere.region) == ("india", "europe", "")

    async def group_of(class_id: str, join_code: str, country: str | None) -> str:
        learner = room.world.account()
        room.classes.join(learner, join_code)
        got = await started(await room.room.start(learner, class_id, "linux", country))
        return driver.groups[got.playground.id]

    # Pinned: the class's region, though the learner's country maps to the other one.
    assert await group_of(in_india.id, in_india.join_code, "FR") == GROUP["india"]
    assert await group_of(in_europe.id, in_europe.join_code, "IN") == GROUP["europe"]
    # Not pinned: each learner's own country's region (unknown: the default one).
    assert await group_of(anywhere.id, anywhere.join_code, "IN") == GROUP["india"]
    assert await group_of(anywhere.id, anywhere.join_code, "FR") == GROUP["europe"]
    assert await group_of(anywhere.id, anywhere.join_code, None) == GROUP["europe"]


async def test_a_region_the_operator_removed_falls_back_to_each_learners_own(
    regional: Room,
) -> None:
    room, driver = regional, recording(regional)
    made = room.running_class(region="india")
    data_dir = room.world.settings.data_dir
    (data_dir / "regions.yaml").write_text(REGIONS.replace("india", "asia"))
    room.world.playgrounds.regions = room.classes.regions = load_regions(data_dir)
    learner = room.world.account()
    room.classes.join(learner, made.join_code)
    got = await started(await room.room.start(learner, made.id, "linux", "IN"))
    assert driver.groups[got.playground.id] == "asia"  # India's region now, not a crash
    with room.world.db.session() as session:
        row = session.get_one(ClassRow, made.id)
        found = wanted(row, datetime.now(UTC), room.world.playgrounds.regions)
    assert found is not None and (found.key, found.region) == (pool_key(made.id, "linux"), "")


async def test_an_unknown_region_is_refused_naming_the_field_and_the_regions(
    regional: Room,
) -> None:
    room = regional
    teacher = room.instructor()
    refused = r"region: no region 'mars'.*\(regions: europe, india\)"
    with pytest.raises(InvalidInput, match=refused):
        room.classes.create(teacher, room.spec(region="mars"))
    with room.world.db.session() as session:
        assert session.scalar(select(func.count()).select_from(ClassRow)) == 0  # nothing made

    made = room.running_class(teacher, region="india")
    with pytest.raises(InvalidInput, match=refused):
        room.classes.change(teacher, made.id, ClassChanges(region="mars"))
    assert room.classes.get(teacher, made.id).region == "india"  # unchanged
    learner = room.world.account()
    room.classes.join(learner, made.join_code)
    with pytest.raises(Forbidden):
        room.classes.change(learner, made.id, ClassChanges(region="europe"))
    assert room.classes.change(teacher, made.id, ClassChanges(region="")).region == ""
    assert room.classes.change(teacher, made.id, ClassChanges()).region == ""  # left out


async def _warm(room: Room, key: str, count: int) -> set[str]:
    """The ids of the pool's warm playgrounds, once `count` are."""
    async with asyncio.timeout(30):
        while (state := room.pools.state(key)) is None or state.warm < count:
            await asyncio.sleep(0.05)  # polling a condition under a deadline
    return {p.id for p in await room.world.playgrounds.list() if p.owner == f"pool:{key}"}


async def test_a_pinned_class_pool_warms_in_its_region_and_moves_with_it(regional: Room) -> None:
    room, driver = regional, recording(regional)
    teacher = room.instructor()
    made = room.running_class(teacher, seats=2, region="india")
    tender = ClassPools(room.world.db, room.pools)
    india_key = pool_key(made.id, "linux", "india")
    assert india_key == f"class-{made.id}@india:linux"
    assert await tender.tend() == {india_key: "warming"}
    warm = await _warm(room, india_key, 4)  # 75 % of 2 seats, and a reserve of 2
    assert {driver.groups[p] for p in warm} == {GROUP["india"]}

    # A launch for another region claims nothing from it, though playgrounds are warm.
    assert await room.pools.claim(india_key, "user:0", launch=Launch(region="europe")) is None
    learner = room.world.account()
    room.classes.join(learner, made.join_code)
    got = await started(await room.room.start(learner, made.id, "linux", "FR"))
    assert got.playground.id in warm  # a claim, from India's pool, for a learner in France

    room.classes.change(teacher, made.id, ClassChanges(region="europe"))
    europe_key = pool_key(made.id, "linux", "europe")
    done = await tender.tend()
    assert done[europe_key] == "warming" and done[india_key].startswith("released"), done
    assert room.pools.state(india_key) is None
    moved = await _warm(room, europe_key, 4)  # a pool of its own: its count and reserve
    assert {driver.groups[p] for p in moved} == {GROUP["europe"]}
    other = room.world.account()
    room.classes.join(other, made.join_code)
    again = await started(await room.room.start(other, made.id, "linux", "IN"))
    assert driver.groups[again.playground.id] == GROUP["europe"] and again.playground.id in moved

    await room.room.end(teacher, made.id)  # the class's pools go with it, whatever region
    assert room.pools.state(europe_key) is None
    await tender.close()


def test_migration_0016_gives_existing_classes_and_pools_no_region(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade_to(engine, "0015")
    at = datetime.now(UTC)
    when = UTCDateTime()
    users = sa.table(
        "users", *(sa.column(c) for c in ("id", "email", "password_hash", "role")),
        sa.column("created_at", when),
    )  # fmt: skip
    classes = sa.table(
        "classes", *(sa.column(c) for c in ("id", "title", "instructor_id", "seats", "guests")),
        *(sa.column(c) for c in ("join_code", "changes")), sa.column("content", sa.JSON),
        *(sa.column(c, when) for c in ("starts_at", "ends_at", "created_at")),
    )  # fmt: skip
    pools = sa.table(
        "pools", *(sa.column(c) for c in ("key", "count", "reserve", "claimed", "operator")),
        sa.column("manifest", sa.JSON), *(sa.column(c, when) for c in ("created_at", "updated_at")),
    )  # fmt: skip
    with engine.begin() as connection:
        connection.execute(
            sa.insert(users).values(
                id=1, email="t@example.org", password_hash="x", role="instructor", created_at=at
            )
        )
        connection.execute(
            sa.insert(classes).values(
                id="cl_0123456789ab", title="Before", instructor_id=1, seats=3, guests=False,
                join_code="ABCDEF", changes=0, content=["linux"], starts_at=at,
                ends_at=at + timedelta(hours=1), created_at=at,
            )
        )  # fmt: skip
        connection.execute(
            sa.insert(pools).values(
                key="class-cl_0123456789ab:linux", count=1, reserve=0, claimed=0,
                operator=False, manifest={}, created_at=at, updated_at=at,
            )
        )  # fmt: skip
    engine.dispose()

    db = Database(database_url)
    try:
        db.migrate()
        with db.session() as session:
            row = session.get_one(ClassRow, "cl_0123456789ab")
            assert (row.title, row.region) == ("Before", "")
            assert session.get_one(PoolRow, "class-cl_0123456789ab:linux").region == ""
            row.region = "india"  # and the column takes a region from now on
        with db.session() as session:
            assert session.get_one(ClassRow, "cl_0123456789ab").region == "india"
    finally:
        db.close()


# -- over HTTP: the JSON API and the class pages ------------------------------------------


@pytest.fixture
async def regional_labyard() -> AsyncIterator[Labyard]:
    data_dir = Path(tempfile.mkdtemp(prefix="labyard-class-regions-"))
    (data_dir / "regions.yaml").write_text(REGIONS)
    settings = Settings(
        data_dir=data_dir, images_dir=IMAGES_DIR, database_url=f"sqlite:///{data_dir}/labyard.db"
    )
    instance = Labyard(settings, driver=RecordingDriver(data_dir / "fake-machines"))
    yield instance
    await instance.pools.close()
    await instance.attempts.shutdown()
    await dismantle(instance)
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def regional_app(regional_labyard: Labyard) -> FastAPI:
    return create_app(regional_labyard, reconcile_interval_s=None)


def class_body(**changes: Any) -> dict[str, Any]:
    at = datetime.now(UTC)
    return {
        "title": "Workshop",
        "content": ["linux"],
        "seats": 3,
        "starts_at": (at - timedelta(minutes=1)).isoformat(),
        "ends_at": (at + timedelta(hours=2)).isoformat(),
        **changes,
    }


async def test_the_api_sets_and_changes_the_region_and_starts_follow_it(
    regional_app: FastAPI, regional_labyard: Labyard
) -> None:
    driver = regional_labyard.driver
    assert isinstance(driver, RecordingDriver)
    assert country_of(IN_INDIA) == "IN"  # the premise: this learner is in India
    teacher = make_account(regional_labyard, role="instructor")
    learner = make_account(regional_labyard)
    async with api(regional_app, teacher.token) as client:
        refused = await client.post("/api/classes", json=class_body(region="mars"))
        assert refused.status_code == 422, refused.text
        message = refused.json()["error"]["message"]
        assert message.startswith("region: no region 'mars'") and "europe, india" in message
        assert (await client.get("/api/classes")).json() == []  # nothing half-made

        made = await client.post("/api/classes", json=class_body(region="europe"))
        assert made.status_code == 201, made.text
        class_id, code = made.json()["id"], made.json()["join_code"]
        assert made.json()["region"] == "europe"
        assert (await client.get(f"/api/classes/{class_id}")).json()["region"] == "europe"

    async def start_from_india() -> str:
        async with api(regional_app, learner.token, address=IN_INDIA) as member:
            if (await member.get(f"/api/classes/{class_id}")).status_code == 404:
                assert (await member.post("/api/classes/join", json={"code": code})).is_success
            got = await member.post(
                f"/api/classes/{class_id}/playground", json={"content": "linux"}
            )
            assert got.status_code == 201, got.text
            ended = await member.delete(f"/api/classes/{class_id}/playground")
            assert ended.status_code == 204, ended.text
            return driver.groups[got.json()["id"]]

    assert await start_from_india() == GROUP["europe"]  # pinned: not the learner's India
    async with api(regional_app, learner.token) as member:
        forbidden = await member.patch(f"/api/classes/{class_id}", json={"region": "india"})
        assert forbidden.status_code == 403, forbidden.text
    async with api(regional_app, teacher.token) as client:
        wrong = await client.patch(f"/api/classes/{class_id}", json={"region": "mars"})
        assert wrong.status_code == 422 and "region: no region 'mars'" in wrong.text
        extra = await client.patch(f"/api/classes/{class_id}", json={"title": "Renamed"})
        assert extra.status_code == 422, extra.text
        unpinned = await client.patch(f"/api/classes/{class_id}", json={"region": ""})
        assert unpinned.status_code == 200 and unpinned.json()["region"] == "", unpinned.text
    assert await start_from_india() == GROUP["india"]  # now the learner's own


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


async def test_the_class_pages_pick_show_and_change_the_region(
    regional_app: FastAPI, regional_labyard: Labyard
) -> None:
    teacher = make_account(regional_labyard, role="instructor")
    async with api(regional_app, teacher.token) as client:
        form = await client.get("/classes/new")
        assert '<select name="region">' in form.text
        assert "Each learner&#39;s own region" in form.text and ">India</option>" in form.text
        fields = {
            "csrf": _csrf(form), "title": "Pinned", "content": "linux", "seats": "3",
            "starts_at": "2031-05-06T09:00", "ends_at": "2031-05-06T17:00",
        }  # fmt: skip
        refused = await client.post("/classes/new", data={**fields, "region": "mars"})
        assert refused.status_code == 422 and "no region &#39;mars&#39;" in refused.text
        made = await client.post("/classes/new", data={**fields, "region": "india"})
        assert made.status_code == 303, made.text
        class_id = made.headers["location"].split("/")[2]

        page = await client.get(f"/classes/{class_id}")
        assert '<span class="class-region">India</span>' in page.text
        changed = await client.post(
            f"/classes/{class_id}/region", data={"csrf": _csrf(page), "region": "europe"}
        )
        assert changed.status_code == 303, changed.text
        page = await client.get(f"/classes/{class_id}")
        assert '<span class="class-region">Europe</span>' in page.text
        wrong = await client.post(
            f"/classes/{class_id}/region", data={"csrf": _csrf(page), "region": "mars"}
        )
        assert wrong.status_code == 422 and "no region &#39;mars&#39;" in wrong.text
        assert '<span class="class-region">Europe</span>' in wrong.text  # unchanged


# -- labyard class create FILE --------------------------------------------------------------


def test_class_create_takes_a_region_and_names_the_line_of_an_unknown_one(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "regions.yaml").write_text(REGIONS)
    made = labyard(
        data_dir, "admin", "create-user", "t@example.org", "--role", "instructor",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    text = (
        "title: Pinned\ncontent:\n  - linux\nseats: 4\n"
        "starts_at: 2031-05-06T09:00:00Z\nends_at: 2031-05-06T17:00:00Z\nregion: {}\n"
    )
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(text.format("mars"))
    refused = labyard(data_dir, "class", "create", str(unknown), "--instructor", "t@example.org")
    assert refused.returncode == 2, refused.stderr
    assert f"{unknown}:7: region: no region 'mars'" in refused.stderr, refused.stderr
    good = tmp_path / "good.yaml"
    good.write_text(text.format("india"))
    created = labyard(
        data_dir, "class", "create", str(good), "--instructor", "t@example.org", "--json"
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["region"] == "india"


async def test_saved_starts_and_forks_run_in_the_learners_region_too(
    regional_app: FastAPI, regional_labyard: Labyard
) -> None:
    """Not only a class's or a fresh start: starting a saved playground and forking one run
    in the region of the learner's country (India from IN_INDIA; the default otherwise)."""
    driver = regional_labyard.driver
    assert isinstance(driver, RecordingDriver)
    learner = make_account(regional_labyard, plan="premium")

    async def group_of(client: httpx.AsyncClient, response: httpx.Response) -> str:
        assert response.status_code == 201, response.text
        playground_id = response.json()["id"]
        assert (await client.delete(f"/api/playgrounds/{playground_id}")).status_code == 204
        return driver.groups[playground_id]

    async with api(regional_app, learner.token, address=IN_INDIA) as india:
        made = await india.post("/api/playgrounds", json={"name": "linux"})
        assert made.status_code == 201, made.text
        first = made.json()["id"]
        assert driver.groups[first] == GROUP["india"]
        assert (await india.post(f"/api/playgrounds/{first}/stop")).status_code == 200
        saved = await india.post(f"/api/playgrounds/{first}/save", json={"name": "mine"})
        assert saved.status_code == 201, saved.text
        assert (
            await group_of(india, await india.post("/api/saved-playgrounds/mine/start", json={}))
            == GROUP["india"]
        )
        assert (
            await group_of(india, await india.post(f"/api/playgrounds/{first}/fork"))
            == GROUP["india"]
        )
    async with api(regional_app, learner.token) as elsewhere:  # the control: not India
        started = await elsewhere.post("/api/saved-playgrounds/mine/start", json={})
        assert await group_of(elsewhere, started) == GROUP["europe"]
        forked = await elsewhere.post(f"/api/playgrounds/{first}/fork")
        assert await group_of(elsewhere, forked) == GROUP["europe"]
