"""Which content an attempt plays, and in which playground."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from labyard.content.loader import Item, load_item
from labyard.content.models import Challenge, Lesson, Tutorial
from labyard.errors import InvalidInput, NotFound
from labyard.manifest import Manifest
from labyard.services.catalog import Catalog

_KEY = re.compile(r"^(challenges|tutorials|courses)(/[a-z0-9][a-z0-9-]{0,63}){1,2}$")


def find_item(content_dir: Path | None, key: str) -> Item:
    """The item `challenges/<slug>` (or a tutorial, or a course's lesson) of the folder."""
    if content_dir is None:
        raise NotFound("this server has no content folder")
    key = key.strip("/")
    if not _KEY.match(key):
        raise NotFound(f"no content item {key!r}")
    folder = content_dir / key
    if not (folder / "index.md").is_file():
        raise NotFound(f"no content item {key!r}")
    return load_item(folder)


def manifest_for(
    item: Item, catalog: Catalog, own: Mapping[str, Manifest] | None = None
) -> Manifest:
    """The playground the item runs in: inline, from its content folder, or the catalog's."""
    front = item.front
    if not isinstance(front, Challenge | Tutorial | Lesson) or front.playground is None:
        raise InvalidInput(f"{item.key} has no playground to run its tasks in")
    if isinstance(front.playground, Manifest):
        return front.playground
    name = front.playground_name or ""
    if own and name in own:
        return own[name]
    return catalog.get(name).manifest
