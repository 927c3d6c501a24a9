"""The watcher's page: `/classes/{id}/watch/{account}` shows a class member's terminal,
read-only, live (static/watch.js over api/looks.py), and the looks at that member so far.
For the class's instructor and admins; policy lives in services/looks.py."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from labyard.api.account_pages import page_user, to_login
from labyard.api.deps import get_labyard
from labyard.api.web import render
from labyard.errors import NotFound
from labyard.services.terminals import DEFAULT_TAB, TAB_NAME

router = APIRouter(include_in_schema=False)


@router.get("/classes/{class_id}/watch/{account_id}", response_model=None)
def watch_page(
    request: Request, class_id: str, account_id: int, machine: str = "", tab: str = DEFAULT_TAB
) -> Response:
    user = page_user(request)
    if user is None:
        return to_login(request)
    labyard = get_labyard(request)
    try:
        view = labyard.classes.get(user, class_id)
    except NotFound:
        return render(request, "not_found.html", {"what": "class"}, 404)
    if view.members is None:
        return render(
            request, "forbidden.html", {"what": "a learner's terminal (instructors)"}, 403
        )
    found = [m for m in view.members if m.account_id == account_id and m.removed_at is None]
    if not found:
        return render(request, "not_found.html", {"what": "class member"}, 404)
    looks = [x for x in labyard.looks.log(user, class_id) if x.learner_id == account_id]
    data = {
        "class_id": class_id,
        "account_id": account_id,
        "machine": machine,
        "tab": tab if TAB_NAME.fullmatch(tab) else DEFAULT_TAB,
    }
    context = {"c": view, "learner": found[0], "looks": looks, "data": data}
    return render(request, "class_watch.html", context)
