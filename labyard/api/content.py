"""Content as JSON: the items of the server's content folder, rendered, kept fresh on save.

    GET /api/content               every item (no bodies), problems, version
    GET /api/content/version       {"version": N}: poll it; a new N means reload the page
    GET /api/content/static/KEY/F  a file of an item: anything under its __static__/, media
                                   beside it; never index.md, solutions or machine files
    GET /api/content/KEY           one item with its body as HTML, e.g. KEY challenges/foo

Check scripts and solutions are not served: they would give the answers away.
"""

from __future__ import annotations

import mimetypes
import threading
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from labyard.content import layout
from labyard.content.blocks import static_path
from labyard.content.loader import ContentTree, Item
from labyard.content.markdown import render_item
from labyard.content.models import Challenge, Course, Lesson, SkillPath, Tutorial
from labyard.content.solutions import is_solution
from labyard.content.watch import ContentWatcher
from labyard.errors import NotFound
from labyard.manifest import Manifest
from labyard.services import Labyard

router = APIRouter(prefix="/api/content", tags=["content"])
_lock = threading.Lock()

STATIC_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".avif", ".mp4", ".webm", ".pdf", ".txt"}
)
"""What is served from beside index.md; everything under `__static__/` is served."""
AS_TEXT = frozenset(
    {"text/html", "application/xhtml+xml", "text/javascript", "application/javascript"}
)
"""Types served as plain text: pages and scripts of an item never run on this site."""
# An SVG or PDF opened on its own must not run script with this site's cookies.
STATIC_HEADERS = {
    "Content-Security-Policy": "sandbox; default-src 'none'; img-src 'self'; "
    "style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


def watcher(request: Request) -> ContentWatcher:
    """The app's content watcher, made on first use from the instance's content folder."""
    state = request.app.state
    with _lock:
        found: ContentWatcher | None = getattr(state, "content_watcher", None)
        if found is None:
            labyard: Labyard = state.labyard
            root = labyard.catalog.content_dir
            if root is None:
                raise NotFound("this server has no content folder (start it with --content)")
            found = state.content_watcher = ContentWatcher(root)
    return found


def static_url(item: Item, path: str) -> str:
    return f"/api/content/static/{item.key}/{quote(path)}"


def cover_url(item: Item) -> str | None:
    """The URL of the item's cover image (one of its files, or a URL as given), or None."""
    cover = item.front.cover
    path = static_path(cover) if cover else None
    return static_url(item, path) if path else cover


@router.get("")
def index(request: Request) -> dict[str, Any]:
    """Every item without its body, the problems found, and the version."""
    content = watcher(request)
    tree = content.tree()
    return {
        "version": content.version,
        "summary": tree.summary(),
        "problems": tree.problems,
        "notes": tree.notes,
        "items": [_card(item) for item in tree.items.values()],
        "playgrounds": sorted(tree.playgrounds),
    }


@router.get("/version")
def version(request: Request) -> dict[str, int]:
    """Goes up each time a file of the content folder changes (checked at most once a
    second)."""
    content = watcher(request)
    content.check()
    return {"version": content.version}


@router.get("/static/{path:path}")
def static(path: str, request: Request) -> FileResponse:
    """A file of an item: anything under its `__static__/`, media beside its index.md; never
    index.md, a solution, a file its machines are given, or a hidden file."""
    tree = watcher(request).tree()
    item, relative = _owner(tree, path)
    target = static_file(item, relative)
    if target is None:
        raise NotFound(f"no file {relative!r} beside {item.key}")
    return FileResponse(target, media_type=_media_type(target), headers=STATIC_HEADERS)


def static_file(item: Item, relative: str) -> Path | None:
    """The file `relative` names that may be served for `item`, or None."""
    parts = PurePosixPath(relative).parts
    if not parts or any(part.startswith(".") for part in parts):
        return None
    target = layout.static_file(item.dir, relative)
    if (
        target is None
        or target.name == "index.md"
        or is_solution(target.name)
        or target in item.machine_file_sources()
    ):
        return None
    if target.is_relative_to((item.dir / layout.STATIC).resolve()):
        return target
    return target if target.suffix.lower() in STATIC_SUFFIXES else None


_TYPES = {".yaml": "application/yaml", ".yml": "application/yaml", ".md": "text/markdown"}
"""Types Python's table may not know (3.11 has no YAML)."""


def _media_type(path: Path) -> str:
    guessed = _TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
    if guessed is None:
        return "application/octet-stream"
    if guessed in AS_TEXT:
        return "text/plain; charset=utf-8"
    return guessed


@router.get("/{key:path}")
def item(key: str, request: Request) -> dict[str, Any]:
    """One item with its body rendered to HTML."""
    content = watcher(request)
    tree = content.tree()
    found = tree.get(key)
    rendered = render_item(found, static_url)
    return {
        **_card(found),
        "version": content.version,
        "html": rendered.html,
        "task_blocks": [block.name for block in rendered.tasks],
        **_children(tree, found),
    }


def _owner(tree: ContentTree, path: str) -> tuple[Item, str]:
    """The item whose key is the longest prefix of `path`, and the rest of the path."""
    for key in sorted(tree.items, key=len, reverse=True):
        if path.startswith(key + "/"):
            return tree.items[key], path[len(key) + 1 :]
    raise NotFound(f"no content item owns {path!r}")


def _card(item: Item) -> dict[str, Any]:
    front = item.front
    card: dict[str, Any] = {
        "key": item.key,
        "kind": item.kind,
        "slug": item.slug,
        "title": front.title,
        "description": front.description,
        "categories": front.categories,
        "tags": front.tags,
        "difficulty": front.difficulty,
        "cover": cover_url(item),
        "extra": item.extra,
    }
    if isinstance(front, Challenge | Tutorial | Lesson):
        inline = front.playground if isinstance(front.playground, Manifest) else None
        card["playground"] = front.playground_name or (inline.name if inline else None)
        card["tasks"] = [
            {"name": name, "init": task.init, "needs": task.needs, "machine": task.machine}
            for name, task in front.tasks.items()
        ]
    if isinstance(front, Challenge):
        card["has_solution"] = bool(item.solutions)
        card["solutions"] = len(item.solutions)
        card["show_solution"] = front.show_solution
    return card


def _children(tree: ContentTree, item: Item) -> dict[str, Any]:
    if isinstance(item.front, Course):
        modules = [
            {
                "name": m.name,
                "title": m.title,
                "lessons": [f"{item.key}/{lesson}" for lesson in m.lessons],
            }
            for m in item.front.modules
        ]
        return {"modules": modules}
    if isinstance(item.front, SkillPath):
        return {"steps": item.front.steps}
    return {}
