"""What an attempt checks: the item's tasks and its user-input blocks, frozen at start.

The spec is stored with the attempt (as JSON), so an author's later edit does not change
the rules of an attempt under way and a restarted server needs no content folder to resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labyard.content.blocks import parse
from labyard.content.loader import Item
from labyard.content.models import Challenge, Lesson, Task, Tutorial
from labyard.errors import InvalidInput
from labyard.manifest import Manifest
from labyard.manifest.env import ENV_REFERENCE


@dataclass(frozen=True)
class InputBlock:
    """A `::user-input-task` block: what an answer must match and where it is written."""

    validate_regex: str | None
    destination: str | None


@dataclass(frozen=True)
class AttemptSpec:
    title: str
    tasks: dict[str, Task]
    inputs: dict[str, InputBlock]
    default_machine: str
    """The playground's first machine: where tasks without `machine` run."""

    @property
    def startup_tasks(self) -> dict[str, Task]:
        """Init tasks run once when the attempt starts: those needing only init tasks."""
        found: dict[str, Task] = {}
        pending = {name: t for name, t in self.tasks.items() if t.init}
        while True:  # add tasks whose needs are all in already; needs have no cycles
            ready = {n: t for n, t in pending.items() if all(x in found for x in t.needs)}
            if not ready:
                return found
            found.update(ready)
            for name in ready:
                del pending[name]

    @property
    def looped_tasks(self) -> dict[str, Task]:
        """Tasks whose `run` the checker loops: every task but the start-up ones, so an init
        task that needs a learner's task runs (until it succeeds) once that one is done."""
        startup = self.startup_tasks
        return {name: t for name, t in self.tasks.items() if name not in startup}

    @property
    def check_tasks(self) -> dict[str, Task]:
        """The tasks the learner solves; all completed means the attempt is solved."""
        return {name: t for name, t in self.tasks.items() if not t.init}

    def machine_of(self, task: str) -> str:
        return self.tasks[task].machine or self.default_machine

    def wants_input(self, task: str) -> bool:
        """Whether the task checks a learner's answer (and so waits until there is one)."""
        uses_input = any(
            m.group("input") for e in self.tasks[task].env for m in ENV_REFERENCE.finditer(e)
        )
        return task in self.inputs or uses_input

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "tasks": {name: t.model_dump(mode="json") for name, t in self.tasks.items()},
            "inputs": {name: b.__dict__ for name, b in self.inputs.items()},
            "default_machine": self.default_machine,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AttemptSpec:
        return cls(
            title=data["title"],
            tasks={name: Task.model_validate(t) for name, t in data["tasks"].items()},
            inputs={name: InputBlock(**b) for name, b in data["inputs"].items()},
            default_machine=data["default_machine"],
        )


def spec_of(item: Item, manifest: Manifest) -> AttemptSpec:
    """The spec of a challenge, tutorial or lesson played in `manifest`'s playground."""
    front = item.front
    if not isinstance(front, Challenge | Tutorial | Lesson) or not front.tasks:
        raise InvalidInput(f"{item.key} has no tasks to attempt")
    tasks = front.tasks
    blocks = parse(item.body, item.body_line).tasks()
    inputs = {
        b.name: InputBlock(b.validate_regex, b.destination) for b in blocks if b.kind == "input"
    }
    machines = {m.name for m in manifest.machines}
    for name, task in tasks.items():
        if task.machine is not None and task.machine not in machines:
            raise InvalidInput(
                f"task {name!r} of {item.key} runs in machine {task.machine!r}, which "
                f"playground {manifest.name!r} does not have ({', '.join(sorted(machines))})"
            )
    return AttemptSpec(front.title, dict(tasks), inputs, manifest.machines[0].name)
