"""The task engine against real playgrounds: states, needs, env, hints, failchecks,
batching, pausing, restarts."""

from __future__ import annotations

import time
from pathlib import Path

from labyard.services import Labyard
from labyard.services.tasks import Attempts
from labyard.settings import Settings
from labyard.types import AttemptState, TaskState
from tests.tasks.conftest import Engine, eventually, states, write_challenge

TWO_TASKS = """
kind: challenge
title: Two tasks
playground: linux
tasks:
  a:
    run: test -f /tmp/a && cat /tmp/a
    hintcheck: if [ -f /tmp/hint ]; then cat /tmp/hint; else echo no hint file; fi
  stage2:
    init: true
    needs: [a]
    run: echo set up > /tmp/stage2
  b:
    needs: [a, stage2]
    env: ["A_OUT=x(.needs.a.stdout)"]
    run: '[ "$(cat /tmp/b)" = "$A_OUT" ] && test -f /tmp/stage2'
"""


async def test_tasks_follow_needs_hints_and_env(engine: Engine, tmp_path: Path) -> None:
    record = await engine.start(write_challenge(tmp_path, "two", TWO_TASKS))
    assert states(record) == {
        "a": TaskState.RUNNING,
        "stage2": TaskState.BLOCKED,
        "b": TaskState.BLOCKED,
    }
    attempt = record.id

    await eventually(lambda: engine.now(attempt).tasks["a"].hint == "no hint file", 5, "hint")
    await engine.sh(record, "echo 'look in /tmp' > /tmp/hint; echo xyz > /tmp/b")
    await eventually(lambda: engine.now(attempt).tasks["a"].hint == "look in /tmp", 5, "new hint")
    checker = engine.attempts.checker(attempt)
    assert checker is not None
    await checker.wait_ticks(checker.stats.ticks + 2, 10)
    assert engine.now(attempt).tasks["b"].state == TaskState.BLOCKED  # /tmp/b alone is not enough

    await engine.sh(record, "echo xyz > /tmp/a")
    touched = time.monotonic()
    await eventually(
        lambda: engine.now(attempt).tasks["a"].state == TaskState.COMPLETED, 3, "a completed"
    )
    assert time.monotonic() - touched < 3
    # The init task that needs a runs once a is done; then b compares /tmp/b with a's
    # stdout, handed over as A_OUT=x(.needs.a.stdout).
    done = await eventually(lambda: (r := engine.now(attempt)).finished and r, 5, "solved")
    assert done.state == AttemptState.SOLVED
    assert set(states(done).values()) == {TaskState.COMPLETED}
    assert done.tasks["a"].stdout == "xyz\n"
    assert done.tasks["a"].hint == ""
    assert done.finished_at is not None
    await eventually(lambda: engine.attempts.checker(attempt) is None, 3, "checks stopped")


TWO_MACHINES = """
kind: challenge
title: Two machines
playground:
  name: pair
  machines:
    - name: one
    - name: two
tasks:
  setup:
    init: true
    machine: two
    run: useradd -m learner && hostname
  on_one_a:
    run: test -f /tmp/never
    hintcheck: cat /tmp/hint-a 2>/dev/null || echo one-a
  on_one_b:
    run: test -f /tmp/never-b
    failcheck: 'true'
  on_one_c:
    run: test -f /tmp/never-c
  on_two:
    machine: two
    user: learner
    env: ["SETUP_HOST=x(.needs.setup.stdout)"]
    needs: [setup]
    run: test -f ~/never
    hintcheck: echo "$(whoami) on $SETUP_HOST"
"""


async def test_one_exec_per_machine_per_tick(engine: Engine, tmp_path: Path) -> None:
    record = await engine.start(write_challenge(tmp_path, "pair", TWO_MACHINES))
    assert record.tasks["setup"].state == TaskState.COMPLETED
    checker = engine.attempts.checker(record.id)
    assert checker is not None
    await checker.wait_ticks(5, 15)
    stats, pool = checker.stats, checker.pool.stats
    # 7 checks are due each tick (4 runs, 2 hintchecks, 1 failcheck) in two machines.
    assert stats.execs == 2 * stats.ticks, stats
    assert pool.connects == 2, pool  # connections stay open across ticks
    current = engine.now(record.id)
    assert current.tasks["on_two"].hint == "learner on two"  # as its user, with needs' stdout
    assert current.tasks["on_one_a"].hint == "one-a"
    assert current.state == AttemptState.ACTIVE

    # A learner who deletes the check runner gets it back on the next connection.
    await engine.sh(record, "rm -rf /run/labyard", machine="one")
    await checker.wait_ticks(stats.ticks + 3, 15)
    assert pool.connects == 3, pool
    assert stats.execs == 2 * stats.ticks, stats
    await engine.sh(record, "echo changed > /tmp/hint-a", machine="one")
    await eventually(
        lambda: engine.now(record.id).tasks["on_one_a"].hint == "changed", 5, "checks go on"
    )


