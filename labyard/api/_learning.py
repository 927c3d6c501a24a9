"""What the learning pages show, computed from the content tree and a learner's attempts:
cards, catalogue filters, course and skill-path progress. No HTML here (see learn_pages.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from labyard.api.content import cover_url
from labyard.content.loader import ContentTree, Item
from labyard.content.models import Challenge, Course, Lesson, SkillPath, Tutorial
from labyard.services.tasks import AttemptRecord
from labyard.types import AttemptState

DIFFICULTIES = ("easy", "medium", "hard")


@dataclass(frozen=True)
class Standing:
    """Where one learner stands: content keys solved, attempted, and their attempts."""

    solved: frozenset[str] = frozenset()
    attempted: frozenset[str] = frozenset()
    attempts: tuple[AttemptRecord, ...] = ()

    @classmethod
    def of(cls, attempts: list[AttemptRecord]) -> Standing:
        solved = {a.content_key for a in attempts if a.state == AttemptState.SOLVED}
        return cls(frozenset(solved), frozenset(a.content_key for a in attempts), tuple(attempts))

    def state(self, key: str) -> str | None:
        """`solved`, `attempted` or None."""
        if key in self.solved:
            return "solved"
        return "attempted" if key in self.attempted else None

    def latest(self, key: str) -> AttemptRecord | None:
        """The attempt the page resumes: the active one, else the most recent."""
        mine = [a for a in self.attempts if a.content_key == key]
        active = [a for a in mine if not a.finished]
        return (active or mine)[-1] if mine else None


def url_of(key: str) -> str:
    """The page of a content key: `challenges/x` -> `/challenges/x`, skill paths by anchor."""
    if key.startswith("skill-paths/"):
        return "/skill-paths#" + key.removeprefix("skill-paths/")
    return "/" + key


def checked(item: Item) -> bool:
    """Whether the item has tasks a learner can solve (reading-only lessons have none)."""
    front = item.front
    return isinstance(front, Challenge | Tutorial | Lesson) and any(
        not task.init for task in front.tasks.values()
    )


def card(item: Item, standing: Standing) -> dict[str, Any]:
    front = item.front
    return {
        "key": item.key,
        "url": url_of(item.key),
        "title": front.title,
        "description": front.description,
        "categories": front.categories,
        "difficulty": front.difficulty,
        "state": standing.state(item.key),
        "checked": checked(item),
        "cover": cover_url(item),
        "extra": item.extra,
    }


@dataclass
class Catalogue:
    """Cards of one kind, filtered by category and difficulty, with the filter links."""

    cards: list[dict[str, Any]]
    categories: list[dict[str, Any]] = field(default_factory=list)
    difficulties: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0


def catalogue(
    tree: ContentTree, kind: str, standing: Standing, category: str, difficulty: str
) -> Catalogue:
    items = sorted(tree.of_kind(kind), key=lambda i: i.front.title.lower())
    shown = [
        i
        for i in items
        if (not category or category in i.front.categories)
        and (not difficulty or i.front.difficulty == difficulty)
    ]
    names = sorted({c for i in items for c in i.front.categories})
    return Catalogue(
        cards=[card(i, standing) for i in shown],
        categories=_chips(
            [("", "All"), *((c, c) for c in names)],
            "category",
            category,
            {"difficulty": difficulty},
        ),
        difficulties=_chips(
            [("", "Any"), *((d, d) for d in DIFFICULTIES)],
            "difficulty",
            difficulty,
            {"category": category},
        ),
        total=len(items),
    )


def _chips(
    options: list[tuple[str, str]], param: str, current: str, keep: dict[str, str]
) -> list[dict[str, Any]]:
    chips = []
    for value, label in options:
        query = {k: v for k, v in {**keep, param: value}.items() if v}
        url = "?" + urlencode(sorted(query.items())) if query else "?"
        chips.append({"label": label, "url": url, "current": value == current})
    return chips


def course(tree: ContentTree, item: Item, standing: Standing) -> dict[str, Any]:
    """A course's modules with their lessons, and how many checked lessons are solved."""
    front = item.front
    modules: list[dict[str, Any]] = []
    if isinstance(front, Course):
        for module in front.modules:
            keys = [f"{item.key}/{slug}" for slug in module.lessons]
            lessons = [card(tree.items[k], standing) for k in keys if k in tree.items]
            modules.append({"title": module.title, "lessons": lessons})
    lessons = [lesson for m in modules for lesson in m["lessons"] if lesson["checked"]]
    done = sum(1 for lesson in lessons if lesson["state"] == "solved")
    return {**card(item, standing), "modules": modules, "done": done, "total": len(lessons)}


def skill_path(tree: ContentTree, item: Item, standing: Standing) -> dict[str, Any]:
    """A skill path's steps in order; a course step counts as done when all of it is."""
    front = item.front
    steps = []
    for key in front.steps if isinstance(front, SkillPath) else []:
        found = tree.items.get(key)
        if found is None:
            continue
        step = card(found, standing)
        if isinstance(found.front, Course):
            summary = course(tree, found, standing)
            step["done"], step["total"] = summary["done"], summary["total"]
            complete = summary["total"] > 0 and summary["done"] == summary["total"]
            step["state"] = "solved" if complete else ("attempted" if summary["done"] else None)
        step["kind"] = found.kind
        steps.append(step)
    done = sum(1 for s in steps if s["state"] == "solved")
    return {
        **card(item, standing),
        "slug": item.slug,
        "steps": steps,
        "done": done,
        "total": len(steps),
    }


def neighbours(tree: ContentTree, lesson: Item) -> dict[str, Any]:
    """The course around a lesson and the lessons before and after it."""
    course_key = lesson.key.rsplit("/", 1)[0]
    lessons = tree.lessons(course_key)
    keys = [x.key for x in lessons]
    at = keys.index(lesson.key) if lesson.key in keys else -1
    before = lessons[at - 1] if at > 0 else None
    after = lessons[at + 1] if 0 <= at < len(lessons) - 1 else None
    return {
        "course": {"title": tree.items[course_key].front.title, "url": url_of(course_key)},
        "previous": {"title": before.front.title, "url": url_of(before.key)} if before else None,
        "next": {"title": after.front.title, "url": url_of(after.key)} if after else None,
    }
