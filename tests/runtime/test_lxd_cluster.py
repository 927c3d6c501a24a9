"""labyard on a real two-member LXD cluster (tests/lxd_cluster.py: two daemons, each in a
network namespace of its own on one host bridge): placement by region, a region that is
down, a member whose daemon is killed (under plain starts and mid-class), adoption by a
restarted control plane, draining a member, and the operator's `labyard cluster` commands.

Regions here: `europe` is cluster group `eu` (member m1, and every country not listed),
`india` is group `india` (m2; IN), `mars` is group `mars`, which has no member (FR).
The control plane talks to m1's socket only; machines on m2 are reached through their
proxy devices on m2's address.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from labyard.errors import Conflict, NotFound
from labyard.manifest import manifest_from_text
from labyard.services import Labyard, Playground, User, reconcile
from labyard.services.class_spec import ClassSpec
from labyard.services.class_starts import Started
from labyard.services.usage import Launch
from labyard.settings import LxdSettings, Settings
from labyard.store.models import UsageSessionRow
from labyard.types import EndReason, MachineState
from tests import lxd_cluster
from tests.conftest import IMAGES_DIR, REPO, dismantle

REGIONS = """\
default_region: europe
regions:
  europe: {title: Europe, group: eu}
  india: {title: India}
  mars: {title: Mars}
countries:
  IN: india
  FR: mars
