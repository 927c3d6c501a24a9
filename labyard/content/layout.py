"""The content folder's layout and the checks that span folders.

challenges/<slug>/index.md        (+ solution.md or solution-NN.md, solution.sh,
                                   __static__/ images and other files, ...)
tutorials/<slug>/index.md
courses/<slug>/index.md           kind: course, modules: [{name, title, lessons}]
courses/<slug>/<lesson>/index.md  kind: lesson
skill-paths/<slug>/index.md       kind: skill-path, steps: [challenges/x, ...]
playgrounds/*.yaml                kind: playground manifests
"""

from __future__ import annotations

import re
from pathlib import Path

from labyard.content.models import Course, SkillPath
from labyard.manifest.source import YamlSource

FOLDERS = {
    "challenges": "challenge",
    "tutorials": "tutorial",
    "courses": "course",
    "skill-paths": "skill-path",
}
PLURAL = {kind: folder for folder, kind in FOLDERS.items()} | {"lesson": "courses"}
STATIC = "__static__"
"""The folder of an item's images and other files served as they are (iximiuz Labs' name)."""
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
STEP = re.compile(r"^(challenges|tutorials|courses)/[a-z0-9][a-z0-9-]{0,63}$")


def locate(index_md: Path) -> tuple[str | None, str | None, Path | None]:
    """(kind its folder implies, key, content root) of an index.md; Nones outside a layout."""
    folder = index_md.resolve().parent
    parents = folder.parents
    if len(parents) >= 2 and parents[0].name in FOLDERS:
        kind = FOLDERS[parents[0].name]
        return kind, f"{parents[0].name}/{folder.name}", parents[1]
    if len(parents) >= 3 and parents[1].name == "courses":
        return "lesson", f"courses/{parents[0].name}/{folder.name}", parents[2]
    return None, None, None


def lesson_folders(course_dir: Path) -> list[Path]:
    """Sub-folders of a course that hold an index.md (its lessons)."""
    return sorted(p for p in course_dir.iterdir() if (p / "index.md").is_file())


def course_problems(course: Course, source: YamlSource, folder: Path) -> list[str]:
    """Lessons listed in modules exist once each, module names are unique, and every lesson
    folder is listed."""
    problems: list[str] = []
    listed: set[str] = set()
    modules: set[str] = set()
    for i, module in enumerate(course.modules):
        if module.name in modules:
            problems.append(source.error(("modules", i, "name"), f"{module.name!r} is used twice"))
        modules.add(module.name)
        for j, lesson in enumerate(module.lessons):
            loc = ("modules", i, "lessons", j)
            if lesson in listed:
                problems.append(source.error(loc, f"lesson {lesson!r} is listed twice"))
            elif not (folder / lesson / "index.md").is_file():
                problems.append(source.error(loc, f"no lesson {lesson}/index.md in {folder}"))
            listed.add(lesson)
    for lesson_dir in lesson_folders(folder):
        if lesson_dir.name not in listed:
            problems.append(
                f"{lesson_dir / 'index.md'}:1: (folder): lesson {lesson_dir.name!r} is not "
                f"listed in any module of {source.name}"
            )
    return problems


def skill_path_problems(path: SkillPath, source: YamlSource, root: Path | None) -> list[str]:
    """Steps are `challenges/SLUG`, `tutorials/SLUG` or `courses/SLUG` that exist."""
    problems: list[str] = []
    for i, step in enumerate(path.steps):
        if not STEP.match(step):
            problems.append(
                source.error(
                    ("steps", i), f"{step!r} is not challenges/SLUG, tutorials/SLUG or courses/SLUG"
                )
            )
        elif root is not None and not (root / step / "index.md").is_file():
            problems.append(
                source.error(("steps", i), f"no item {step} ({root / step} has no index.md)")
            )
    return problems


def static_file(folder: Path, path: str) -> Path | None:
    """The file `path` (as static_path gives it) names in an item's `folder`, or None when
    there is none or it would be outside the folder. `__static__/x.png` is
    `folder/__static__/x.png`, or `folder/x.png` when only that exists (labyard's first
    convention put such files beside index.md)."""
    base = folder.resolve()
    candidates = [path]
    if path.startswith(STATIC + "/"):
        candidates.append(path.removeprefix(STATIC + "/"))
    for candidate in candidates:
        target = (base / candidate).resolve()
        if target.is_relative_to(base) and target.is_file():
            return target
    return None
