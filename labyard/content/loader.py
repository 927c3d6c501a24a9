"""Load a content folder (or one item) into typed items, collecting every problem at once.

Each problem reads `file:line: field: message`. `load_tree` never raises for bad content:
it keeps every item whose front matter validates and lists all problems in
`ContentTree.problems`; `load_item` raises ManifestError with all of one item's problems.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labyard.content import blocks, checks, frontmatter, layout, solutions
from labyard.content.frontmatter import Front
from labyard.content.models import Course, SkillPath
from labyard.content.playgrounds import PlaygroundIndex, load_playgrounds
from labyard.content.solutions import Solution
from labyard.errors import ManifestError, NotFound
from labyard.manifest import Manifest
from labyard.manifest.source import YamlSource


@dataclass
class Item:
    """One challenge, tutorial, course, lesson or skill path."""

    kind: str
    slug: str
    key: str
    """`challenges/<slug>`, `courses/<course>/<lesson>`, ...: unique in a tree."""
    path: Path
    """Its index.md."""
    front: Front
    body: str
    """Markdown after the front matter."""
    body_line: int
    """Line number of the body's first line in index.md."""
    solutions: list[Solution]
    """solution.md, or solution-01.md, solution-02.md, ... in order."""
    solution_sh: Path | None
    dir: Path
    source: YamlSource | None = field(default=None, repr=False, compare=False)
    """The parsed front matter, for errors that name a field's line."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Front matter fields labyard keeps but does not use (`createdAt`, `tagz`, ...), by
    dotted path; see compat.py."""
    notes: list[str] = field(default_factory=list)
    """One `file:line: field: message` per kept field; errors under `--strict`."""

    @property
    def solution_md(self) -> str | None:
        """Every solution as one Markdown text (None without any)."""
        return solutions.markdown(self.solutions)

    def machine_file_sources(self) -> set[Path]:
        """Files of this folder that its inline playground writes into machines (`source:`):
        they are the machines' files, not the page's, so they are never served."""
        data = self.source.data if self.source is not None else None
        playground = data.get("playground") if isinstance(data, dict) else None
        machines = playground.get("machines") if isinstance(playground, dict) else None
        found: set[Path] = set()
        for machine in machines if isinstance(machines, list) else []:
            files = machine.get("files") if isinstance(machine, dict) else None
            for entry in files if isinstance(files, list) else []:
                if isinstance(entry, dict) and isinstance(entry.get("source"), str):
                    found.add((self.dir / entry["source"]).resolve())
        return found


