"""Split an `index.md` into YAML front matter and Markdown body; validate the front matter.

    ---                 <- line 1
    kind: challenge     <- front matter, parsed with line numbers (YamlSource)
    ...
    ---
    Markdown body       <- `body_line` is this line's number

Every error names the file, the line and the field, e.g.
`challenges/x/index.md:7: tasks.check.needs.0: unknown task 'nope'`.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from labyard.content import compat
from labyard.content.models import (
    Challenge,
    Course,
    FrontMatter,
    Lesson,
    PlaygroundRef,
    SkillPath,
    Task,
    Tutorial,
)
from labyard.errors import ManifestError
from labyard.manifest import Manifest, validation_context
from labyard.manifest.source import YamlSource, parse_yaml

MODELS: dict[str, type[Challenge | Tutorial | Lesson | Course | SkillPath]] = {
    "challenge": Challenge,
    "tutorial": Tutorial,
    "lesson": Lesson,
    "course": Course,
    "skill-path": SkillPath,
}
Front = Challenge | Tutorial | Lesson | Course | SkillPath
INVALID_PLAYGROUND = "(invalid)"
"""Stands in for a playground value already reported as invalid."""


@dataclass(frozen=True)
class Split:
    source: YamlSource
    body: str
    body_line: int
    """Line number (1-based) of the body's first line in the file."""


def split(text: str, name: str) -> Split:
    """Front matter between a first line `---` and the next `---` line, and the body after."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise ManifestError([f"{name}:1: (top level): the file must start with a --- line"])
    for i in range(1, len(lines)):
        if lines[i].rstrip() in ("---", "..."):
            source = parse_yaml("".join(lines[1:i]), name, line_offset=1)
            return Split(source, "".join(lines[i + 1 :]), i + 2)
    raise ManifestError([f"{name}:1: (top level): front matter is never closed with ---"])


@dataclass
class Validated:
    front: Front | None
    """None when even a salvaged model cannot be built."""
    problems: list[str]
    notes: list[str]
    """Fields kept but not used (see compat.py); errors under `--strict`."""
    extra: dict[str, Any]
    """Those fields' values by dotted path, for templates and the API."""


def validate(
    source: YamlSource, expected_kind: str | None = None, folder: Path | None = None
) -> Validated:
    """The front matter model, every problem with its line, and the fields kept as notes.

    When fields are invalid the model is still built without them where possible (an unknown
    key dropped, a bad value left at its default), so cross-checks can run and report their
    problems in the same pass. `folder` (the item's) is where an inline playground's machine
    files may name a `source`.
    """
    data = source.data
    if not isinstance(data, dict):
        return Validated(None, [source.error((), "front matter is a mapping of fields")], [], {})
    kind = data.get("kind", expected_kind)
    if not isinstance(kind, str) or kind not in MODELS:
        return Validated(
            None, [source.error(("kind",), f"unknown kind {kind!r} ({_known()})")], [], {}
        )
    if expected_kind is not None and kind != expected_kind:
        message = f"is {kind!r} but this folder holds {expected_kind!r} items"
        return Validated(None, [source.error(("kind",), message)], [], {})
    found = compat.Sorted()
    data = compat.sort_fields(
        source, {**data, "kind": kind}, (), MODELS[kind], "item", found, _elsewhere(kind)
    )
    if isinstance(data.get("tasks"), dict):
        data["tasks"] = {
            name: compat.sort_fields(source, task, ("tasks", name), Task, "task", found)
            if isinstance(task, dict)
            else task
            for name, task in data["tasks"].items()
        }
    problems = found.problems
    if "playground" in data:
        data["playground"] = _playground(source, data["playground"], kind, found, folder)
    try:
        front: Front | None = MODELS[kind].model_validate(data)
    except ValidationError as exc:
        problems += source.errors_from(exc).problems
        front = _salvage(MODELS[kind], data, exc)
    return Validated(front, problems, found.notes, found.extra)


def _elsewhere(kind: str) -> dict[str, str]:
    """Fields of the other kinds that `kind` does not have, with the kinds they belong to."""
    own = compat.field_names(MODELS[kind])
    owners: dict[str, list[str]] = {}
    for other, model in MODELS.items():
        for name in compat.field_names(model) - own:
            owners.setdefault(name, []).append(other)
    return {name: " and ".join(kinds) for name, kinds in owners.items()}


def _salvage(model: type[Front], data: dict[str, Any], exc: ValidationError) -> Front | None:
    """The model without the values that failed (the deepest key each error names)."""
    data = copy.deepcopy(data)
    for error in exc.errors():
        _drop(data, error["loc"])
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


def _drop(data: Any, loc: tuple[int | str, ...]) -> None:
    parent, key = None, None
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            parent, key, node = node, part, node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]  # list items stay (indices of other errors must not shift)
        else:
            break
    if isinstance(parent, dict):
        parent.pop(key, None)


def _playground(
    source: YamlSource, value: Any, kind: str, found: compat.Sorted, folder: Path | None
) -> Any:
    """Validate `playground` on its own so errors read `playground.machines.0.memory`, not
    pydantic's union branch names. An invalid value is reported here and replaced by a
    placeholder name, so the model does not report it a second time."""
    problems = found.problems
    if isinstance(value, str) or (value is None and kind == "lesson"):
        return value
    if not isinstance(value, dict):
        message = "a playground name, {name: NAME} or an inline manifest with machines"
        problems.append(source.error(("playground",), message))
        return INVALID_PLAYGROUND
    inline = "machines" in value and not _customises(value)
    if not inline:
        value = compat.sort_fields(
            source, value, ("playground",), PlaygroundRef, "playground", found
        )
    model: type[PlaygroundRef | Manifest] = Manifest if inline else PlaygroundRef
    try:
        playground = model.model_validate(value, context=validation_context(folder))
    except ValidationError as exc:
        problems += [
            source.error(("playground", *e["loc"]), _msg(e["msg"]))
            for e in exc.errors(include_url=False)
        ]
        return INVALID_PLAYGROUND
    if isinstance(playground, Manifest):
        problems += [
            source.error(("playground", *loc), message)
            for loc, message in playground.reference_problems()
        ]
    return playground


_IXIMIUZ_PLAYGROUND = {"name", "machines", "tabs", "registryAuth"}
_IXIMIUZ_MACHINE = {"name", "resources", "users", "noSSH"}


def _customises(value: dict[str, Any]) -> bool:
    """Whether `value` is iximiuz Labs' customisation of a base playground (`name` plus
    `machines` with `resources`, `users` or `noSSH`, or `tabs`), not an inline manifest: it
    uses some of their fields and none of a manifest's own."""
    machines = value.get("machines")
    if set(value) - _IXIMIUZ_PLAYGROUND or not isinstance(machines, list):
        return False
    entries = [m for m in machines if isinstance(m, dict)]
    if len(entries) != len(machines) or any(set(m) - _IXIMIUZ_MACHINE for m in entries):
        return False
    return bool({"tabs", "registryAuth"} & set(value)) or any(
        set(m) & (_IXIMIUZ_MACHINE - {"name"}) for m in entries
    )


def _msg(message: str) -> str:
    return message.removeprefix("Value error, ")


def _known() -> str:
    return "known: " + ", ".join(MODELS)


def json_schema() -> str:
    """The JSON Schema of the front matter of every kind of content item."""
    schema: dict[str, Any] = TypeAdapter(FrontMatter).json_schema()
    schema["title"] = "labyard content front matter"
    return json.dumps(schema, indent=2)