"""
MANIFEST = manifest_from_text(
    "kind: playground\nname: small\nmachines:\n  - {name: one, memory: 256MiB, disk: 1GiB}\n",
    "small.yaml",
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[lxd_cluster.Cluster]:
    made = lxd_cluster.start()
    try:
        m1 = made.member("m1")
        for group, member in (("eu", "m1"), ("india", "m2"), ("mars", None)):
            assert m1.lxc("cluster", "group", "create", group).returncode == 0
            if member:
                assigned = m1.lxc("cluster", "group", "assign", member, f"default,{group}")
                assert assigned.returncode == 0, assigned.stderr
        assert m1.lxc("config", "set", "cluster.offline_threshold", "11").returncode == 0
        yield made
    finally:
        lxd_cluster.stop(made)


def settings_for(cluster: lxd_cluster.Cluster, data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        images_dir=IMAGES_DIR,
        database_url=f"sqlite:///{data_dir}/labyard.db",
        driver="lxd",
        lxd=LxdSettings(url=cluster.member("m1").url, project="cluster", pool=lxd_cluster.POOL),
    )


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    made = Path(tempfile.mkdtemp(prefix="labyard-test-cluster-"))
    (made / "regions.yaml").write_text(REGIONS)
    yield made
    shutil.rmtree(made, ignore_errors=True)


@pytest.fixture(scope="module")
async def labyard(cluster: lxd_cluster.Cluster, data_dir: Path) -> AsyncIterator[Labyard]:
    instance = Labyard(settings_for(cluster, data_dir))
    yield instance
    await dismantle(instance)


async def location(labyard: Labyard, playground: Playground) -> str:
    name = f"ly-{playground.id}-{playground.machines[0].name}"
    found = await labyard.driver.lxd.get(f"/1.0/instances/{name}")  # type: ignore[attr-defined]
    return str(found["location"])


async def answers(labyard: Labyard, playground: Playground) -> str:
    async with await labyard.playgrounds.connect(playground.id) as connection:
        return (await connection.run("hostname")).stdout.strip()


async def test_a_learner_runs_in_the_region_of_their_country(labyard: Labyard) -> None:
    india = await labyard.playgrounds.start(MANIFEST, launch=Launch(country="IN"))
    europe = await labyard.playgrounds.start(MANIFEST, launch=Launch(country="BR"))
    assert await location(labyard, india) == "m2" and india.notice == ""
    assert await location(labyard, europe) == "m1" and europe.notice == ""
    assert await answers(labyard, india) == "one" and await answers(labyard, europe) == "one"
    for playground in (india, europe):
        await labyard.playgrounds.destroy(playground.id)


async def test_a_region_with_no_server_up_runs_elsewhere_with_a_notice(labyard: Labyard) -> None:
    playground = await labyard.playgrounds.start(MANIFEST, launch=Launch(country="FR"))
    try:
        there = {"m1": "Europe", "m2": "India"}[await location(labyard, playground)]
        assert f"region Mars are full or unreachable, so this playground runs in {there}" in (
            playground.notice
        )
        assert playground.to_json()["notice"] == playground.notice
        assert await answers(labyard, playground) == "one"
    finally:
        await labyard.playgrounds.destroy(playground.id)


async def test_the_operator_sees_members_and_regions(
    labyard: Labyard, cluster: lxd_cluster.Cluster, data_dir: Path
) -> None:
    members = {m.name: m for m in await labyard.cluster.members()}
    assert set(members) == {"m1", "m2"}
    assert members["m1"].regions == ["europe"] and members["m2"].regions == ["india"]
    assert all(m.state == "online" and (m.memory_free or 0) > 0 for m in members.values())
    regions = {r.name: r for r in await labyard.cluster.regions_now()}
    assert regions["mars"].state == "down" and regions["india"].members == ["m2"]
    shown = cli(cluster, data_dir, "cluster", "members", "--json")
    assert shown.returncode == 0, shown.stderr
    assert {m["name"]: m["regions"] for m in json.loads(shown.stdout)} == {
        "m1": ["europe"],
        "m2": ["india"],
    }
    missing = cli(cluster, data_dir, "cluster", "evacuate", "m9")
    assert (missing.returncode, missing.stderr.strip()) == (3, "labyard: no cluster member 'm9'")


def cli(
    cluster: lxd_cluster.Cluster, data_dir: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """The real `labyard` command, on this module's instance."""
    env = {
        **os.environ,
        "LABYARD_DATA_DIR": str(data_dir),
        "LABYARD_IMAGES_DIR": str(IMAGES_DIR),
        "LABYARD_DRIVER": "lxd",
        "LABYARD_LXD_URL": cluster.member("m1").url,
        "LABYARD_LXD_PROJECT": "cluster",
        "LABYARD_LXD_POOL": lxd_cluster.POOL,
    }
    return subprocess.run(
        [str(REPO / ".venv/bin/labyard"), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


async def test_a_restarted_control_plane_adopts_playgrounds_on_every_member(
    labyard: Labyard, cluster: lxd_cluster.Cluster, data_dir: Path
) -> None:
    india = await labyard.playgrounds.start(MANIFEST, launch=Launch(country="IN"))
    europe = await labyard.playgrounds.start(MANIFEST, launch=Launch(country="DE"))
    fresh = Labyard(settings_for(cluster, data_dir))  # nothing carried over in memory
    try:
        for playground in (india, europe):
            assert (await fresh.playgrounds.get(playground.id)).state == "running"
            assert await answers(fresh, playground) == "one"
    finally:
        fresh.close()
    for playground in (india, europe):
        await labyard.playgrounds.destroy(playground.id)


async def test_a_lost_member_fails_its_playgrounds_and_starts_go_elsewhere(
    labyard: Labyard, cluster: lxd_cluster.Cluster
) -> None:
    lost = await labyard.playgrounds.start(MANIFEST, launch=Launch(country="IN"))
    kept = await labyard.playgrounds.start(MANIFEST, launch=Launch(country="DE"))
    assert await location(labyard, lost) == "m2"
    cluster.kill("m2")
    try:
        killed = time.monotonic()
        status = await labyard.driver.status(lost.id)
        seen_failed = time.monotonic() - killed
        assert status["one"].state == MachineState.FAILED, status
        assert "unreachable" in status["one"].reason, status
        assert seen_failed < 5, seen_failed
        await reconcile(labyard.playgrounds)
        assert (await labyard.playgrounds.get(lost.id)).state == "failed"
        assert (await labyard.playgrounds.get(kept.id)).state == "running"  # the control
        began = time.monotonic()
        elsewhere = await labyard.playgrounds.start(MANIFEST, launch=Launch(country="IN"))
        assert time.monotonic() - began < 30
        assert await location(labyard, elsewhere) == "m1"
        assert "region India" in elsewhere.notice
        assert await answers(labyard, elsewhere) == "one"
        await labyard.playgrounds.destroy(elsewhere.id)
    finally:
        cluster.restart("m2")
    await labyard.playgrounds.destroy(lost.id)
    await labyard.playgrounds.destroy(kept.id)


async def test_a_member_lost_mid_class_fails_its_learners_playgrounds_and_they_start_anew(
    labyard: Labyard, cluster: lxd_cluster.Cluster
) -> None:
    """A class pinned to India (m2) is under way when m2's daemon is killed: the learner's
    class playground turns `failed` with the sentence they read, its usage session ends
    once, and starting the class's content again replaces the wreck with a playground on
    m1 that answers. The control: a learner of a class pinned to Europe runs on, on m1."""

    def person(role: str = "learner") -> User:
        email = f"{role}-{secrets.token_hex(4)}@example.org"
        return labyard.accounts.create_user(email, "correct horse battery", role)

    teacher = person("instructor")
    at = datetime.now(UTC)
    window = {"starts_at": at - timedelta(minutes=1), "ends_at": at + timedelta(hours=1)}
    india = labyard.classes.create(
        teacher, ClassSpec(title="Mumbai", content=["linux"], seats=2, region="india", **window)
    )
    europe = labyard.classes.create(
        teacher, ClassSpec(title="Berlin", content=["linux"], seats=2, region="europe", **window)
    )
    ada, bob = person(), person()
    labyard.classes.join(ada, india.join_code)
    labyard.classes.join(bob, europe.join_code)

    async def start(learner: User, class_id: str) -> Playground:
        got = await labyard.class_room.start(learner, class_id, "linux")
        assert isinstance(got, Started), got  # not queued: the class has seats and no pool
        return got.playground

    lost, kept = await start(ada, india.id), await start(bob, europe.id)
    try:
        assert await location(labyard, lost) == "m2" and await location(labyard, kept) == "m1"
        cluster.kill("m2")
        try:
            await reconcile(labyard.playgrounds)
            failed = await labyard.playgrounds.get(lost.id)
            assert failed.state == "failed", failed
            reason = (await labyard.driver.status(lost.id))[lost.machines[0].name].reason
            assert "the server holding machine" in reason and "unreachable" in reason, reason
            assert (await labyard.playgrounds.get(kept.id)).state == "running"  # the control
            with labyard.db.session() as session:
                sessions = session.scalars(
                    select(UsageSessionRow).where(UsageSessionRow.playground_id == lost.id)
                ).all()
            ended = [(s.end_reason, s.ended_at is not None) for s in sessions]
            assert ended == [(EndReason.CRASHED, True)], ended  # one session, closed once

            began = time.monotonic()
            anew = await start(ada, india.id)
            assert time.monotonic() - began < 60
            assert anew.id != lost.id and await location(labyard, anew) == "m1"
            assert await answers(labyard, anew)
            with pytest.raises(NotFound):
                await labyard.playgrounds.get(lost.id)
        finally:
            cluster.restart("m2")
        await reconcile(labyard.playgrounds)  # the wreck's machine, back with m2, goes
        names = await labyard.driver.lxd.get("/1.0/instances")  # type: ignore[attr-defined]
        assert not [n for n in names if lost.id in n], names
    finally:
        for cls in (india, europe):
            await labyard.class_room.end(teacher, cls.id)


async def test_draining_a_member_stops_its_playgrounds_and_starts_go_elsewhere(
    labyard: Labyard,
) -> None:
    running = await labyard.playgrounds.start(MANIFEST, launch=Launch(country="IN"))
    assert await location(labyard, running) == "m2"
    async with await labyard.playgrounds.connect(running.id) as connection:
        assert (await connection.run("echo kept > /root/note && sync")).exit_code == 0
    drained = await labyard.cluster.evacuate("m2")
    try:
        assert [(d.playground_id, d.was) for d in drained] == [(running.id, "running")]
        assert (await labyard.playgrounds.get(running.id)).state == "stopped"
        states = {m.name: m.state for m in await labyard.cluster.members()}
        assert states == {"m1": "online", "m2": "evacuated"}
        with pytest.raises(Conflict, match=r"\(m2\) is drained"):
            await labyard.playgrounds.restart(running.id)
        again = await labyard.playgrounds.start(MANIFEST, launch=Launch(country="IN"))
        assert await location(labyard, again) == "m1" and "region India" in again.notice
        await labyard.playgrounds.destroy(again.id)
    finally:
        await labyard.cluster.restore("m2")
    restarted = await labyard.playgrounds.restart(running.id)  # back on m2, disk and all
    assert restarted.state == "running" and await location(labyard, running) == "m2"
    async with await labyard.playgrounds.connect(running.id) as connection:
        assert (await connection.run("cat /root/note")).stdout == "kept\n"
    await labyard.playgrounds.destroy(running.id)
    assert {m.state for m in await labyard.cluster.members()} == {"online"}


async def test_the_operators_page_shows_members_regions_and_states(labyard: Labyard) -> None:
    """/admin/cluster and GET /api/admin/cluster on this cluster: both members with their
    regions (by title), state and memory, every region up or down; Drain and Restore
    through the page's forms (m2 holds no playground by now)."""
    import re
    import secrets

    import httpx

    from labyard.api.app import create_app

    password = "a long enough password"
    admin = labyard.accounts.create_user(
        f"admin-{secrets.token_hex(4)}@example.org", password, role="admin"
    )
    transport = httpx.ASGITransport(app=create_app(labyard, reconcile_interval_s=None))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        signed_in = await client.post(
            "/api/login", json={"email": admin.email, "password": password}
        )
        assert signed_in.status_code == 200, signed_in.text

        def member_row(page: httpx.Response, name: str) -> str:
            found = re.search(rf'<tr id="member-{name}".*?</tr>', page.text, re.S)
            assert found, page.text
            return " ".join(found.group(0).split())

        page = await client.get("/admin/cluster")
        assert page.status_code == 200, page.text
        assert "runs every playground itself" not in page.text
        for name, region in (("m1", "Europe"), ("m2", "India")):
            row = member_row(page, name)
            assert f"<td>{region}</td>" in row and 'member-online">online<' in row, row
            assert " GiB" in row and f'action="/admin/cluster/{name}/evacuate"' in row, row
        regions = re.findall(r'<tr id="region-(\w+)">.*?region-(up|down)', page.text, re.S)
        assert dict(regions) == {"europe": "up", "india": "up", "mars": "down"}

        data = (await client.get("/api/admin/cluster")).json()
        assert (data["driver"], data["clustered"]) == ("lxd", True)
        assert {m["name"]: (m["regions"], m["state"]) for m in data["members"]} == {
            "m1": (["europe"], "online"),
            "m2": (["india"], "online"),
        }

        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        form = {"csrf": csrf.group(1), "confirm": "yes"}
        try:
            drained = await client.post("/admin/cluster/m2/evacuate", data=form)
            assert drained.status_code == 200, drained.text
            assert "m2 is drained" in drained.text
            row = member_row(drained, "m2")
            assert 'member-evacuated">evacuated<' in row and "/admin/cluster/m2/restore" in row
        finally:
            restored = await client.post("/admin/cluster/m2/restore", data=form)
        assert restored.status_code == 303, restored.text
    assert {m.state for m in await labyard.cluster.members()} == {"online"}
