"""The learning pages against a real server and the fixture content: catalogue filters, an
item page with its task widgets, escaping, the solution gate, progress, and nobody seeing
anyone else's attempt."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.conftest import Account, Server
from tests.api.learn_server import learn_server, wait_for_state

TOUCH = "challenges/touch-done"
SOLUTION_TEXT = "it creates the file"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with learn_server() as found:
        yield found


@pytest.fixture
def visitor(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture(scope="module")
def learner(server: Server) -> Iterator[tuple[Account, dict[str, Any]]]:
    """A learner with an active attempt at the touch-done challenge."""
    account = server.signup()
    response = account.api("POST", "/api/attempts", json={"content": TOUCH}, timeout=120)
    assert response.status_code == 201, response.text
    attempt = response.json()
    yield account, attempt
    account.api("DELETE", f"/api/attempts/{attempt['id']}", timeout=60)


def _cards(page: httpx.Response) -> list[str]:
    assert page.status_code == 200, page.text
    return re.findall(r'<article class="card learn-card[^"]*" data-key="([^"]+)"', page.text)


def _page_data(page: httpx.Response) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="learn-data">(.*?)</script>', page.text)
    assert found, page.text
    data: dict[str, Any] = json.loads(found.group(1))
    return data


@pytest.mark.parametrize(
    ("query", "keys"),
    [
        ("", ["challenges/touch-done", "challenges/answer-input", "challenges/open-book"]),
        ("?category=networking", ["challenges/answer-input"]),
        ("?difficulty=hard", ["challenges/open-book"]),
        ("?category=linux&difficulty=easy", ["challenges/touch-done"]),
        ("?category=linux&difficulty=medium", []),
    ],
)
def test_challenge_filters(visitor: httpx.Client, query: str, keys: list[str]) -> None:
    assert sorted(_cards(visitor.get("/challenges" + query))) == sorted(keys)


def test_filter_links_keep_the_other_filter(visitor: httpx.Client) -> None:
    page = visitor.get("/challenges?category=linux")
    assert 'href="?category=linux&amp;difficulty=hard"' in page.text
    assert 'href="?difficulty=easy"' not in page.text  # the category stays
    assert re.search(r'class="filter current" href="\?category=linux"', page.text)
    assert "Nothing matches these filters" in visitor.get("/challenges?category=zzz").text


def test_other_catalogues(visitor: httpx.Client) -> None:
    assert _cards(visitor.get("/tutorials")) == ["tutorials/first-steps"]
    courses = visitor.get("/courses")
    assert 'href="/courses/basics/look-around"' in courses.text
    assert 'href="/courses/basics/make-a-file"' in courses.text
    assert "Getting started" in courses.text
    paths = visitor.get("/skill-paths").text
    order = [
        paths.index(f'href="/{key}"')
        for key in ("tutorials/first-steps", "challenges/touch-done", "courses/basics")
    ]
    assert order == sorted(order)
    assert visitor.get("/courses/basics").status_code == 200


def test_content_is_escaped(visitor: httpx.Client) -> None:
    for path in ("/challenges", "/challenges/answer-input"):
        page = visitor.get(path).text
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(" in page


def test_item_page_renders_tasks_and_no_solution(visitor: httpx.Client) -> None:
    page = visitor.get("/challenges/touch-done")
    assert page.status_code == 200
    assert '<div class="task" data-task="done" data-kind="simple">' in page.text
    assert '<div class="task-active">' in page.text and '<div class="task-completed">' in page.text
    assert '<details class="hint">' in page.text
    assert "<pre data-copy data-run>" in page.text
    assert "Sign in to start" in page.text
    data = _page_data(page)
    assert data == {
        "key": TOUCH,
        "checked": True,
        "attempt": None,
        "solution": "after-solving",
        "signed_in": False,
        "classes": [],  # no class of the visitor's runs this challenge
    }
    assert SOLUTION_TEXT not in page.text
    inputs = visitor.get("/challenges/answer-input").text
    assert 'data-kind="input" data-validate-regex="^[0-9]+$"' in inputs
    assert "SECRET-NEVER-SHOWN" not in inputs


@pytest.mark.parametrize(
    "path", ["/challenges/nope", "/tutorials/touch-done", "/courses/basics/nope", "/courses/x"]
)
def test_missing_items_are_404(visitor: httpx.Client, path: str) -> None:
    assert visitor.get(path).status_code == 404


def test_reading_lesson_has_no_lab(visitor: httpx.Client) -> None:
    page = visitor.get("/courses/basics/look-around").text
    assert 'id="lab"' not in page and "Make a file →" in page


def test_solution_rules(server: Server, visitor: httpx.Client) -> None:
    assert visitor.get("/api/solutions/challenges/open-book").status_code == 401
    account = server.signup()
    always = account.api("GET", "/api/solutions/challenges/open-book")
    assert always.status_code == 200 and "OPEN-BOOK-SOLUTION" in always.json()["html"]
    assert account.api("GET", "/api/solutions/challenges/answer-input").status_code == 404
    assert account.api("GET", "/api/solutions/challenges/nope").status_code == 404
    assert account.api("GET", f"/api/solutions/{TOUCH}").status_code == 403


def test_resume_then_solution_after_solving(learner: tuple[Account, dict[str, Any]]) -> None:
    account, attempt = learner
    data = _page_data(account.client.get("/challenges/touch-done"))
    assert data["attempt"]["id"] == attempt["id"] and data["signed_in"] is True
    refused = account.api("GET", f"/api/solutions/{TOUCH}")
    assert refused.status_code == 403 and "solve" in refused.json()["error"]["message"]

    done = account.api(
        "POST",
        f"/api/playgrounds/{attempt['playground_id']}/exec",
        json={"command": "touch /tmp/done"},
    )
    assert done.status_code == 200, done.text
    wait_for_state(account, attempt["id"], "solved")

    solution = account.api("GET", f"/api/solutions/{TOUCH}")
    assert solution.status_code == 200 and SOLUTION_TEXT in solution.json()["html"]
    page = account.client.get("/challenges/touch-done").text
    assert "✓ solved" in page and SOLUTION_TEXT not in page
    assert re.search(
        r'data-key="challenges/touch-done"[^>]*>\s*<div class="learn-card-head">'
        r"[\s\S]*?✓ solved",
        account.client.get("/challenges").text,
    )
    progress = account.client.get("/progress").text
    assert "Leave a mark" in progress and "1 solved" in progress


def test_another_user_sees_404(server: Server, learner: tuple[Account, dict[str, Any]]) -> None:
    _, attempt = learner
    other = server.signup()
    base = f"/api/attempts/{attempt['id']}"
    assert other.api("GET", base).status_code == 404
    assert other.api("GET", f"{base}/events").status_code == 404
    answer = other.api("POST", f"{base}/tasks/done/input", json={"value": "x"})
    assert answer.status_code == 404
    assert other.api("DELETE", base).status_code == 404
    assert _page_data(other.client.get("/challenges/touch-done"))["attempt"] is None
    assert attempt["id"] not in other.client.get("/progress").text


def test_progress_needs_sign_in(visitor: httpx.Client) -> None:
    response = visitor.get("/progress")
    assert response.status_code == 303 and response.headers["location"] == "/login?next=%2Fprogress"
