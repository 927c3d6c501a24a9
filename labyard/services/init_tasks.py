"""Init tasks: scripts run in the machines once a playground is up, in `needs` order.

A manifest's `init` tasks run here while a playground starts; a challenge's `init: true`
tasks run through the same `run_steps` once its attempt's playground is up.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from labyard.access import Connection, ExecResult
from labyard.errors import InvalidInput
from labyard.manifest import Manifest
from labyard.manifest.env import expand_env

ConnectionFor = Callable[[str], Awaitable[Connection]]


class InitTaskFailed(InvalidInput):
    reason = "init_task_failed"


@dataclass(frozen=True)
class Step:
    """One set-up script and what it waits for."""

    name: str
    run: str
    needs: Sequence[str] = ()
    machine: str | None = None
    """The playground's first machine when None."""
    user: str = "root"
    timeout_seconds: int = 300


EnvFor = Callable[[Step, Mapping[str, str]], Mapping[str, str]]
"""The environment of a step, given the stdout of every step finished so far."""


def as_user(user: str, script: str, env: Mapping[str, str] | None = None) -> str:
    """`script` as a command that runs as `user` with `env` exported. `su -` starts a clean
    login environment, so the exports go inside the script rather than around it."""
    exports = "".join(
        f"export {name}={shlex.quote(value)}\n" for name, value in (env or {}).items()
    )
    if user == "root":
        return exports + script
    return f"su - {shlex.quote(user)} -s /bin/bash -c {shlex.quote(exports + script)}"


async def run_init_tasks(manifest: Manifest, connection_for: ConnectionFor) -> None:
    """Run a manifest's init tasks (see `run_steps`)."""
    steps = [
        Step(t.name, t.run, t.needs, t.machine, t.user, t.timeout_seconds) for t in manifest.init
    ]
    env = {t.name: t.env for t in manifest.init}

    def env_for(step: Step, stdouts: Mapping[str, str]) -> Mapping[str, str]:
        return expand_env(env[step.name], stdouts, None)

    await run_steps(steps, manifest.machines[0].name, connection_for, env_for)


async def run_steps(
    steps: Sequence[Step],
    default_machine: str,
    connection_for: ConnectionFor,
    env_for: EnvFor | None = None,
) -> dict[str, ExecResult]:
    """Run every step once, each as soon as the steps it needs have succeeded; independent
    steps run side by side. The first failure cancels the rest. Returns each step's result."""
    done: dict[str, asyncio.Event] = {s.name: asyncio.Event() for s in steps}
    results: dict[str, ExecResult] = {}

    async def run(step: Step) -> None:
        for need in step.needs:
            if need in done:  # needs outside this set were finished before it started
                await done[need].wait()
        connection = await connection_for(step.machine or default_machine)
        stdouts = {name: result.stdout for name, result in results.items()}
        env = env_for(step, stdouts) if env_for else None
        result = await connection.run(
            as_user(step.user, step.run, env), timeout=step.timeout_seconds
        )
        if result.exit_code != 0:
            output = (result.stderr or result.stdout).strip()[-500:]
            raise InitTaskFailed(
                f"init task {step.name!r} failed with exit code {result.exit_code}: {output}"
            )
        results[step.name] = result
        done[step.name].set()

    try:
        async with asyncio.TaskGroup() as group:
            for step in steps:
                group.create_task(run(step))
    except ExceptionGroup as failures:
        raise failures.exceptions[0] from None  # the first failure says what went wrong
    return results