@dataclass
class ContentTree:
    root: Path
    items: dict[str, Item] = field(default_factory=dict)
    playgrounds: dict[str, Manifest] = field(default_factory=dict)
    """`playgrounds/*.yaml` of the folder, by manifest name."""
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Fields kept but not used, of every item (in `problems` instead when strict)."""

    def of_kind(self, kind: str) -> list[Item]:
        return [item for item in self.items.values() if item.kind == kind]

    def get(self, key: str) -> Item:
        try:
            return self.items[key.strip("/")]
        except KeyError:
            raise NotFound(f"no content item {key!r}") from None

    def lessons(self, course_key: str) -> list[Item]:
        """The lessons of a course in module order (only those that loaded)."""
        course = self.get(course_key)
        if not isinstance(course.front, Course):
            raise NotFound(f"{course_key!r} is not a course")
        keys = [f"{course.key}/{lesson}" for m in course.front.modules for lesson in m.lessons]
        return [self.items[key] for key in keys if key in self.items]

    def steps(self, path_key: str) -> list[Item]:
        """The items of a skill path in order (only those that loaded)."""
        path = self.get(path_key)
        if not isinstance(path.front, SkillPath):
            raise NotFound(f"{path_key!r} is not a skill path")
        return [self.items[step] for step in path.front.steps if step in self.items]

    def summary(self) -> str:
        """`2 challenges, 1 tutorial, 1 course (3 lessons), 1 skill path, 1 playground`."""
        counts = Counter(item.kind for item in self.items.values())
        parts = [_count(counts[k], k) for k in ("challenge", "tutorial") if counts[k]]
        if counts["course"]:
            lessons = f" ({_count(counts['lesson'], 'lesson')})" if counts["lesson"] else ""
            parts.append(_count(counts["course"], "course") + lessons)
        if counts["skill-path"]:
            parts.append(_count(counts["skill-path"], "skill path"))
        if self.playgrounds:
            parts.append(_count(len(self.playgrounds), "playground"))
        return ", ".join(parts) or "no items"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def load_tree(root: Path, strict: bool = False) -> ContentTree:
    """Every item and playground under `root`; problems are collected, not raised. `strict`
    counts fields kept but not used (notes) as problems."""
    if not root.is_dir():
        raise NotFound(f"content folder {root} does not exist")
    tree = ContentTree(root)
    tree.playgrounds = load_playgrounds(root, tree.problems)
    index = PlaygroundIndex(tree.playgrounds)
    for folder_name, kind in layout.FOLDERS.items():
        folder = root / folder_name
        for item_dir in sorted(folder.iterdir()) if folder.is_dir() else []:
            if item_dir.is_dir() and not item_dir.name.startswith("."):
                _add(tree, item_dir, kind, f"{folder_name}/{item_dir.name}", index)
    if strict:
        tree.problems, tree.notes = tree.problems + tree.notes, []
    return tree


def _add(tree: ContentTree, item_dir: Path, kind: str, key: str, index: PlaygroundIndex) -> None:
    index_md = item_dir / "index.md"
    if not index_md.is_file():
        tree.problems.append(f"{item_dir}: no index.md (every item folder needs one)")
        return
    try:
        item, problems = _read(index_md, kind, key, index, tree.root)
    except ManifestError as exc:
        tree.problems += exc.problems
        item, problems = None, []
    tree.problems += problems
    if item is not None:
        tree.items[key] = item
        tree.notes += item.notes
    if kind == "course":
        for lesson_dir in layout.lesson_folders(item_dir):
            _add(tree, lesson_dir, "lesson", f"{key}/{lesson_dir.name}", index)


def load_item(path: Path, strict: bool = False, playgrounds: Path | None = None) -> Item:
    """One item from its index.md (or its folder); raises ManifestError with every problem
    (and, when `strict`, every note). Playgrounds of the content folder around it count when
    the item sits in the layout; `playgrounds` names another content folder whose do."""
    index_md = path / "index.md" if path.is_dir() else path
    if not index_md.is_file():
        raise NotFound(f"{index_md} does not exist")
    kind, key, root = layout.locate(index_md)
    problems: list[str] = []
    found = playgrounds or root
    index = PlaygroundIndex(load_playgrounds(found, problems) if found else {})
    try:
        item, more = _read(index_md, kind, key, index, root)
    except ManifestError as exc:
        raise ManifestError(problems + exc.problems) from exc
    problems += more + (item.notes if strict else [])
    if problems:
        raise ManifestError(problems)
    return item


def _read(
    index_md: Path, kind: str | None, key: str | None, index: PlaygroundIndex, root: Path | None
) -> tuple[Item, list[str]]:
    """The item and its cross-reference problems; ManifestError when it does not parse."""
    name = str(index_md)
    try:
        text = index_md.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError([f"{name}:1: (file): cannot read: {exc}"]) from exc
    split = frontmatter.split(text, name)
    folder = index_md.parent
    checked = frontmatter.validate(split.source, kind, folder)
    front, problems = checked.front, checked.problems
    if front is None:
        raise ManifestError(problems)
    written, solution_problems = solutions.load(folder)
    item = Item(
        kind=front.kind,
        slug=folder.name,
        key=key or f"{layout.PLURAL[front.kind]}/{folder.name}",
        path=index_md,
        front=front,
        body=split.body,
        body_line=split.body_line,
        solutions=written,
        solution_sh=solutions.script(folder),
        dir=folder,
        source=split.source,
        extra=checked.extra,
        notes=checked.notes,
    )
    problems += solution_problems
    return item, problems + _problems(item, split.source, index, root)


def _problems(
    item: Item, source: YamlSource, index: PlaygroundIndex, root: Path | None
) -> list[str]:
    problems: list[str] = []
    if not layout.SLUG.match(item.slug):
        problems.append(
            f"{item.path}:1: (folder): {item.slug!r} is not a slug "
            "(lowercase letters, digits and dashes)"
        )
    parsed = blocks.parse(item.body, item.body_line)
    problems += checks.item_problems(item.front, source, parsed, item.dir, index)
    if isinstance(item.front, Course):
        problems += layout.course_problems(item.front, source, item.dir)
    if isinstance(item.front, SkillPath):
        problems += layout.skill_path_problems(item.front, source, root)
    return problems
