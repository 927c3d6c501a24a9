"""Import a Killercoda scenario (a folder with index.json) as a labyard tutorial.

| Killercoda                          | labyard                                              |
|-------------------------------------|------------------------------------------------------|
| title, description                  | title, description                                   |
| difficulty beginner/intermediate/…  | difficulty easy/medium/hard                          |
| details.intro.text                  | the body's first part                                |
| details.intro.background            | init task `intro_setup`                              |
| details.steps[i].title, .text       | `## title` and the text, in order                    |
| details.steps[i].background         | init task `step_<i>_setup`, needs the previous step  |
| details.steps[i].verify             | task `step_<i>` (`run`) + a ::simple-task block       |
| details.finish.text                 | the body's last part, under `## Finish`              |
| details.assets.host01               | startup `files` of an inline playground's machine    |
| backend.imageid                     | playground `linux` (warning unless ubuntu/debian)    |
| `{{exec}}`, `{{copy}}` in Markdown  | kept: the renderer turns them into run/copy buttons  |

Anything else (foreground scripts, other hosts' assets, `interface`, `time`, unknown
`{{...}}` actions, ...) produces a warning: nothing is dropped silently.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from labyard.content.layout import SLUG
from labyard.errors import Conflict, InvalidInput, NotFound
from labyard.manifest import load_manifest

DIFFICULTY = {
    "beginner": "easy",
    "easy": "easy",
    "intermediate": "medium",
    "medium": "medium",
    "advanced": "hard",
    "hard": "hard",
    "expert": "hard",
}
IMAGES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")
_ACTION = re.compile(r"\{\{\s*([^}]*?)\s*\}\}")
_KEPT_ACTIONS = {"exec", "exec interrupt", "execute", "execute interrupt", "copy"}


@dataclass
class Imported:
    index_md: Path
    warnings: list[str]


@dataclass
class _Scenario:
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
        try:
            return target.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            self.warn(f"{where}: cannot read {target} ({exc}); left out")
            return None

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


def import_killercoda(scenario: Path, out: Path, slug: str | None = None) -> Imported:
    """Write `out/tutorials/<slug>/` from a Killercoda scenario folder; warnings say what
    could not be mapped."""
    index = scenario / "index.json"
    if not index.is_file():
        raise NotFound(f"{index} does not exist (is {scenario} a Killercoda scenario?)")
    try:
        data = json.loads(index.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{index} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"{index} is not a JSON object")
    slug = slug or _slug(scenario.resolve().name)
    if not SLUG.match(slug):
        raise InvalidInput(f"{slug!r} is not a slug: use lowercase letters, digits and dashes")
    folder = out / "tutorials" / slug
    if folder.exists():
        raise Conflict(f"{folder} already exists")
    source = _Scenario(scenario, data)
    front, body = _convert(source, slug)
    for path in source.unused():
        source.warn(f"{path}: not mapped (labyard has no equivalent); left out")
    folder.mkdir(parents=True)
    (folder / "index.md").write_text(f"---\n{_yaml(front)}---\n\n{body}")
    _copy_images(scenario, folder)
    return Imported(folder / "index.md", source.warnings)


def _convert(source: _Scenario, slug: str) -> tuple[dict[str, Any], str]:
    front: dict[str, Any] = {"kind": "tutorial", "title": source.get("title") or slug}
    if description := source.get("description"):
        front["description"] = description
    if difficulty := _difficulty(source):
        front["difficulty"] = difficulty
    front["playground"] = _playground(source, slug)
    tasks: dict[str, dict[str, Any]] = {}
    parts = [_part(source, ("details", "intro"), "intro", None, tasks)]
    gate = "intro_setup" if "intro_setup" in tasks else None
    steps = source.get("details", "steps", mark=False) or []
    for i in range(len(steps)):
        parts.append(_step(source, i, gate, tasks))
        gate = next(reversed(tasks)) if tasks else None
    if finish := source.file("details", "finish", "text"):
        parts.append(finish if finish.lstrip().startswith("#") else f"## Finish\n\n{finish}")
    front["tasks"] = tasks
    body = "\n\n".join(p.strip("\n") for p in parts if p.strip()) + "\n"
    _check_actions(source, body)
    return front, body


def _step(source: _Scenario, i: int, gate: str | None, tasks: dict[str, dict[str, Any]]) -> str:
    path = ("details", "steps", i)
    title = source.get(*path, "title") or f"Step {i + 1}"
    text = _part(source, path, f"step_{i + 1}", gate, tasks)
    verify = source.file(*path, "verify")
    if verify is not None:
        needs = [name for name in (f"step_{i + 1}_setup", gate) if name in tasks][:1]
        tasks[f"step_{i + 1}"] = {"run": verify, **({"needs": needs} if needs else {})}
        text = text.rstrip() + "\n\n" + _task_block(f"step_{i + 1}")
    return f"## {title}\n\n{text.strip()}"


def _part(
    source: _Scenario,
    path: tuple[str | int, ...],
    name: str,
    gate: str | None,
    tasks: dict[str, dict[str, Any]],
) -> str:
    """Text of the intro or a step; its background script becomes an init task."""
    text = source.file(*path, "text") or ""
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


def _difficulty(source: _Scenario) -> str | None:
    value = source.get("difficulty")
    if value is None:
        return None
    mapped = DIFFICULTY.get(str(value).lower())
    if mapped is None:
        source.warn(
            f"difficulty: {value!r} has no labyard equivalent (easy, medium, hard); left out"
        )
    return mapped


def _playground(source: _Scenario, slug: str) -> str | dict[str, Any]:
    image = source.get("backend", "imageid")
    if image is None:
        source.warn("backend.imageid: missing; using the linux playground")
    elif re.match(r"^(ubuntu|debian)", str(image)):
        pass
    elif str(image).startswith("kubernetes"):
        source.warn(
            f"backend.imageid: {image!r}: labyard has no Kubernetes playground yet; "
            "using linux (install Kubernetes in a setup task or edit `playground`)"
        )
    else:
        source.warn(f"backend.imageid: {image!r} is unknown here; using the linux playground")
    files = _assets(source)
    if not files:
        return "linux"
    base = load_manifest("linux")
    machine = base.machines[0]
    name = re.sub(r"-+$", "", ("k-" + slug if not slug[0].isalpha() else slug)[:32])
    return {
        "name": name,
        "title": source.get("title") or base.title,
        "machines": [{"name": machine.name, "image": machine.image, "files": files}],
    }


def _assets(source: _Scenario) -> list[dict[str, str]]:
    """Asset files for host01 as startup files of the machine."""
    assets = source.get("details", "assets", mark=False) or {}
    files: list[dict[str, str]] = []
    for host in assets:
        if host != "host01":
            source.warn(f"details.assets.{host}: only host01 maps to a machine; left out")
            source.get("details", "assets", host)
            continue
        for i in range(len(assets[host])):
            files += _asset(source, ("details", "assets", host, i))
    return files


def _asset(source: _Scenario, path: tuple[str | int, ...]) -> list[dict[str, str]]:
    pattern, target = source.get(*path, "file"), source.get(*path, "target")
    chmod = source.get(*path, "chmod")
    where = ".".join(map(str, path))
    mode = {None: "0644", "+x": "0755"}.get(chmod, str(chmod))
    if not re.fullmatch(r"0?[0-7]{3,4}", mode):
        source.warn(f"{where}.chmod: {chmod!r} is not +x or an octal mode; using 0644")
        mode = "0644"
    root = source.folder / "assets"
    files = []
    for match in sorted(root.glob(str(pattern))) if pattern else []:
        for path_ in [match] if match.is_file() else sorted(match.rglob("*")):
            relative = path_.relative_to(match.parent).as_posix()
            if path_.is_file() and (content := _text(source, f"{where}.file", path_)) is not None:
                target_path = f"{str(target or '/root').rstrip('/')}/{relative}"
                files.append({"path": target_path, "content": content, "mode": mode})
    if not files:
        source.warn(f"{where}.file: {pattern!r} matches no text file in {root}; left out")
    return files


def _text(source: _Scenario, where: str, path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        source.warn(f"{where}: {path.name} is not a readable text file; left out")
        return None


def _check_actions(source: _Scenario, body: str) -> None:
    for action in sorted({m.group(1) for m in _ACTION.finditer(body)} - _KEPT_ACTIONS):
        source.warnings.append(
            f"Markdown: {{{{{action}}}}} has no labyard equivalent; left in the text as is"
        )


def _copy_images(scenario: Path, folder: Path) -> None:
    for image in scenario.rglob("*"):
        if image.suffix.lower() in IMAGES and image.is_file():
            target = folder / image.relative_to(scenario)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(image, target)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:64].strip("-") or "scenario"


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _yaml(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
