"""Cross-checks of one item: what its front matter and body name exists and fits together.

- `needs` name tasks of the item, without cycles;
- env values use `x(.needs.T.stdout)` only for a T in `needs`, and `x(.input)` only in a task
  that a `::user-input-task` block shows;
- the playground exists and has each task's `machine`;
- body blocks name existing tasks; input tasks have a compiling `:validateRegex:` and an
  absolute `:destination:`; image boxes and `cover` name files beside the item.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from labyard.content import layout
from labyard.content.blocks import REMARK_KINDS, TASK_BLOCKS, Block, Parsed, static_path
from labyard.content.frontmatter import INVALID_PLAYGROUND, Front
from labyard.content.models import Challenge, Lesson, Task, Tutorial
from labyard.content.playgrounds import PlaygroundIndex
from labyard.manifest import Manifest
from labyard.manifest.env import ENV_REFERENCE
from labyard.manifest.source import YamlSource

Loc = tuple[int | str, ...]


def item_problems(
    front: Front, source: YamlSource, parsed: Parsed, folder: Path, playgrounds: PlaygroundIndex
) -> list[str]:
    """Every cross-reference problem of one item, as `file:line: field: message`."""
    problems = [f"{source.name}:{line}: {where}: {msg}" for line, where, msg in parsed.problems]
    tasks: dict[str, Task] = {}
    if isinstance(front, Challenge | Tutorial | Lesson):
        tasks = front.tasks
        problems += _errors(source, _needs(tasks))
        problems += _errors(source, _env(tasks, parsed))
        problems += _errors(source, _machines(front, playgrounds))
    problems += [
        f"{source.name}:{line}: {where}: {msg}"
        for line, where, msg in _blocks(parsed, tasks, folder)
    ]
    if front.cover is not None and (problem := _static_problem(folder, front.cover)):
        problems.append(source.error(("cover",), problem))
    return problems


def _errors(source: YamlSource, found: Iterator[tuple[Loc, str]]) -> list[str]:
    return [source.error(loc, message) for loc, message in found]


def _known(names: list[str]) -> str:
    return f"known: {', '.join(names) or 'none'}"


def _needs(tasks: dict[str, Task]) -> Iterator[tuple[Loc, str]]:
    for name, task in tasks.items():
        for j, need in enumerate(task.needs):
            if need not in tasks:
                yield ("tasks", name, "needs", j), f"unknown task {need!r} ({_known([*tasks])})"
    cycle = _cycle(tasks)
    if cycle:
        yield ("tasks", cycle[0], "needs"), f"tasks need each other: {' -> '.join(cycle)}"


def _cycle(tasks: dict[str, Task]) -> list[str]:
    """One cycle of `needs` (first name repeated at the end), or []."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str]:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done or name not in tasks:
            return []
        for need in tasks[name].needs:
            if found := visit(need, [*path, name]):
                return found
        done.add(name)
        return []

    for name in tasks:
        if found := visit(name, []):
            return found
    return []


def _env(tasks: dict[str, Task], parsed: Parsed) -> Iterator[tuple[Loc, str]]:
    inputs = {t.name for t in parsed.tasks() if t.kind == "input"}
    for name, task in tasks.items():
        for j, entry in enumerate(task.env):
            for ref in ENV_REFERENCE.finditer(entry):
                needed = ref.group("task")
                if needed is not None and needed not in task.needs:
                    yield (
                        ("tasks", name, "env", j),
                        (
                            f"{ref.group(0)} names a task that is not in needs "
                            f"(needs: {', '.join(task.needs) or 'none'})"
                        ),
                    )
                if ref.group("input") and name not in inputs:
                    yield (
                        ("tasks", name, "env", j),
                        (
                            "x(.input) needs a ::user-input-task block in the body with "
                            f":name: {name}"
                        ),
                    )


def _machines(
    front: Challenge | Tutorial | Lesson, index: PlaygroundIndex
) -> Iterator[tuple[Loc, str]]:
    playground = front.playground
    if playground is None:
        if front.tasks:
            yield ("tasks",), "tasks run in a playground: set `playground` too"
        return
    if playground == INVALID_PLAYGROUND:
        return
    manifest: Manifest | None
    if isinstance(playground, Manifest):
        manifest = playground
    else:
        name = front.playground_name or ""
        manifest = index.get(name)
        if manifest is None:
            loc: Loc = ("playground",) if isinstance(playground, str) else ("playground", "name")
            yield loc, f"unknown playground {name!r} ({_known(index.names())})"
            return
    machines = [m.name for m in manifest.machines]
    for name, task in front.tasks.items():
        if task.machine is not None and task.machine not in machines:
            yield (
                ("tasks", name, "machine"),
                (
                    f"no machine {task.machine!r} in playground {manifest.name!r} "
                    f"(machines: {', '.join(machines)})"
                ),
            )


def _blocks(parsed: Parsed, tasks: dict[str, Task], folder: Path) -> Iterator[tuple[int, str, str]]:
    for block in parsed.blocks():
        if block.name in TASK_BLOCKS:
            yield from _task_block(block, tasks)
        elif block.name == "image-box":
            src = block.props.get("src")
            if not src:
                yield block.line, "::image-box.src", "missing: name the image file"
            elif problem := _static_problem(folder, src):
                yield block.prop_line("src"), "::image-box.src", problem
        elif block.name == "open-file" and not block.props.get("path"):
            yield block.line, "::open-file.path", "missing: name the file to open"
        elif block.name == "remark-box" and block.props.get("kind", "info") not in REMARK_KINDS:
            yield (
                block.prop_line("kind"),
                "::remark-box.kind",
                f"{block.props['kind']!r} is not one of {', '.join(REMARK_KINDS)}",
            )


def _task_block(block: Block, tasks: dict[str, Task]) -> Iterator[tuple[int, str, str]]:
    where = f"::{block.name}"
    name = block.props.get("name")
    if not name:
        yield block.line, f"{where}.name", "missing: name the task this block shows"
    elif name not in tasks:
        yield (
            block.prop_line("name"),
            f"{where}.name",
            (f"unknown task {name!r} ({_known([*tasks])})"),
        )
    if block.props.get("tasks", "tasks") != "tasks":
        yield block.prop_line("tasks"), f"{where}.tasks", "must be `tasks`"
    if block.name != "user-input-task":
        return
    regex, destination = block.props.get("validateRegex"), block.props.get("destination")
    if regex is None:
        yield block.line, f"{where}.validateRegex", "missing: the answer must match it"
    else:
        try:
            re.compile(regex)
        except re.error as exc:
            yield (
                block.prop_line("validateRegex"),
                f"{where}.validateRegex",
                (f"does not compile: {exc}"),
            )
    if destination is None:
        yield (
            block.line,
            f"{where}.destination",
            ("missing: the file in the machine the answer is written to"),
        )
    elif not destination.startswith("/"):
        yield (
            block.prop_line("destination"),
            f"{where}.destination",
            ("must be an absolute path in the machine (the answer is written there)"),
        )


def _static_problem(folder: Path, src: str) -> str | None:
    """Why `src` does not name a file of the item, or None when it does (or is a URL)."""
    path = static_path(src)
    if path is None:
        return None
    if not (folder / path).resolve().is_relative_to(folder.resolve()):
        return f"{src!r} points outside the item's folder"
    if layout.static_file(folder, path) is None:
        return f"no file {path} in {folder}"
    return None
