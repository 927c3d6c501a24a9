"""User-input tasks: check a learner's answer against the block's `validateRegex` and write
it to the block's `destination` in the machine."""

from __future__ import annotations

import re
import shlex

from labyard.errors import Conflict, InvalidInput, NotFound
from labyard.services.tasks.pool import MachinePool
from labyard.services.tasks.spec import AttemptSpec, InputBlock

MAX_ANSWER = 10_000
WRITE_TIMEOUT_S = 15.0


def input_block(spec: AttemptSpec, task: str) -> InputBlock:
    block = spec.inputs.get(task)
    if block is None:
        raise NotFound(f"no user-input task {task!r} in {spec.title!r}")
    return block


def validate(block: InputBlock, task: str, value: str) -> None:
    if len(value) > MAX_ANSWER:
        raise InvalidInput(f"an answer may have at most {MAX_ANSWER} characters")
    if "\x00" in value:
        raise InvalidInput("an answer may not contain NUL characters")
    if block.validate_regex is None:
        return
    try:
        pattern = re.compile(block.validate_regex)
    except re.error as exc:
        raise InvalidInput(
            f"task {task!r} has a validateRegex Python cannot read ({exc}); tell the author"
        ) from exc
    if pattern.search(value) is None:
        raise InvalidInput(f"{value!r} is not a valid answer (it must match {pattern.pattern})")


async def write_answer(pool: MachinePool, machine: str, destination: str, value: str) -> None:
    """Write `value` to `destination` (creating its folder) as root."""
    path = shlex.quote(destination)
    command = f'mkdir -p -- "$(dirname -- {path})" && cat > {path}'
    result = await pool.run(machine, command, WRITE_TIMEOUT_S, input=value)
    if result.exit_code != 0:
        raise Conflict(
            f"could not write the answer to {destination} in {machine}: {result.stderr.strip()}"
        )
