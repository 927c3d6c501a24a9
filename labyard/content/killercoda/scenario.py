"""A Killercoda scenario's index.json and texts as a labyard tutorial's front matter and body.

Steps keep their order with `needs`: each step's setup task (its `background` script) needs
the previous step's last task, and each verify task its step's setup (or the previous step).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labyard.content import blocks
from labyard.content.killercoda import machines
from labyard.content.playgrounds import PlaygroundIndex

DIFFICULTY = {
    "beginner": "easy",
    "easy": "easy",
    "intermediate": "medium",
    "medium": "medium",
    "advanced": "hard",
    "hard": "hard",
    "expert": "hard",
}
_ACTION = re.compile(r"\{\{\s*([^}]*?)\s*\}\}")
_RUN = re.compile(r"^(exec|execute)(\s+interrupt)?(?:\s+(\S.*))?$")


@dataclass
class Scenario:
    """index.json with a record of which fields were read, so the rest can be warned about."""

    folder: Path
    data: Any
    warnings: list[str] = field(default_factory=list)
    used: set[tuple[str | int, ...]] = field(default_factory=set)

    def get(self, *path: str | int, mark: bool = True) -> Any:
        """The value at `path` (None when absent); `mark` records it as mapped (leave it
        False for containers whose members are read one by one)."""
        node = self.data
        for part in path:
            node = _child(node, part)
            if node is None:
                return None
        if mark:
            self.used.add(path)
        return node

    def file(self, *path: str | int) -> str | None:
        """The text of the file a field names, relative to the scenario folder."""
        name = self.get(*path)
        if name is None:
            return None
        where = ".".join(str(p) for p in path)
        target = self.folder / str(name)
        if not target.resolve().is_relative_to(self.folder.resolve()):
            self.warn(f"{where}: {name!r} is outside the scenario; left out")
            return None
        try:
            return target.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            self.warn(f"{where}: cannot read {target} ({exc}); left out")
            return None

    def text(self, *path: str | int, default: str = "", limit: int = 200) -> str:
        """A field as one line of text (a title), or `default` when it has none."""
        value = self.get(*path)
        line = " ".join(str(value).split())[:limit] if isinstance(value, str | int) else ""
        return line or default

    def warn(self, message: str) -> None:
        self.warnings.append(f"index.json: {message}")

    def unused(self) -> list[str]:
        return [".".join(map(str, p)) for p in _leaves(self.data, ()) if not self._read(p)]

    def _read(self, path: tuple[str | int, ...]) -> bool:
        return any(path[: i + 1] in self.used for i in range(len(path)))


def _child(node: Any, part: str | int) -> Any:
    if isinstance(node, dict) and isinstance(part, str):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and part < len(node):
        return node[part]
    return None


def _leaves(node: Any, path: tuple[str | int, ...]) -> list[tuple[str | int, ...]]:
    if isinstance(node, dict) and node:
        return [leaf for k, v in node.items() for leaf in _leaves(v, (*path, k))]
    if isinstance(node, list) and node:
        return [leaf for i, v in enumerate(node) for leaf in _leaves(v, (*path, i))]
    return [path]


def convert(
    source: Scenario,
    slug: str,
    draft: Path,
    index: PlaygroundIndex,
    has_image: machines.ImageCheck | None,
) -> tuple[dict[str, Any], str]:
    front: dict[str, Any] = {"kind": "tutorial", "title": source.text("title", default=slug)}
    if description := source.get("description"):
        front["description"] = str(description)
    if difficulty := _difficulty(source):
        front["difficulty"] = difficulty
    tasks: dict[str, dict[str, Any]] = {}
    parts = [_part(source, ("details", "intro"), "intro", None, tasks)]
    gate = "intro_setup" if "intro_setup" in tasks else None
    steps = source.get("details", "steps", mark=False) or []
    for i in range(len(steps) if isinstance(steps, list) else 0):
        parts.append(_step(source, i, gate, tasks))
        gate = next(reversed(tasks)) if tasks else None
    if finish := source.file("details", "finish", "text"):
        finish = blocks.escape(finish)
        parts.append(finish if finish.lstrip().startswith("#") else f"## Finish\n\n{finish}")
    body = "\n\n".join(p.strip("\n") for p in parts if p.strip()) + "\n"
    body = _actions(source, body)
    base = machines.backend(source, index, has_image, body + json.dumps(tasks))
    front["playground"] = machines.playground(source, slug, base, draft)
    front["tasks"] = tasks
    return front, body


def _step(source: Scenario, i: int, gate: str | None, tasks: dict[str, dict[str, Any]]) -> str:
    path = ("details", "steps", i)
    title = source.text(*path, "title", default=f"Step {i + 1}")
    text = _part(source, path, f"step_{i + 1}", gate, tasks)
    verify = source.file(*path, "verify")
    if verify is not None:
        needs = [name for name in (f"step_{i + 1}_setup", gate) if name in tasks][:1]
        tasks[f"step_{i + 1}"] = {"run": verify, **({"needs": needs} if needs else {})}
        text = text.rstrip() + "\n\n" + _task_block(f"step_{i + 1}")
    return f"## {title}\n\n{text.strip()}"


def _part(
    source: Scenario,
    path: tuple[str | int, ...],
    name: str,
    gate: str | None,
    tasks: dict[str, dict[str, Any]],
) -> str:
    """Text of the intro or a step; its background script becomes an init task."""
    text = blocks.escape(source.file(*path, "text") or "")
    where = ".".join(map(str, path))
    if (background := source.file(*path, "background")) is not None:
        task: dict[str, Any] = {"init": True, "run": background, "timeout_seconds": 300}
        tasks[f"{name}_setup"] = task | ({"needs": [gate]} if gate else {})
    if (foreground := source.file(*path, "foreground")) is not None:
        source.warn(
            f"{where}.foreground: labyard does not type scripts into the learner's "
            "terminal; added to the text as a snippet to run"
        )
        text = text.rstrip() + f"\n\nRun this first:\n\n```bash\n{foreground.rstrip()}\n```\n"
    return text


def _task_block(name: str) -> str:
    return (
        f"::simple-task\n---\n:tasks: tasks\n:name: {name}\n---\n#active\n"
        "Waiting for this step to be done...\n\n#completed\nDone.\n::\n"
    )


def _difficulty(source: Scenario) -> str | None:
    value = source.get("difficulty")
    if value is None:
        return None
    mapped = DIFFICULTY.get(str(value).lower())
    if mapped is None:
        source.warn(
            f"difficulty: {value!r} has no labyard equivalent (easy, medium, hard); left out"
        )
    return mapped


def _actions(source: Scenario, body: str) -> str:
    """`{{exec}}`, `{{execute}}`, `{{exec interrupt}}` and `{{copy}}` in the renderer's
    spelling; `{{}}` (Killercoda's "no copy") removed; anything else warned about."""
    unknown: set[str] = set()

    def replace(found: re.Match[str]) -> str:
        action = " ".join(found.group(1).split())
        if action == "":
            return ""
        if action == "copy":
            return "{{copy}}"
        run = _RUN.match(action)
        if run is None:
            unknown.add(action)
            return found.group(0)
        if run.group(3):
            source.warnings.append(
                f"Markdown: {{{{{action}}}}}: labyard runs it in the terminal that is open "
                f"({run.group(3)!r} is not mapped)"
            )
        return "{{" + run.group(1) + (" interrupt" if run.group(2) else "") + "}}"

    body = _ACTION.sub(replace, body)
    for action in sorted(unknown):
        source.warnings.append(
            f"Markdown: {{{{{action}}}}} has no labyard equivalent; left in the text as is"
        )
    return body
