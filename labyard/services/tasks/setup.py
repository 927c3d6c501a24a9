"""A challenge's `init: true` tasks: run once, in `needs` order, before any check.

Init tasks that need a learner's task are not run here: the checker loops them once that
task is completed (see `AttemptSpec.looped_tasks`)."""

from __future__ import annotations

from collections.abc import Mapping

from labyard.manifest.env import expand_env
from labyard.services.init_tasks import Step, run_steps
from labyard.services.tasks.pool import MachinePool
from labyard.services.tasks.records import TaskRecord, now
from labyard.services.tasks.script import sourcing
from labyard.services.tasks.spec import AttemptSpec
from labyard.types import TaskState


async def run_init(spec: AttemptSpec, pool: MachinePool) -> dict[str, TaskRecord]:
    """Completed records (with stdout) of the init tasks; raises `InitTaskFailed`."""
    tasks = spec.startup_tasks
    steps = [
        Step(
            name,
            sourcing(task.run),  # the helpers are there for set-up scripts as for checks
            task.needs,
            spec.machine_of(name),
            task.user,
            task.timeout_seconds,
        )
        for name, task in tasks.items()
    ]

    def env_for(step: Step, stdouts: Mapping[str, str]) -> Mapping[str, str]:
        return expand_env(tasks[step.name].env, stdouts, None)

    results = await run_steps(steps, spec.default_machine, pool.connection, env_for)
    finished = now()
    return {
        name: TaskRecord(TaskState.COMPLETED, r.stdout, "", finished, finished)
        for name, r in results.items()
    }
