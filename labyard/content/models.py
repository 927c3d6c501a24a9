"""Content front matter: challenges, tutorials, courses, lessons and skill paths.

Field names follow what iximiuz Labs authors already write (`tasks` with `run`, `needs`,
`init`, `hintcheck`, `failcheck`, `machine`, `user`, `env`, `timeout_seconds`), so existing
content moves over with few edits.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from labyard.manifest import Manifest
from labyard.manifest.env import env_entries

Difficulty = Literal["easy", "medium", "hard"]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
TaskName = Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_-]{0,63}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Task(_Strict):
    """A check looped in a machine until it exits 0, or (with `init`) a set-up step run once."""

    run: str
    """Bash script; exit 0 means done. Its stdout is kept for tasks that need it."""
    init: bool = False
    needs: list[TaskName] = []
    hintcheck: str | None = None
    """Run while the task is unfinished; its stdout is shown to the learner as a live hint."""
    failcheck: str | None = None
    """Non-zero exit means the attempt cannot succeed any more (the learner must restart)."""
    machine: str | None = None
    """Machine to run in; the playground's first machine by default."""
    user: str = "root"
    env: list[str] = []
    """`NAME=value` strings; values may use x(.needs.TASK.stdout) and x(.input)."""
    timeout_seconds: int = Field(30, gt=0, le=3600)
    """Longest a single run of `run` (or of the hint/fail checks) may take."""

    @field_validator("env")
    @classmethod
    def _env_entries(cls, entries: list[str]) -> list[str]:
        return env_entries(entries)


class PlaygroundRef(_Strict):
    """A built-in or catalog playground by name, optionally with changes."""

    name: str


class _Content(_Strict):
    title: str = Field(min_length=1, max_length=200)
    description: str = ""
    categories: list[str] = []
    tags: list[str] = []
    difficulty: Difficulty | None = None
    cover: str | None = None
    """Image beside the Markdown, shown on catalogue cards."""


class _Runnable(_Content):
    playground: str | PlaygroundRef | Manifest
    """A playground name, `{name: ...}`, or an inline manifest (with `machines`)."""
    tasks: dict[TaskName, Task] = {}

    @property
    def playground_name(self) -> str | None:
        if isinstance(self.playground, str):
            return self.playground
        if isinstance(self.playground, PlaygroundRef):
            return self.playground.name
        return None


class Challenge(_Runnable):
    kind: Literal["challenge"]
    show_solution: Literal["never", "after-solving", "always"] = "after-solving"


class Tutorial(_Runnable):
    kind: Literal["tutorial"]


class Lesson(_Runnable):
    kind: Literal["lesson"]
    playground: str | PlaygroundRef | Manifest | None = None  # type: ignore[assignment]


class Module(_Strict):
    name: Slug
    title: str
    lessons: list[Slug]
    """Folders of lessons inside the course folder, in order."""


class Course(_Content):
    kind: Literal["course"]
    modules: list[Module] = Field(min_length=1)


class SkillPath(_Content):
    kind: Literal["skill-path"]
    steps: list[str] = Field(min_length=1)
    """References like `challenges/SLUG`, `tutorials/SLUG`, `courses/SLUG`, in order."""


FrontMatter = Annotated[
    Challenge | Tutorial | Lesson | Course | SkillPath, Field(discriminator="kind")
]
