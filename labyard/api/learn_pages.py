"""The learning pages: catalogues of challenges, tutorials, courses and skill paths; one
item's page (its text beside its terminals, tasks turning green live); the learner's progress.

    GET /challenges, /tutorials       cards; ?category=&difficulty= filter (plain links)
    GET /courses, /courses/{course}   modules -> lessons, with completion
    GET /skill-paths                  ordered steps with progress
    GET /challenges/{slug}, /tutorials/{slug}, /courses/{course}/{lesson}
    GET /progress                     attempts, solved items, per-course completion
    GET /api/solutions/{key}          a challenge's solution as HTML, when its
                                      `show_solution` allows it for this learner

Pages only read; the item page's script starts and follows attempts through the attempts
API. A solution is never in a page's source: the script asks for it, and the server decides.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from labyard.api import _learning as learning
from labyard.api.account_pages import page_user, to_login
from labyard.api.content import static_url, watcher
from labyard.api.deps import LabyardDep, UserDep, get_labyard
from labyard.api.web import render
from labyard.content.loader import ContentTree, Item
from labyard.content.markdown import render_item, render_markdown
from labyard.content.models import Challenge
from labyard.errors import Forbidden, LabyardError, NotFound
from labyard.services import User
from labyard.services.tasks import AttemptRecord
from labyard.types import AttemptState

router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix="/api", tags=["content"])
KINDS = {"challenge": "Challenges", "tutorial": "Tutorials"}


def _standing(request: Request, user: User | None) -> learning.Standing:
    if user is None:
        return learning.Standing()
    return learning.Standing.of(get_labyard(request).attempts.of_owner(user.owner))


def _tree(request: Request) -> ContentTree | None:
    try:
        return watcher(request).tree()
    except NotFound:  # a server without a content folder: empty catalogues
        return None


def _missing(request: Request, what: str) -> Response:
    return render(request, "not_found.html", {"what": what}, 404)


# -- catalogues -----------------------------------------------------------------------------


async def _catalogue(request: Request, kind: str, category: str, difficulty: str) -> Response:
    user = page_user(request)
    tree = _tree(request)
    shown = learning.Catalogue([])
    if tree is not None:
        shown = learning.catalogue(tree, kind, _standing(request, user), category, difficulty)
    context = {
        "kind": kind,
        "heading": KINDS[kind],
        "catalogue": shown,
        "filtered": bool(category or difficulty),
    }
    return render(request, "learn_catalogue.html", context)


@router.get("/challenges", response_model=None)
async def challenges(request: Request, category: str = "", difficulty: str = "") -> Response:
    return await _catalogue(request, "challenge", category, difficulty)


@router.get("/tutorials", response_model=None)
async def tutorials(request: Request, category: str = "", difficulty: str = "") -> Response:
    return await _catalogue(request, "tutorial", category, difficulty)


@router.get("/courses", response_model=None)
async def courses(request: Request) -> Response:
    tree = _tree(request)
    standing = _standing(request, page_user(request))
    found = [learning.course(tree, i, standing) for i in tree.of_kind("course")] if tree else []
    return render(request, "learn_courses.html", {"courses": found})


@router.get("/courses/{course}", response_model=None)
async def course_page(request: Request, course: str) -> Response:
    user = page_user(request)
    tree = _tree(request)
    item = tree.items.get(f"courses/{course}") if tree else None
    if tree is None or item is None or item.kind != "course":
        return _missing(request, "course")
    summary = learning.course(tree, item, _standing(request, user))
    return render(request, "learn_course.html", {"course": summary})


@router.get("/skill-paths", response_model=None)
async def skill_paths(request: Request) -> Response:
    tree = _tree(request)
    standing = _standing(request, page_user(request))
    found = (
        [learning.skill_path(tree, i, standing) for i in tree.of_kind("skill-path")] if tree else []
    )
    return render(request, "learn_paths.html", {"paths": found})


# -- one item -------------------------------------------------------------------------------


@router.get("/challenges/{slug}", response_model=None)
async def challenge_page(request: Request, slug: str) -> Response:
    return await _item_page(request, f"challenges/{slug}", "challenge")


@router.get("/tutorials/{slug}", response_model=None)
async def tutorial_page(request: Request, slug: str) -> Response:
    return await _item_page(request, f"tutorials/{slug}", "tutorial")


@router.get("/courses/{course}/{lesson}", response_model=None)
async def lesson_page(request: Request, course: str, lesson: str) -> Response:
    return await _item_page(request, f"courses/{course}/{lesson}", "lesson")


async def _item_page(request: Request, key: str, kind: str) -> Response:
    user = page_user(request)
    tree = _tree(request)
    item = tree.items.get(key) if tree else None
    if tree is None or item is None or item.kind != kind:
        return _missing(request, kind)
    standing = _standing(request, user)
    latest = standing.latest(key)
    context = {
        "item": learning.card(item, standing),
        "kind": kind,
        "html": render_item(item, static_url).html,
        "playground": _playground(request, item),
        "lesson": learning.neighbours(tree, item) if kind == "lesson" else None,
        "data": {
            "key": key,
            "checked": learning.checked(item),
            "attempt": latest.to_json() if latest and latest.state != "ended" else None,
            "solution": _solution_rule(item),
            "signed_in": user is not None,
            "classes": get_labyard(request).classes.running_with(user, key) if user else [],
        },
    }
    return render(request, "learn_item.html", context)


def _playground(request: Request, item: Item) -> dict[str, Any] | None:
    """The item's playground as the Start card shows it; None if it has none."""
    try:
        manifest = get_labyard(request).attempts.manifest_for(item)
    except LabyardError:
        return None
    machines = [{"name": m.name, "image": m.image} for m in manifest.machines]
    return {"title": manifest.title or manifest.name, "machines": machines}


