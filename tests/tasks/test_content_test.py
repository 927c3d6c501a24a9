"""`labyard content test` on fixture challenges, through the real command."""

from __future__ import annotations

import json

from labyard.settings import Settings
from tests.conftest import run_cli
from tests.tasks.conftest import FIXTURES


def test_a_solvable_challenge_passes(settings: Settings) -> None:
    result = run_cli(settings, "content", "test", str(FIXTURES / "content"), "--json")
    assert result.returncode == 0, result.stderr
    [verdict] = json.loads(result.stdout)
    assert verdict["name"] == "challenges/hello"
    assert verdict["passed"] is True
    assert verdict["tasks"] == {
        "prepare": "completed",
        "file_exists": "completed",
        "says_hello": "completed",
    }
    assert 0 < verdict["seconds"] < 60


def test_a_wrong_solution_fails(settings: Settings) -> None:
    challenge = FIXTURES / "broken" / "challenges" / "wrong-solution"
    result = run_cli(settings, "content", "test", str(challenge), "--json")
    assert result.returncode == 1, result.stderr
    [verdict] = json.loads(result.stdout)
    assert verdict["passed"] is False
    assert verdict["tasks"]["says_hello"] == "running"
    assert "says_hello" in verdict["message"]


def test_only_must_name_a_challenge(settings: Settings) -> None:
    result = run_cli(settings, "content", "test", str(FIXTURES / "content"), "--only", "nope")
    assert result.returncode == 3
    assert "no challenge 'nope'" in result.stderr
