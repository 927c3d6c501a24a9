"""YAML that remembers where each value came from, so errors can name file, line and field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from labyard.errors import ManifestError


@dataclass(frozen=True)
class YamlSource:
    """Parsed YAML plus the node tree that maps a field path to its line."""

    data: Any
    root: yaml.Node | None
    name: str
    line_offset: int = 0
    """Added to every line: front matter starts below a `---` line of the file."""

    def line_of(self, loc: tuple[int | str, ...]) -> int:
        node = self.root
        best = node.start_mark.line if node is not None else 0
        for key in loc:
            node = _child(node, key)
            if node is None:
                break
            best = node.start_mark.line
        return best + 1 + self.line_offset

    def error(self, loc: tuple[int | str, ...], message: str) -> str:
        field = ".".join(str(part) for part in loc) or "(top level)"
        return f"{self.name}:{self.line_of(loc)}: {field}: {message}"

    def errors_from(self, exc: ValidationError) -> ManifestError:
        problems = [
            self.error(tuple(err["loc"]), _message(err)) for err in exc.errors(include_url=False)
        ]
        return ManifestError(problems)


def _message(err: Any) -> str:
    message = str(err["msg"])
    # pydantic's "Value error, ..." prefix says nothing to an author.
    return message.removeprefix("Value error, ")


def _child(node: yaml.Node | None, key: int | str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            # A YAML key is a scalar's text; pydantic reports `1:` as the int 1.
            if key_node.value == str(key):
                found: yaml.Node = value_node
                return found
        return None
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
        item: yaml.Node = node.value[key]
        return item
    return None


def parse_yaml(text: str, name: str, line_offset: int = 0) -> YamlSource:
    """Parse `text`; a syntax error becomes a ManifestError naming the line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = (mark.line + 1 if mark is not None else 1) + line_offset
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestError([f"{name}:{line}: invalid YAML: {problem}"]) from exc
    return YamlSource(data=data, root=root, name=name, line_offset=line_offset)


def read_yaml(path: Path) -> YamlSource:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ManifestError([f"{path}: cannot read: {exc.strerror}"]) from exc
    return parse_yaml(text, str(path))
