"""Front matter fields labyard does not use: kept as metadata and noted, unless they look like
a typo of a field labyard does use.

iximiuz Labs content carries fields that mean nothing here (`tagz`, `createdAt`, `updatedAt`,
a tutorial's `challenges`, a task's `helper`, a playground's `tabs`, ...). Refusing them would
refuse that content, so every field a model does not know is sorted before validation:

- a field of another kind (`show_solution` on a tutorial) is an error;
- a field iximiuz documents (IXIMIUZ) is a *note*: kept in `Item.extra`, never an error;
- any other field that is a near miss of a labyard field (`titel`, `dificulty`,
  `show-solution`, `timeout`) is an error that names the field it resembles;
- anything else is a note, kept.

`labyard content validate --strict` turns notes into errors. A note reads like a problem,
`file:line: field: message`, so editors jump to both.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel

from labyard.manifest.source import YamlSource

Loc = tuple[int | str, ...]

IXIMIUZ: dict[str, dict[str, str]] = {
    "item": {
        "tagz": "iximiuz Labs' tags (labyard's are `tags`)",
        "createdAt": "when the item was written",
        "updatedAt": "when the item last changed",
        "challenges": "challenges a tutorial embeds with ::card-challenge",
        "name": "the item's name on iximiuz Labs (labyard uses the folder name)",
        "slug": "the item's URL on iximiuz Labs (labyard uses the folder name)",
        "difficulties": "a skill path's difficulties",
        "canvas": "a roadmap's drawing",
    },
    "task": {
        "helper": "helper tasks run like any other task here, done once they exit 0",
    },
    "playground": {
        "tabs": "labyard shows one terminal tab per machine",
        "registryAuth": "playgrounds have no registry of their own here",
        "machines": (
            "a base playground's machines are not customised here, all of them are used; "
            "write an inline manifest or a playgrounds/*.yaml to change them"
        ),
    },
}
"""Fields iximiuz Labs documents that labyard accepts and keeps without using them, with what
the note says about each."""

_NEAR_MISS = 0.8


@dataclass
class Sorted:
    """What `sort_fields` found: metadata kept, notes, and errors."""

    extra: dict[str, Any] = field(default_factory=dict)
    """Kept fields by dotted path: `createdAt`, `tasks.helper_x.helper`, `playground.tabs`."""
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def sort_fields(
    source: YamlSource,
    data: dict[str, Any],
    loc: Loc,
    model: type[BaseModel],
    scope: str,
    found: Sorted,
    elsewhere: dict[str, str] | None = None,
) -> dict[str, Any]:
    """`data` without the fields `model` does not know; each one is kept (with a note) or
    reported as an error in `found`. `elsewhere` maps fields of sibling models to the kind
    they belong to."""
    known = field_names(model)
    kept: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key)
        where = (*loc, key)
        if name in known:
            kept[key] = value
        elif elsewhere and name in elsewhere:
            found.problems.append(source.error(where, f"is a field of {elsewhere[name]} items"))
        elif name in IXIMIUZ[scope]:
            _keep(source, where, value, IXIMIUZ[scope][name], found)
        elif (match := near_miss(name, known)) is not None:
            found.problems.append(source.error(where, f"unknown field (did you mean {match!r}?)"))
        else:
            _keep(source, where, value, "", found)
    return kept


def _keep(source: YamlSource, loc: Loc, value: Any, why: str, found: Sorted) -> None:
    found.extra[".".join(map(str, loc))] = plain(value)
    detail = f": {why}" if why else ""
    found.notes.append(source.error(loc, f"kept as metadata, not used by labyard{detail}"))


def near_miss(name: str, known: set[str]) -> str | None:
    """The known field `name` is probably a typo of, or None."""
    wanted = _normal(name)
    scored = []
    for candidate in sorted(known):
        other = _normal(candidate)
        if wanted == other or (len(wanted) >= 4 and other.startswith(wanted)):
            return candidate
        scored.append((difflib.SequenceMatcher(None, wanted, other).ratio(), candidate))
    best = max(scored, default=(0.0, ""))
    return best[1] if best[0] >= _NEAR_MISS else None


def _normal(name: str) -> str:
    return re.sub(r"[-_\s]", "", name.lower())


def field_names(model: type[BaseModel]) -> set[str]:
    names = set(model.model_fields)
    names |= {f.alias for f in model.model_fields.values() if f.alias}
    return names


def plain(value: Any) -> Any:
    """`value` as JSON can hold it: YAML dates (`createdAt: 2025-03-28`) become ISO text."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
