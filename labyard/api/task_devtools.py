"""Task dev tools for authors (services/tasks/devtools.py): the attempt in a playground.

    GET  /api/playgrounds/{id}/devtools                        every task, live (poll it)
    POST /api/playgrounds/{id}/devtools/tasks/{task}/rerun     run its checks now
    POST /api/playgrounds/{id}/devtools/tasks/{task}/reset     it (and what needs it) anew
    POST /api/playgrounds/{id}/devtools/reset                  every task anew
    POST /api/playgrounds/{id}/devtools/solution/{step}/run    one solution step, in its machine

Only for the playground's owner with the author or admin role: 403 for its owner otherwise
(a learner sees hints, never check output), 404 for anyone else.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from labyard.api.deps import LabyardDep, UserDep

router = APIRouter(prefix="/api/playgrounds/{playground_id}/devtools", tags=["devtools"])


@router.get("")
async def devtools(playground_id: str, labyard: LabyardDep, user: UserDep) -> dict[str, Any]:
    """The attempt's tasks: state, why blocked, last check runs (exit code, stdout, stderr,
    duration), run count, rendered env; and the solution's steps."""
    return labyard.task_dev_tools.view(playground_id, user)


@router.post("/tasks/{task}/rerun")
async def rerun_task(
    playground_id: str, task: str, labyard: LabyardDep, user: UserDep
) -> dict[str, Any]:
    return await labyard.task_dev_tools.rerun(playground_id, task, user)


@router.post("/tasks/{task}/reset")
async def reset_task(
    playground_id: str, task: str, labyard: LabyardDep, user: UserDep
) -> dict[str, Any]:
    return await labyard.task_dev_tools.reset(playground_id, task, user)


@router.post("/reset")
async def reset_attempt(playground_id: str, labyard: LabyardDep, user: UserDep) -> dict[str, Any]:
    """Every task back to the start (a solved or failed attempt is active again); the
    machines are left as they are."""
    return await labyard.task_dev_tools.reset(playground_id, None, user)


@router.post("/solution/{step}/run")
async def run_solution_step(
    playground_id: str, step: int, labyard: LabyardDep, user: UserDep
) -> dict[str, Any]:
    """Run solution step `step` (0-based, as listed) and return its exit code and output."""
    return await labyard.task_dev_tools.run_step(playground_id, step, user)
