"""A Killercoda scenario's index.json, with a record of which fields the import read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
