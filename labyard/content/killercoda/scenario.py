"""A Killercoda scenario's index.json and texts as a labyard tutorial's front matter and body.

Steps keep their order with `needs`: each step's setup task (its `background` script) needs
the previous step's last task, and each verify task its step's setup (or the previous step).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from labyard.content import blocks
from labyard.content.killercoda import machines
from labyard.content.killercoda.index_json import Scenario
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
