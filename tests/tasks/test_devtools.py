"""The task dev tools' engine side: each check's last run kept in memory (with its duration),
re-running a task now, resetting tasks of a running or a solved attempt, the solution cut
into steps; and reopening an attempt in the database (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labyard.content.models import Task
from labyard.services.tasks.devtools import solution_steps
from labyard.services.tasks.records import AttemptRecord, AttemptStore, initial_tasks, now
from labyard.services.tasks.script import parse_results
from labyard.services.tasks.spec import AttemptSpec
from labyard.store import Database
from labyard.types import AttemptState, TaskState
from tests.store.databases import KINDS, fresh_database_url
from tests.tasks.conftest import Engine, eventually, states, write_challenge

FRONT = """
kind: challenge
title: Two steps
playground: linux
tasks:
  one:
    run: |
      echo "out of one"; echo "err of one" >&2
      test -f /tmp/one
    hintcheck: echo "make /tmp/one"
    env: ["WHO=me"]
  two:
    needs: [one]
    run: test -f /tmp/two
"""


async def test_the_last_run_of_each_check_is_kept(engine: Engine, tmp_path: Path) -> None:
    item = write_challenge(tmp_path, "two-steps", FRONT)
    record = await engine.start(item)
    checker = engine.attempts.checker(record.id)
    assert checker is not None
    await checker.wait_ticks(1, timeout=20)
    one = checker.runs.of("one")
    assert one.runs >= 1
    assert one.env == {"WHO": "me"}
    run, hint = one.last["run"], one.last["hint"]
    assert (run.exit_code, run.stdout, run.stderr) == (1, "out of one\n", "err of one\n")
    assert hint.stdout == "make /tmp/one\n"
    assert run.duration_s is not None and 0 <= run.duration_s < 5
    assert checker.runs.of("two").runs == 0  # blocked: never checked

    before = one.runs
    await checker.run_now("two")  # whatever its state; a blocked task's result is not applied
    assert checker.runs.of("two").last["run"].exit_code == 1
    assert states(checker.record)["two"] == TaskState.BLOCKED
    await checker.run_now("one")
    assert checker.runs.of("one").runs > before


async def test_reset_a_running_and_then_a_solved_attempt(engine: Engine, tmp_path: Path) -> None:
    item = write_challenge(tmp_path, "reset-me", FRONT)
    record = await engine.start(item)
    await engine.sh(record, "touch /tmp/one")
    await eventually(
        lambda: states(engine.now(record.id))["one"] == TaskState.COMPLETED, 20, "one completed"
    )
    reset = await engine.attempts.reset(record.id, ["one", "two"])
    assert states(reset) == {"one": TaskState.RUNNING, "two": TaskState.BLOCKED}
    checker = engine.attempts.checker(record.id)
    assert checker is not None and checker.runs.of("one").runs == 0  # output forgotten too
    await engine.sh(record, "touch /tmp/two")
    await eventually(lambda: engine.now(record.id).state == AttemptState.SOLVED, 20, "solved again")
    # Solved: the checker has stopped (or is about to); a reset reopens the attempt.
    reopened = await engine.attempts.reset(record.id, ["two"])
    assert reopened.state == AttemptState.ACTIVE and reopened.finished_at is None
    assert states(reopened)["two"] in (TaskState.CREATED, TaskState.RUNNING)
    await eventually(
        lambda: engine.now(record.id).state == AttemptState.SOLVED, 20, "solved a third time"
    )


def test_solution_steps_are_the_script_cut_at_blank_lines(tmp_path: Path) -> None:
    (tmp_path / "solution.sh").write_text(
        "#!/bin/bash\nset -euo pipefail\n\n# one\ntouch /tmp/one\n\n\ntouch /tmp/two\necho done\n"
    )
    (tmp_path / "solution.web.sh").write_text("systemctl start nginx\n")
    steps = solution_steps(tmp_path, "main")
    assert [(s.machine, s.file, s.script) for s in steps] == [
        ("main", "solution.sh", "# one\ntouch /tmp/one"),
        ("main", "solution.sh", "touch /tmp/two\necho done"),
        ("web", "solution.web.sh", "systemctl start nginx"),
    ]
    assert steps[0].prelude == "set -euo pipefail" and steps[2].prelude == ""
    assert solution_steps(tmp_path / "nowhere", "main") == []


def test_results_with_and_without_timing() -> None:
    parsed = parse_results(
        "@@labyard 0 0 b2sK  1700000000.100000:1700000000.350000\n@@labyard 1 3  \n", 2
    )
    assert parsed[0].stdout == "ok\n" and parsed[0].duration_s == pytest.approx(0.25)
    assert parsed[1].exit_code == 3 and parsed[1].duration_s is None


@pytest.mark.parametrize("kind", KINDS)
def test_reopen_in_the_database(kind: str, tmp_path: Path) -> None:
    with fresh_database_url(kind, tmp_path) as url:
        db = Database(url)
        db.migrate()
        try:
            store = AttemptStore(db)
            spec = AttemptSpec("t", {"a": Task(run="true")}, {}, "main")
            record = AttemptRecord(
                "a0123456789abcd",
                "owner",
                "challenges/t",
                None,
                AttemptState.ACTIVE,
                "",
                spec,
                {"a": "42"},
                now(),
                None,
                initial_tasks(spec),
            )
            store.insert(record)
            store.finish(record.id, AttemptState.FAILED, "gave up")
            store.reopen(record.id, {})
            found = store.load(record.id)
            assert (found.state, found.message, found.finished_at) == (
                AttemptState.ACTIVE,
                "",
                None,
            )
            assert found.inputs == {}
        finally:
            db.close()
