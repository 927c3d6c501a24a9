"""A challenge's written solutions: `solution.md`, or `solution-01.md`, `solution-02.md`, ...
when there is more than one way (iximiuz Labs' convention), and the script that solves it.

A solution file may start with front matter; its `title` names the solution (other fields
are ignored). A line `<!--more-->` (iximiuz Labs' summary marker) is dropped: raw HTML would
show as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from labyard.errors import ManifestError
from labyard.manifest.source import parse_yaml

NAME = re.compile(r"^solution(?:-(\d{1,3}))?\.md$")
SCRIPTS = ("solution.sh", ".solution.sh")
"""The script `labyard content test` runs: labyard's name, then iximiuz Labs' hidden one."""
_MORE = re.compile(r"^\s*<!--\s*more\s*-->\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Solution:
    file: str
    """`solution.md`, `solution-01.md`, ..."""
    title: str | None
    body: str
    """Markdown, without front matter."""


def is_solution(name: str) -> bool:
    """Whether a file name is a solution (Markdown or script): never served as a static file."""
    return bool(NAME.match(name) or name in SCRIPTS or re.match(r"^\.solution-\d+\.sh$", name))


def load(folder: Path) -> tuple[list[Solution], list[str]]:
    """The folder's solutions in order (`solution.md` first, then by number) and problems."""
    files = [p for p in folder.iterdir() if p.is_file() and NAME.match(p.name)]
    files.sort(key=lambda p: int(NAME.match(p.name).group(1) or 0))  # type: ignore[union-attr]
    found: list[Solution] = []
    problems: list[str] = []
    for path in files:
        try:
            found.append(_read(path))
        except ManifestError as exc:
            problems += exc.problems
    return found, problems


def script(folder: Path) -> Path | None:
    return next((folder / n for n in SCRIPTS if (folder / n).is_file()), None)


def markdown(solutions: list[Solution]) -> str | None:
    """All solutions as one Markdown text: one alone as written, several each under a heading."""
    if not solutions:
        return None
    if len(solutions) == 1:
        return solutions[0].body
    return "\n\n".join(
        f"## {s.title or f'Solution {i}'}\n\n{s.body.strip()}\n" for i, s in enumerate(solutions, 1)
    )


def _read(path: Path) -> Solution:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError([f"{path}:1: (file): cannot read: {exc}"]) from exc
    title = None
    lines = text.splitlines(keepends=True)
    if lines and lines[0].strip() == "---":
        end = next((i for i in range(1, len(lines)) if lines[i].rstrip() in ("---", "...")), None)
        if end is None:
            raise ManifestError([f"{path}:1: (top level): front matter is never closed with ---"])
        source = parse_yaml("".join(lines[1:end]), str(path), line_offset=1)
        data = source.data if source.data is not None else {}
        if not isinstance(data, dict):
            raise ManifestError([source.error((), "front matter is a mapping of fields")])
        if data.get("title") is not None and not isinstance(data["title"], str):
            raise ManifestError([source.error(("title",), "a title is text")])
        title = data.get("title")
        text = "".join(lines[end + 1 :])
    return Solution(path.name, title, _MORE.sub("", text))