def _solution_rule(item: Item) -> str:
    """`never`, `after-solving` or `always`; `never` when there is no solution to show."""
    if not isinstance(item.front, Challenge) or item.solution_md is None:
        return "never"
    return item.front.show_solution


# -- progress -------------------------------------------------------------------------------


def _when(moment: datetime | str | None) -> str:
    if moment is None:
        return ""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _attempt_row(record: AttemptRecord) -> dict[str, Any]:
    finished = record.finished_at
    seconds = (finished - record.started_at).total_seconds() if finished else None
    return {
        "title": record.spec.title,
        "url": learning.url_of(record.content_key),
        "state": record.state,
        "started": _when(record.started_at),
        "finished": _when(finished),
        "seconds": int(seconds) if seconds is not None else None,
        "message": record.message,
    }


@router.get("/progress", response_model=None)
async def progress_page(request: Request) -> Response:
    user = page_user(request)
    if user is None:
        return to_login(request)
    labyard = get_labyard(request)
    records = labyard.attempts.of_owner(user.owner)
    standing = learning.Standing.of(records)
    items = [
        {
            **entry,
            "url": learning.url_of(str(entry["content"])),
            "solved_on": _when(entry["first_solved_at"]),
            "last": _when(entry["last_started_at"]),
        }
        for entry in labyard.attempts.progress(user.owner)
    ]
    tree = _tree(request)
    context = {
        "items": items,
        "attempts": [_attempt_row(r) for r in reversed(records)],
        "courses": [learning.course(tree, i, standing) for i in tree.of_kind("course")]
        if tree
        else [],
        "solved": len(standing.solved),
    }
    return render(request, "learn_progress.html", context)


# -- solutions ------------------------------------------------------------------------------


@api_router.get("/solutions/{key:path}")
async def solution(
    key: str, request: Request, labyard: LabyardDep, user: UserDep
) -> dict[str, Any]:
    """A challenge's solutions as HTML (`solution.md`, or `solution-01.md`, ... each under
    its title in `html`, and one by one in `solutions`): 404 without one or with
    `show_solution: never`, 403 until this learner has solved it when `after-solving`."""
    tree = watcher(request).tree()
    item = tree.get(key)
    rule = _solution_rule(item)
    if rule == "never" or item.solution_md is None:
        raise NotFound(f"{item.key} has no solution to show")
    if rule == "after-solving":
        solved = any(
            r.content_key == item.key and r.state == AttemptState.SOLVED
            for r in labyard.attempts.of_owner(user.owner)
        )
        if not solved:
            raise Forbidden("solve the challenge first: its solution opens then")

    def html(markdown: str) -> str:
        return render_markdown(markdown, lambda path: static_url(item, path)).html

    written = [{"file": s.file, "title": s.title, "html": html(s.body)} for s in item.solutions]
    return {"key": item.key, "html": html(item.solution_md), "solutions": written}
