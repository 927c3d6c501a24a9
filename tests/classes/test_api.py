"""Classes over the JSON API with real playgrounds (the local driver) and the tiny content
folder of tests/api/fixtures/learn: an instructor creates a class, a learner over their
plan's limit joins by code and starts a challenge on the class's seats, solves it in the
real machine, and the board shows it within 2 s; the exports, who may see what, the end
(every machine gone, results kept) and a guest who can start nothing else."""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from labyard.api.app import create_app
from labyard.services import Labyard
from labyard.services.class_starts import pool_key
from labyard.settings import Settings
from labyard.types import LaunchedBy
from tests.api.learn_server import FIXTURE
from tests.api.test_authz import Account, api, make_account
from tests.conftest import IMAGES_DIR, dismantle

CHALLENGE = "challenges/touch-done"


@pytest.fixture(scope="module")
async def labyard() -> AsyncIterator[Labyard]:
    data_dir = Path(tempfile.mkdtemp(prefix="labyard-classes-"))
    settings = Settings(
        data_dir=data_dir, images_dir=IMAGES_DIR, database_url=f"sqlite:///{data_dir}/labyard.db"
    )
    instance = Labyard(settings, content_dir=FIXTURE)
    yield instance
    await instance.attempts.shutdown()
    await dismantle(instance)
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def app(labyard: Labyard) -> FastAPI:
    return create_app(labyard, reconcile_interval_s=None)


def class_body(**changes: Any) -> dict[str, Any]:
    at = datetime.now(UTC)
    return {
        "title": "Workshop",
        "content": [CHALLENGE, "linux"],
        "seats": 3,
        "starts_at": (at - timedelta(minutes=1)).isoformat(),
        "ends_at": (at + timedelta(hours=2)).isoformat(),
        "guests": True,
        **changes,
    }


async def board_cell(client: httpx.AsyncClient, class_id: str, account_id: int) -> dict[str, Any]:
    board = (await client.get(f"/api/classes/{class_id}/board")).json()
    (learner,) = [x for x in board["learners"] if x["account_id"] == account_id]
    cell: dict[str, Any] = learner["cells"][f"{CHALLENGE}#done"]
    return {**cell, "share": board["share_done"][f"{CHALLENGE}#done"]}


async def test_a_class_from_creation_to_export(app: FastAPI, labyard: Labyard) -> None:
    teacher = make_account(labyard, role="instructor")
    learner, other = make_account(labyard), make_account(labyard)
    async with api(app, teacher.token) as t, api(app, learner.token) as m:
        refused = await m.post("/api/classes", json=class_body())
        assert refused.status_code == 403, refused.text
        made = await t.post("/api/classes", json=class_body())
        assert made.status_code == 201, made.text
        cls = made.json()
        assert {"id", "join_code", "join_url"} <= set(cls)
        assert cls["join_url"].endswith(f"/classes/join/{cls['join_code']}")
        class_id = cls["id"]

        # The learner's free plan runs one playground: it is busy with their own.
        own = await m.post("/api/playgrounds", json={"name": "linux"})
        assert own.status_code == 201, own.text
        joined = await m.post("/api/classes/join", json={"code": cls["join_code"].lower()})
        assert joined.status_code == 200, joined.text
        assert joined.json()["me"]["account_id"] == learner.user.id
        assert "members" not in joined.json()

        started = await m.post(f"/api/classes/{class_id}/playground", json={"content": CHALLENGE})
        assert started.status_code == 201, started.text
        playground = started.json()
        assert playground["attempt"]["content"] == CHALLENGE
        assert playground["page"] == f"/{CHALLENGE}"
        polled = await m.get(f"/api/classes/{class_id}/playground")
        assert polled.status_code == 200 and polled.json()["id"] == playground["id"]

        before = await board_cell(t, class_id, learner.user.id)
        assert before["completed_at"] is None and before["share"] == 0
        # A near miss shows the task's hint; reading the results notes it as seen.
        near = await m.post(
            f"/api/playgrounds/{playground['id']}/exec", json={"command": "touch /tmp/don"}
        )
        assert near.status_code == 200, near.text
        deadline = time.monotonic() + 10.0
        while (await t.get(f"/api/classes/{class_id}/results")).json()["learners"][0][
            "hints_seen"
        ] != 1:
            assert time.monotonic() < deadline, "the hint was never seen"
            await asyncio.sleep(0.2)  # polling a condition under a deadline
        solved = await m.post(
            f"/api/playgrounds/{playground['id']}/exec", json={"command": "touch /tmp/done"}
        )
        assert solved.status_code == 200, solved.text
        deadline = time.monotonic() + 2.0
        while (cell := await board_cell(t, class_id, learner.user.id))["completed_at"] is None:
            assert time.monotonic() < deadline, f"the board did not show it within 2 s: {cell}"
            await asyncio.sleep(0.1)  # polling a condition under a deadline
        assert cell["share"] == 1.0

        results = (await t.get(f"/api/classes/{class_id}/results")).json()
        (row,) = results["learners"]
        assert row["learner"] == learner.email and row["attempts"] == 1
        assert row["hints_seen"] == 1  # kept after the task completed and its hint cleared
        assert row["tasks"][f"{CHALLENGE}#done"] == cell["completed_at"]
        exported = await t.get(f"/api/classes/{class_id}/results.csv")
        assert exported.headers["content-type"].startswith("text/csv")
        (line,) = list(csv.DictReader(io.StringIO(exported.text)))
        assert line["learner"] == learner.email and line[f"{CHALLENGE}#done"]
        assert set(line) >= {"attempts", "hints_seen", "active_s"}

        sessions = labyard.usage.sessions(account_id=learner.user.id)
        assert [s.launched_by for s in sessions if s.playground_id == playground["id"]] == [
            LaunchedBy.CLASS
        ]

        # A learner never sees another's results; a member gets 403 for the instructor's.
        async with api(app, other.token) as o:
            for path in ("", "/board", "/results", "/results.csv", "/playground"):
                r = await o.get(f"/api/classes/{class_id}{path}")
                assert r.status_code == 404, (path, r.text)
        for path in ("/board", "/results", "/results.csv"):
            r = await m.get(f"/api/classes/{class_id}{path}")
            assert r.status_code == 403, (path, r.text)

        ended = await t.post(f"/api/classes/{class_id}/end")
        assert ended.status_code == 200 and ended.json()["state"] == "ended"
        live = [p.id for p in await labyard.playgrounds.list()]
        assert playground["id"] not in live and own.json()["id"] in live
        again = await m.post(f"/api/classes/{class_id}/playground", json={"content": CHALLENGE})
        assert again.status_code == 409 and "has ended" in again.text
        kept = (await t.get(f"/api/classes/{class_id}/results")).json()
        assert kept["learners"][0]["tasks"] == row["tasks"]
        await m.delete(f"/api/playgrounds/{own.json()['id']}")