FAILCHECK = """
kind: challenge
title: Do not break it
playground: linux
tasks:
  fragile:
    run: test -f /tmp/done
    failcheck: |
      if [ -f /tmp/broken ]; then echo "you deleted what you needed"; exit 1; fi
"""


async def test_failcheck_fails_the_attempt(engine: Engine, tmp_path: Path) -> None:
    record = await engine.start(write_challenge(tmp_path, "fragile", FAILCHECK))
    checker = engine.attempts.checker(record.id)
    assert checker is not None
    await checker.wait_ticks(2, 10)
    assert engine.now(record.id).state == AttemptState.ACTIVE
    await engine.sh(record, "touch /tmp/broken")
    failed = await eventually(lambda: (r := engine.now(record.id)).finished and r, 5, "failed")
    assert failed.state == AttemptState.FAILED
    assert failed.tasks["fragile"].state == TaskState.FAILED
    assert "you deleted what you needed" in failed.message
    await eventually(lambda: engine.attempts.checker(record.id) is None, 3, "checks stopped")


async def test_checks_pause_without_watchers_and_resume(labyard: Labyard, tmp_path: Path) -> None:
    engine = Engine(labyard, idle_pause_s=1.0)
    try:
        record = await engine.start(write_challenge(tmp_path, "pause", FAILCHECK))
        checker = engine.attempts.checker(record.id)
        assert checker is not None
        await eventually(lambda: checker.stats.paused, 5, "paused with nobody watching")
        paused_at = checker.stats.ticks
        first, queue = engine.attempts.subscribe(record.id, None)
        assert first["type"] == "state"
        await checker.wait_ticks(paused_at + 2, 10)
        assert not checker.stats.paused
        await engine.sh(record, "touch /tmp/done")
        event = await eventually(lambda: not queue.empty() and queue.get_nowait(), 5, "event")
        assert event["type"] == "task" and event["task"]["state"] == TaskState.COMPLETED
        engine.attempts.unsubscribe(record.id, queue)
    finally:
        await engine.close()


async def test_progress_survives_a_restart(
    labyard: Labyard, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    record = await engine.start(write_challenge(tmp_path, "restart", TWO_TASKS), "user:restart")
    await engine.sh(record, "echo 1 > /tmp/a")
    await eventually(
        lambda: engine.now(record.id).tasks["b"].state == TaskState.RUNNING, 5, "a, stage2 done"
    )
    await engine.attempts.shutdown()  # the server goes down ...

    restarted = Labyard(settings)  # ... and a new one starts on the same database
    attempts = Attempts(restarted.playgrounds, restarted.catalog, idle_pause_s=None)
    try:
        assert await attempts.resume() == [record.id]
        after = attempts.get(record.id, "user:restart")
        assert states(after) == {
            "a": TaskState.COMPLETED,
            "stage2": TaskState.COMPLETED,
            "b": TaskState.RUNNING,
        }
        assert after.tasks["a"].stdout == "1\n"
        await engine.sh(record, "echo 1 > /tmp/b")
        solved = await eventually(lambda: (r := attempts.get(record.id)).finished and r, 5, "b")
        assert solved.state == AttemptState.SOLVED
        [entry] = attempts.progress("user:restart")
        assert entry["content"] == "challenges/restart" and entry["state"] == "solved"
        assert entry["best_seconds"] is not None and entry["first_solved_at"]
    finally:
        await attempts.shutdown()
        restarted.close()


async def test_destroyed_playground_ends_the_attempt(engine: Engine, tmp_path: Path) -> None:
    record = await engine.start(write_challenge(tmp_path, "gone", FAILCHECK))
    await engine.labyard.playgrounds.destroy(record.playground_id or "")
    ended = await eventually(lambda: (r := engine.now(record.id)).finished and r, 10, "ended")
    assert ended.state == AttemptState.ENDED
    assert "playground ended" in ended.message


async def test_checks_resume_after_the_playground_restarts(engine: Engine, tmp_path: Path) -> None:
    record = await engine.start(write_challenge(tmp_path, "restarts", FAILCHECK))
    checker = engine.attempts.checker(record.id)
    assert checker is not None
    playground_id = record.playground_id or ""
    await engine.labyard.playgrounds.stop(playground_id)
    await checker.wait_ticks(checker.stats.ticks + 1, 15)
    await engine.labyard.playgrounds.restart(playground_id)
    await engine.sh(record, "touch /tmp/done")
    solved = await eventually(lambda: (r := engine.now(record.id)).finished and r, 15, "solved")
    assert solved.state == AttemptState.SOLVED
    assert checker.pool.stats.connects >= 2  # reconnected (and reinstalled the runner)
