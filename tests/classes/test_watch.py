"""Looking over a learner's shoulder with a real server (uvicorn), a real class playground
(the local driver) and the real WebSockets: the instructor's view shows the learner's
screen, and keystrokes and resizes sent through it reach nothing (the same keystrokes
through the learner's own terminal do); the view follows the learner's window size; the
learner's banner comes and goes within 2 s; input flows only while granted, and the grant
ends on revoke and when the view closes; every look is logged."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from labyard.api.app import create_app
from labyard.services import Labyard
from labyard.settings import Settings
from tests.api.test_authz import Account, api, make_account
from tests.api.test_terminal import ANSI, Screen
from tests.conftest import IMAGES_DIR, dismantle

BANNER_S = 2.0
DEADLINE_S = 20.0
KEYS = b"touch /tmp/typed; echo typed-$((2*3))\r"
"""What both sides type: a marker file and an echo only a shell turns into `typed-6`."""


@pytest.fixture(scope="module")
async def labyard() -> AsyncIterator[Labyard]:
    data_dir = Path(tempfile.mkdtemp(prefix="labyard-looks-"))
    settings = Settings(
        data_dir=data_dir, images_dir=IMAGES_DIR, database_url=f"sqlite:///{data_dir}/labyard.db"
    )
    instance = Labyard(settings)
    yield instance
    await instance.attempts.shutdown()
    await dismantle(instance)
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
async def base(labyard: Labyard) -> AsyncIterator[tuple[FastAPI, str]]:
    """The app, and the `ws://127.0.0.1:PORT` it also answers on through real uvicorn."""
    app = create_app(labyard, reconcile_interval_s=None)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", ws_ping_interval=None)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(15):
            while not server.started:
                assert not task.done(), "uvicorn stopped while starting"
                await asyncio.sleep(0.02)  # polling a condition under a deadline
        yield app, f"ws://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(15):
            await task
        sock.close()


def class_body() -> dict[str, Any]:
    at = datetime.now(UTC)
    return {
        "title": "Shell workshop",
        "content": ["linux"],
        "seats": 3,
        "starts_at": (at - timedelta(minutes=1)).isoformat(),
        "ends_at": (at + timedelta(hours=1)).isoformat(),
        "guests": False,
    }


async def socket_of(url: str, account: Account) -> ClientConnection:
    return await connect(url, additional_headers={"Authorization": f"Bearer {account.token}"})


async def message(screen: Screen, wanted: Callable[[dict[str, Any]], bool], within: float) -> Any:
    """The first control message `wanted` accepts (seen already, or arriving in time)."""
    try:
        async with asyncio.timeout(within):
            while True:
                for found in screen.messages:
                    if wanted(found):
                        screen.messages.remove(found)
                        return found
                await screen.receive()
    except TimeoutError:
        pytest.fail(f"no such message within {within} s; got {screen.messages}")


async def refused(url: str, account: Account | None) -> int:
    """The close code a refused socket ends with."""
    headers = {"Authorization": f"Bearer {account.token}"} if account else {}
    async with connect(url, additional_headers=headers) as ws:
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(DEADLINE_S):
                while True:
                    await ws.recv()
    assert ws.close_code is not None
    return ws.close_code


async def run(client: httpx.AsyncClient, playground_id: str, command: str) -> str:
    r = await client.post(f"/api/playgrounds/{playground_id}/exec", json={"command": command})
    assert r.status_code == 200, r.text
    out: str = r.json()["stdout"]
    return out


async def eventually(check: Callable[[], Any], within: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.1)  # polling a condition under a deadline


async def test_the_view_is_read_only_the_grant_lets_the_watcher_type_and_looks_are_logged(
    labyard: Labyard, base: tuple[FastAPI, str]
) -> None:
    app, ws_base = base
    teacher = make_account(labyard, role="instructor")
    learner, other = make_account(labyard), make_account(labyard)
    async with api(app, teacher.token) as t, api(app, learner.token) as m:
        cls = (await t.post("/api/classes", json=class_body())).json()
        class_id = cls["id"]
        for who in (learner, other):
            async with api(app, who.token) as client:
                joined = await client.post("/api/classes/join", json={"code": cls["join_code"]})
                assert joined.status_code == 200, joined.text
        started = await m.post(f"/api/classes/{class_id}/playground", json={"content": "linux"})
        assert started.status_code == 201, started.text
        playground_id = started.json()["id"]
        machine = started.json()["machines"][0]["name"]
        terminal_url = (
            f"{ws_base}/api/playgrounds/{playground_id}/machines/{machine}/terminal"
            "?cols=100&rows=30"
        )
        watch_url = f"{ws_base}/api/classes/{class_id}/members/{learner.user.id}/watch"
        size = "tmux -L labyard display -p -t =main: '#{window_width}x#{window_height}'"
        pane = "tmux -L labyard capture-pane -p -J -S - -t =main:"

        own = Screen(await socket_of(terminal_url, learner))
        await own.until(r"root@\S+:~# ")
        await own.run("echo learner-$((6*7))", r"learner-42")

        # The view shows the learner's screen at the learner's size; the banner comes.
        view = Screen(await socket_of(watch_url, teacher))
        look = await message(view, lambda x: x["type"] == "look", DEADLINE_S)
        assert (look["cols"], look["rows"]) == (100, 30)
        assert (look["learner_id"], look["playground_id"]) == (learner.user.id, playground_id)
        await view.until(r"learner-42")
        shown = time.monotonic()
        banner = await message(own, lambda x: x["type"] == "looks" and x["looks"], BANNER_S)
        assert time.monotonic() - shown <= BANNER_S
        (seen,) = banner["looks"]
        assert (seen["watcher"], seen["typing"], seen["id"]) == (teacher.email, False, look["id"])

        # Keystrokes (binary and text frames) and resizes through the view reach nothing.
        await view.ws.send(KEYS)
        await view.ws.send(KEYS.decode())
        await view.ws.send(json.dumps({"type": "resize", "cols": 40, "rows": 10}))
        await view.ws.send(b"\x03\x04exit\r")
        await own.run("echo sync-$((3+4))", r"sync-7")  # the shell has read all it got
        assert (await run(m, playground_id, "test -e /tmp/typed; echo $?")).strip() == "1"
        assert "typed" not in await run(m, playground_id, pane)
        assert "typed-6" not in ANSI.sub("", own.text)
        assert (await run(m, playground_id, size)).strip() == "100x30"
        # The control: the same keystrokes through the learner's own terminal do reach it.
        mark = len(view.text)
        await own.ws.send(KEYS)
        await own.until(r"typed-6")
        await view.until(r"typed-6", since=mark)  # ... and the view shows them
        assert (await run(m, playground_id, "test -e /tmp/typed; echo $?")).strip() == "0"
        await run(m, playground_id, "rm /tmp/typed")

        # The learner resizes their window: the view follows (the watcher's never counts).
        await own.ws.send(json.dumps({"type": "resize", "cols": 120, "rows": 35}))
        resized = await message(view, lambda x: x["type"] == "size", DEADLINE_S)
        assert (resized["cols"], resized["rows"]) == (120, 35)

        # Nobody but the learner watched grants input; the watcher cannot type until then.
        grant = f"/api/classes/{class_id}/looks/{look['id']}/grant"
        input_url = f"{ws_base}/api/classes/{class_id}/looks/{look['id']}/input"
        assert await refused(input_url, teacher) == 4403
        assert await refused(input_url, learner) == 4404
        assert (await t.post(grant)).status_code == 404
        async with api(app, other.token) as o:
            assert (await o.post(grant)).status_code == 404
        granted = await m.post(grant)
        assert granted.status_code == 200 and granted.json()["typing"] is True, granted.text
        assert (await message(view, lambda x: x["type"] == "input", BANNER_S))["granted"]
        typing = await message(own, lambda x: x["type"] == "looks", BANNER_S)
        assert typing["looks"][0]["typing"] is True

        keyboard = await socket_of(input_url, teacher)
        await keyboard.send(b"touch /tmp/granted\r")
        await eventually(
            lambda: _exists(m, playground_id, "/tmp/granted"),
        )
        assert (await run(m, playground_id, size)).strip() == "120x35"

        # Revoked: the input channel closes and cannot be reopened.
        assert (await m.delete(grant)).json()["typing"] is False
        assert not (await message(view, lambda x: x["type"] == "input", BANNER_S))["granted"]
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(DEADLINE_S):
                while True:
                    await keyboard.recv()
        assert keyboard.close_code == 4403
        assert await refused(input_url, teacher) == 4403

        # Granted again, then the view closes: the grant ends with it, and the banner goes.
        assert (await m.post(grant)).status_code == 200
        await message(view, lambda x: x["type"] == "input" and x["granted"], BANNER_S)
        keyboard = await socket_of(input_url, teacher)
        await view.ws.close()
        closed = time.monotonic()
        await message(own, lambda x: x["type"] == "looks" and not x["looks"], BANNER_S)
        assert time.monotonic() - closed <= BANNER_S
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(DEADLINE_S):
                while True:
                    await keyboard.recv()
        assert keyboard.close_code == 4403
        assert await refused(input_url, teacher) == 4404  # the look is over
        assert (await m.post(grant)).status_code == 404

        # The log: who watched whom, where, from when to when, input granted.
        (logged,) = (await t.get(f"/api/classes/{class_id}/looks")).json()
        assert logged["watcher"] == teacher.email and logged["learner_id"] == learner.user.id
        assert (logged["playground_id"], logged["machine"], logged["tab"]) == (
            playground_id,
            machine,
            "main",
        )
        assert logged["input_granted"] is True and logged["live"] is False
        assert logged["started_at"] < logged["ended_at"]
        assert [x["id"] for x in (await m.get(f"/api/classes/{class_id}/looks")).json()] == [
            look["id"]
        ]
        async with api(app, other.token) as o:
            assert (await o.get(f"/api/classes/{class_id}/looks")).json() == []
        page = await t.get(f"/classes/{class_id}/watch/{learner.user.id}")
        assert page.status_code == 200 and teacher.email in page.text

        # Who may not watch: the other learner, the learner, a stranger, nobody.
        stranger = make_account(labyard, role="instructor")
        assert await refused(watch_url, other) == 4403
        assert await refused(watch_url, learner) == 4403
        assert await refused(watch_url, stranger) == 4404
        assert await refused(watch_url, None) == 4401
        assert len((await t.get(f"/api/classes/{class_id}/looks")).json()) == 1
        await own.ws.close()
        await keyboard.close()
        assert (await t.delete(f"/api/classes/{class_id}")).status_code == 204


async def _exists(client: httpx.AsyncClient, playground_id: str, path: str) -> bool:
    out = await run(client, playground_id, f"test -e {path}; echo $?")
    return out.strip() == "0"


def test_the_watch_page_script_never_writes_to_the_view_socket() -> None:
    """The page's only `send` on the view socket is the ack (flow control)."""
    script = (Path(__file__).parents[2] / "labyard/api/static/watch.js").read_text()
    sends = re.findall(r"(\w+)\.send\(", script)
    assert sorted(set(sends)) == ["keys", "socket"]
    assert re.findall(r"socket\.send\((.*)\);", script) == [
        'JSON.stringify({ type: "ack", bytes: unacked })'
    ]
