"""What a resource link opens: a challenge or tutorial page, or a class.

A link's custom parameter `class=<join code>` opens a class (labyard/services/classes.py):
`ClassLinks` checks the code before anything is written, and joins the launching account
once it exists (grades are sent for challenge and tutorial links, not for classes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from labyard.content.loader import Item
from labyard.content.models import Challenge, Tutorial
from labyard.errors import LabyardError, NotFound
from labyard.services.accounts import User
from labyard.services.classes import Classes
from labyard.services.lti.verify import LaunchRefused
from labyard.services.tasks.content import find_item

_PAGE = re.compile(r"^/((?:challenges|tutorials)/[a-z0-9][a-z0-9-]{0,63})/?$")


@dataclass(frozen=True)
class Target:
    key: str
    """`challenges/<slug>`, `tutorials/<slug>` or `class/<id>`."""
    path: str
    """The labyard page that shows it."""
    title: str = ""
    tasks: int = 0
    """How many tasks the learner solves there (the grade's maximum)."""


def key_of_url(url: str) -> str:
    """`challenges/<slug>` for a labyard challenge or tutorial page URL, else ''."""
    match = _PAGE.match(urlsplit(url).path)
    return match.group(1) if match else ""


def of_item(item: Item) -> Target:
    front = item.front
    tasks = sum(1 for t in getattr(front, "tasks", {}).values() if not t.init)
    return Target(item.key, "/" + item.key, getattr(front, "title", item.slug), tasks)


class ContentFinder:
    """The content folder's challenges and tutorials, as link targets."""

    def __init__(self, content_dir: Path | None) -> None:
        self.content_dir = content_dir

    def target(self, key: str) -> Target:
        item = find_item(self.content_dir, key)
        if not isinstance(item.front, Challenge | Tutorial):
            raise NotFound(f"{key!r} is not a challenge or tutorial")
        return of_item(item)

    def pickable(self) -> list[Target]:
        """What a teacher may pick in deep linking: every challenge, then every tutorial."""
        from labyard.content.loader import load_tree

        if self.content_dir is None:
            return []
        tree = load_tree(self.content_dir)
        items = tree.of_kind("challenge") + tree.of_kind("tutorial")
        return [of_item(item) for item in items]


CLASS_KEY = "class:"


class ClassLinks:
    """Links that open a class, by its join code."""

    def __init__(self, classes: Classes | None) -> None:
        self.classes = classes

    def target(self, code: str) -> Target:
        """Checked before any write: the code must name a class."""
        if self.classes is None:
            raise LaunchRefused("this labyard has no classes; link a challenge instead")
        try:
            found = self.classes.invitation(None, code)
        except NotFound as exc:
            raise LaunchRefused(f"the link's class code {code!r} names no class") from exc
        return Target(CLASS_KEY + code.strip().upper()[:40], "", found.title)

    def join(self, user: User, target: Target) -> str:
        """Make the launching account a member; the class page it goes to."""
        if self.classes is None:  # target() refused such a link already
            raise LaunchRefused("this labyard has no classes")
        try:
            view = self.classes.join(user, target.key.removeprefix(CLASS_KEY))
        except LabyardError as exc:  # full, ended, removed by the instructor
            raise LaunchRefused(f"joining the class failed: {exc.message}") from exc
        return f"/classes/{view.id}"
