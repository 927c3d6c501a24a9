"""The imported tutorial's front matter as YAML that reads back exactly as it was written."""

from __future__ import annotations

from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None  # PyYAML quotes what a `|` block cannot hold
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def keeps(text: str) -> bool:
    """Whether `text` comes back from the front matter as it went in (YAML reads some line
    breaks, such as U+2028, as newlines)."""
    loaded: Any = yaml.safe_load(dump({"t": text}))
    return isinstance(loaded, dict) and loaded.get("t") == text
