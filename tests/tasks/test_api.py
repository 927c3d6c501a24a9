"""The attempts API over HTTP: start, answer, progress, ownership, and the SSE stream
(through a live uvicorn server, since an SSE stream never ends on its own)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from labyard.api.app import create_app
from labyard.services import Labyard
from labyard.settings import Settings
from labyard.types import AttemptState, TaskState
from tests.tasks.conftest import eventually, write_challenge

ANSWER = """
kind: challenge
title: Six times seven
playground: linux
tasks:
  answer:
    env: ["ANSWER=x(.input)"]
    run: '[ "$ANSWER" = 42 ] && [ "$(cat /tmp/answers/q1)" = 42 ]'
  touch:
    run: test -f /tmp/touched
"""
ANSWER_BODY = """
::user-input-task
---
:tasks: tasks
:name: answer
:validateRegex: ^[0-9]+$
:destination: /tmp/answers/q1
---
#active
What is 6 x 7?
#completed
Right.
::
"""


@dataclass
class Api:
    labyard: Labyard
    url: str
    tokens: dict[str, str]

    def client(self, who: str) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=120)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def api(settings: Settings, tmp_path: Path) -> AsyncIterator[Api]:
    write_challenge(tmp_path, "answer", ANSWER, ANSWER_BODY)
    labyard = Labyard(settings, content_dir=tmp_path)
    tokens = {}
    for who in ("alice", "bob"):
        email = f"{who}-{tmp_path.name}@example.com".lower()
        user = labyard.accounts.create_user(email, "a long password", plan="premium")
        tokens[who] = labyard.accounts.issue(user, "api")
    port = _free_port()
    config = uvicorn.Config(
        create_app(labyard, reconcile_interval_s=None),
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, 10, "uvicorn started")
    try:
        yield Api(labyard, f"http://127.0.0.1:{port}", tokens)
    finally:
        server.should_exit = True
        await serving
        for record in labyard.attempts.store.list(state=AttemptState.ACTIVE):
            await labyard.attempts.end(record.id)
        for record in labyard.attempts.store.list():
            if record.playground_id and record.owner.startswith("user:"):
                with contextlib.suppress(Exception):
                    await labyard.playgrounds.destroy(record.playground_id)
        labyard.close()


async def _task(client: httpx.AsyncClient, attempt_id: str, task: str) -> dict[str, Any]:
    response = await client.get(f"/api/attempts/{attempt_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = {t["name"]: t for t in response.json()["tasks"]}[task]
    return found


async def test_answers_progress_and_ownership(api: Api) -> None:
    async with api.client("alice") as alice, api.client("bob") as bob:
        started = await alice.post("/api/attempts", json={"content": "challenges/answer"})
        assert started.status_code == 201, started.text
        attempt = started.json()
        attempt_id = attempt["id"]
        assert {t["name"]: t["state"] for t in attempt["tasks"]} == {
            "answer": "running",
            "touch": "running",
        }
        again = await alice.post("/api/attempts", json={"content": "challenges/answer"})
        assert again.status_code == 200 and again.json()["id"] == attempt_id
        assert [a["id"] for a in (await alice.get("/api/attempts")).json()] == [attempt_id]

        for method, path in [
            ("GET", f"/api/attempts/{attempt_id}"),
            ("GET", f"/api/attempts/{attempt_id}/events"),
            ("POST", f"/api/attempts/{attempt_id}/tasks/answer/input"),
            ("DELETE", f"/api/attempts/{attempt_id}"),
        ]:
            response = await bob.request(method, path, json={"value": "42"})
            assert response.status_code == 404, (method, path, response.text)
        assert (await bob.get("/api/attempts")).json() == []

        url = f"/api/attempts/{attempt_id}/tasks/answer/input"
        bad = await alice.post(url, json={"value": "forty-two"})
        assert bad.status_code == 422 and "must match" in bad.json()["error"]["message"]
        assert (await alice.post(url, json={"value": "41"})).status_code == 200
        checker = api.labyard.attempts.checker(attempt_id)
        assert checker is not None
        await checker.wait_ticks(checker.stats.ticks + 2, 10)
        assert (await _task(alice, attempt_id, "answer"))["state"] == TaskState.RUNNING

        answered = time.monotonic()
        assert (await alice.post(url, json={"value": "42"})).status_code == 200
        await eventually(
            lambda: _completed(alice, attempt_id, "answer"), 3, "the answer is checked at once"
        )
        assert time.monotonic() - answered < 3
        progress = (await alice.get("/api/progress")).json()
        assert [(p["content"], p["state"]) for p in progress] == [
            ("challenges/answer", "attempted")
        ]

        ended = await alice.delete(f"/api/attempts/{attempt_id}")
        assert ended.status_code == 200 and ended.json()["state"] == AttemptState.ENDED
        playgrounds = (await alice.get("/api/playgrounds")).json()
        assert attempt["playground_id"] not in [p["id"] for p in playgrounds]


async def _completed(client: httpx.AsyncClient, attempt_id: str, task: str) -> bool:
    return (await _task(client, attempt_id, task))["state"] == TaskState.COMPLETED


async def _events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Parsed SSE events: `event:` and `data:` lines up to a blank line."""
    kind, data = "", ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = line.removeprefix("data: ")
        elif not line and data:
            event = json.loads(data)
            assert event["type"] == kind
            yield event
            kind, data = "", ""


async def test_event_stream_shows_a_change(api: Api) -> None:
    async with api.client("alice") as alice:
        started = await alice.post("/api/attempts", json={"content": "challenges/answer"})
        attempt = started.json()
        events_url = f"/api/attempts/{attempt['id']}/events"
        async with alice.stream("GET", events_url) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            stream = _events(response)
            first = await anext(stream)
            assert first["type"] == "state" and first["attempt"]["id"] == attempt["id"]
            playground_id = attempt["playground_id"]
            touch = await alice.post(
                f"/api/playgrounds/{playground_id}/exec", json={"command": "touch /tmp/touched"}
            )
            assert touch.json()["exit_code"] == 0
            touched = time.monotonic()
            async with asyncio.timeout(5):
                async for event in stream:
                    if event["type"] == "task" and event["task"]["name"] == "touch":
                        assert event["task"]["state"] == TaskState.COMPLETED
                        break
            assert time.monotonic() - touched < 3
        await alice.delete(f"/api/attempts/{attempt['id']}")