async def test_a_guest_joins_with_a_name_and_can_start_nothing_else(
    app: FastAPI, labyard: Labyard
) -> None:
    teacher: Account = make_account(labyard, role="instructor")
    async with api(app, teacher.token) as t:
        cls = (await t.post("/api/classes", json=class_body())).json()
        closed = (await t.post("/api/classes", json=class_body(guests=False))).json()
    async with api(app, address="192.0.2.40") as browser:
        no = await browser.post(
            "/api/classes/join/guest", json={"code": closed["join_code"], "name": "Ada"}
        )
        assert no.status_code == 403, no.text
        joined = await browser.post(
            "/api/classes/join/guest", json={"code": cls["join_code"], "name": "Ada"}
        )
        assert joined.status_code == 200, joined.text
        assert joined.json()["me"] == {**joined.json()["me"], "display_name": "Ada", "guest": True}
        assert browser.cookies.get("labyard_session")
        csrf = {"X-CSRF-Token": browser.cookies.get("labyard_csrf") or ""}
        if not csrf["X-CSRF-Token"]:
            await browser.get(f"/classes/{cls['id']}")  # a page sets the CSRF cookie
            csrf = {"X-CSRF-Token": browser.cookies.get("labyard_csrf") or ""}
        me = (await browser.get("/api/me")).json()
        assert me["role"] == "guest"
        free_play = await browser.post("/api/playgrounds", json={"name": "linux"}, headers=csrf)
        assert free_play.status_code == 403, free_play.text
        # The class's warm pool (services/pools.py) holds one: the start claims it.
        await labyard.pools.warm(pool_key(cls["id"], "linux"), 1)
        warm = {p.id for p in await labyard.playgrounds.list() if p.owner.startswith("pool:")}
        assert len(warm) == 1
        start = await browser.post(
            f"/api/classes/{cls['id']}/playground", json={"content": "linux"}, headers=csrf
        )
        assert start.status_code == 201, start.text
        assert start.json()["id"] in warm and start.json()["owner"] == f"user:{me['id']}"
        assert start.json()["page"] == f"/playgrounds/{start.json()['id']}"
    async with api(app, teacher.token) as t:
        board = (await t.get(f"/api/classes/{cls['id']}/board")).json()
        assert [(x["name"], x["guest"]) for x in board["learners"]] == [("Ada", True)]
        deleted = await t.delete(f"/api/classes/{cls['id']}")
        assert deleted.status_code == 204, deleted.text
        assert (await t.get(f"/api/classes/{cls['id']}")).status_code == 404
    assert start.json()["id"] not in [p.id for p in await labyard.playgrounds.list()]
    with pytest.raises(Exception, match="no user"):
        labyard.accounts.get(me["id"])
