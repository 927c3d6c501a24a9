"""The whole LTI 1.3 flow against the real app, a real machine and the test platform:
a teacher deep-links a challenge into the course (the platform verifies labyard's signed
answer with labyard's JWKS), a learner opens the link (login initiation -> launch, signed
in, on the challenge), solves it in a real playground, and the platform receives the grade
(AGS, with an OAuth2 token labyard got with its signed assertion); the teacher sends grades
again on demand and reads the roster (NRPS). On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import httpx

from tests.lti.conftest import Lab, csrf
from tests.lti.platform import CLIENT_ID, DEPLOYMENT, INSTRUCTOR, LEARNER, Launch, form_of

SOLVE_DEADLINE_S = 60.0


async def _until(what: str, check: Any, deadline_s: float = SOLVE_DEADLINE_S) -> Any:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.2)  # polling a condition under a deadline
    raise AssertionError(f"{what} did not happen within {deadline_s} s")


async def _deep_link(lab: Lab, teacher: httpx.AsyncClient) -> dict[str, Any]:
    """The teacher picks `challenges/touch-done` in the LMS; returns the content item."""
    launch = Launch(sub="teacher-1", name="Prof Tea", roles=[INSTRUCTOR],
                    message_type="LtiDeepLinkingRequest")  # fmt: skip
    launched = await lab.launch(teacher, launch)
    assert launched.status_code == 303, launched.text
    assert launched.headers["location"].startswith("/lti/deep-link?request=")
    picker = await teacher.get(launched.headers["location"])
    assert picker.status_code == 200, picker.text
    assert 'value="challenges/touch-done"' in picker.text
    token = re.search(r'name="request" value="([^"]+)"', picker.text).group(1)  # type: ignore[union-attr]
    form = {"csrf": teacher.cookies.get("labyard_csrf"), "request": token,
            "content": "challenges/touch-done"}  # fmt: skip
    answer = await teacher.post("/lti/deep-link", data=form)
    assert answer.status_code == 200, answer.text
    action, fields = form_of(answer.text)
    assert action == f"{lab.platform.url}/deep-link-return"
    async with httpx.AsyncClient(timeout=30) as lms:
        returned = await lms.post(action, data=fields)
    assert returned.status_code == 200, returned.text  # the platform verified the JWT
    (claims,) = lab.platform.deep_links
    assert claims["iss"] == CLIENT_ID and claims["aud"] == lab.platform.issuer
    lti = "https://purl.imsglobal.org/spec/lti/claim/"
    assert claims[lti + "message_type"] == "LtiDeepLinkingResponse"
    assert claims[lti + "deployment_id"] == DEPLOYMENT
    dl = "https://purl.imsglobal.org/spec/lti-dl/claim/"
    assert claims[dl + "data"] == "opaque-platform-data"
    (item,) = claims[dl + "content_items"]
    assert item["type"] == "ltiResourceLink" and item["url"] == f"{lab.url}/lti/launch"
    assert item["custom"] == {"content": "challenges/touch-done"}
    assert item["lineItem"]["scoreMaximum"] == 1
    return dict(item)


async def _solve(lab: Lab, learner: httpx.AsyncClient) -> str:
    started = await learner.post(
        "/api/attempts", json={"content": "challenges/touch-done"}, headers=csrf(learner)
    )
    assert started.status_code == 201, started.text
    attempt = started.json()
    ran = await learner.post(
        f"/api/playgrounds/{attempt['playground_id']}/exec",
        json={"command": "touch /tmp/done"},
        headers=csrf(learner),
    )
    assert ran.status_code == 200, ran.text

    async def solved() -> bool:
        r = await learner.get(f"/api/attempts/{attempt['id']}")
        return bool(r.json()["state"] == "solved")

    await _until("solving the challenge", solved)
    return str(attempt["id"])


async def test_deep_link_launch_solve_and_the_grade_reaches_the_platform(lab: Lab) -> None:
    platform = lab.platform
    async with lab.browser() as teacher, lab.browser() as learner:
        item = await _deep_link(lab, teacher)
        # The LMS makes the link from the content item, with a line item for its grade.
        lineitem = platform.lineitem_for(item["lineItem"]["label"], 1, "link-dl")
        link = {"resource_link": "link-dl", "custom": item["custom"],
                "target_link_uri": item["url"], "lineitem": lineitem}  # fmt: skip
        as_teacher = await lab.launch(
            teacher, Launch("teacher-1", "Prof Tea", [INSTRUCTOR], **link)
        )
        assert as_teacher.status_code == 303, as_teacher.text

        before = lab.counts()
        launched = await lab.launch(learner, Launch("student-1", "Stu Dent", [LEARNER], **link))
        assert launched.status_code == 303, launched.text
        assert launched.headers["location"] == "/challenges/touch-done"
        assert lab.counts() == (before[0] + 1, before[1] + 1)  # one account, one session
        me = (await learner.get("/api/me")).json()
        assert me["role"] == "learner" and me["email"].endswith("@lti.invalid")
        page = await learner.get("/challenges/touch-done")
        assert page.status_code == 200 and "Leave a mark" in page.text

        attempt_id = await _solve(lab, learner)

        async def graded() -> list[dict[str, Any]]:
            return [s for s in platform.scores if s["userId"] == "student-1"]

        (score,) = await _until("the grade passback", graded, 30)
        assert score["lineitem"] == lineitem
        assert (score["scoreGiven"], score["scoreMaximum"]) == (1, 1)
        assert score["activityProgress"] == "Completed"
        assert score["gradingProgress"] == "FullyGraded"
        assert platform.assertions and platform.assertions[0]["aud"] == f"{platform.url}/token"

        # The same LMS user again: the same account.
        again = await lab.launch(learner, Launch("student-1", "Stu Dent", [LEARNER], **link))
        assert again.status_code == 303
        assert (await learner.get("/api/me")).json()["id"] == me["id"]
        assert lab.counts()[0] == before[0] + 1
        # Such an account has no password: it signs in only through the LMS.
        for password in ("", "!lti", "a long enough password"):
            r = await learner.post("/api/login", json={"email": me["email"], "password": password})
            assert r.status_code == 401

        courses = (await teacher.get("/api/lti/courses")).json()
        (course,) = courses
        assert course["title"] == "Linux 101" and course["roster"] is True
        (link_row,) = course["links"]
        assert link_row["content"] == "challenges/touch-done"
        resent = await teacher.post(
            f"/api/lti/links/{link_row['id']}/grades", headers=csrf(teacher)
        )
        assert resent.status_code == 200, resent.text
        (grade,) = resent.json()
        assert (grade["user_id"], grade["score"], grade["status"]) == ("student-1", 1.0, "sent")
        assert len(await graded()) == 2

        platform.members = [
            {"user_id": "teacher-1", "name": "Prof Tea", "roles": [INSTRUCTOR]},
            {"user_id": "student-1", "name": "Stu Dent", "roles": [LEARNER]},
            {"user_id": "student-2", "given_name": "Ann", "family_name": "Other",
             "roles": ["Learner"]},
        ]  # fmt: skip
        roster = await teacher.get(f"/api/lti/courses/{course['id']}/roster")
        assert roster.status_code == 200, roster.text
        assert [(m["user_id"], m["name"], m["teacher"]) for m in roster.json()] == [
            ("teacher-1", "Prof Tea", True),
            ("student-1", "Stu Dent", False),
            ("student-2", "Ann Other", False),
        ]  # two pages, following the Link header
        course_page = await teacher.get(f"/lti/courses/{course['id']}")
        assert course_page.status_code == 200
        assert "Stu Dent" in course_page.text and "1 / 1" in course_page.text
        assert "Ann Other" in course_page.text

        # The learner sees no course, its grades or roster.
        assert (await learner.get("/api/lti/courses")).json() == []
        for path in (f"/api/lti/courses/{course['id']}/grades",
                     f"/api/lti/courses/{course['id']}/roster"):  # fmt: skip
            assert (await learner.get(path)).status_code == 404
        sent = await learner.post(f"/api/lti/links/{link_row['id']}/grades", headers=csrf(learner))
        assert sent.status_code == 404
        assert (await learner.get(f"/lti/courses/{course['id']}")).status_code == 404
        assert len(await graded()) == 2

        ended = await learner.delete(f"/api/attempts/{attempt_id}", headers=csrf(learner))
        assert ended.status_code == 200, ended.text


async def test_a_learner_cannot_deep_link(lab: Lab) -> None:
    before = lab.counts()
    async with lab.browser() as browser:
        launch = Launch("student-9", "Stu", [LEARNER], message_type="LtiDeepLinkingRequest")
        refused = await lab.launch(browser, launch)
    assert refused.status_code == 400
    assert "only teachers pick content" in refused.text
    assert lab.counts() == before


async def test_the_jwks_is_public_and_stable(lab: Lab) -> None:
    async with lab.browser() as browser:
        first = (await browser.get("/lti/jwks")).json()
        second = (await browser.get("/lti/jwks")).json()
    assert first == second
    (key,) = first["keys"]
    assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig")
    assert "d" not in key  # the public half only


async def test_without_a_line_item_labyard_makes_one_and_sends_progress(lab: Lab) -> None:
    platform = lab.platform
    link = {"resource_link": "link-2", "custom": {"content": "challenges/touch-done"}}
    async with lab.browser() as teacher, lab.browser() as learner:
        for browser, launch in (
            (teacher, Launch("teacher-2", "T", [INSTRUCTOR], **link)),
            (learner, Launch("student-3", "Sam", [LEARNER], **link)),
        ):
            assert (await lab.launch(browser, launch)).status_code == 303
        started = await learner.post(
            "/api/attempts", json={"content": "challenges/touch-done"}, headers=csrf(learner)
        )
        assert started.status_code == 201, started.text
        try:
            (course,) = (await teacher.get("/api/lti/courses")).json()
            links = {x["resource_link_id"]: x["id"] for x in course["links"]}
            link_id = links["link-2"]
            sent = await teacher.post(f"/api/lti/links/{link_id}/grades", headers=csrf(teacher))
            assert sent.status_code == 200, sent.text
            (grade,) = sent.json()
            assert (grade["user_id"], grade["completed"], grade["total"]) == ("student-3", 0, 1)
            assert grade["status"] == "sent", grade
        finally:
            ended = await learner.delete(
                f"/api/attempts/{started.json()['id']}", headers=csrf(learner)
            )
            assert ended.status_code == 200
    made = [i for i in platform.lineitems.values() if i["resourceLinkId"] == "link-2"]
    assert len(made) == 1 and made[0]["scoreMaximum"] == 1
    (score,) = [s for s in platform.scores if s["userId"] == "student-3"]
    assert score["lineitem"] == made[0]["id"]
    assert (score["scoreGiven"], score["activityProgress"]) == (0, "InProgress")


async def test_a_link_to_a_class_joins_the_learner(lab: Lab) -> None:
    from datetime import UTC, datetime, timedelta

    _, token = lab.account(role="instructor")
    now = datetime.now(UTC)
    body = {"title": "Lab session", "content": ["challenges/touch-done"], "seats": 5,
            "starts_at": (now - timedelta(minutes=5)).isoformat(),
            "ends_at": (now + timedelta(hours=2)).isoformat(), "guests": False}  # fmt: skip
    async with lab.api(token) as client:
        made = await client.post("/api/classes", json=body)
        assert made.status_code == 201, made.text
    klass = made.json()
    link = {"resource_link": "link-class", "custom": {"class": klass["join_code"].lower()}}
    async with lab.browser() as learner:
        launched = await lab.launch(learner, Launch("student-c", "Cee", [LEARNER], **link))
        assert launched.status_code == 303, launched.text
        assert launched.headers["location"] == f"/classes/{klass['id']}"
        mine = await learner.get(f"/api/classes/{klass['id']}")
        assert mine.status_code == 200, mine.text
        assert mine.json()["me"]["display_name"]
    before = lab.counts()
    async with lab.browser() as other:
        unknown = {"resource_link": "link-x", "custom": {"class": "ZZZZZZ"}}
        refused = await lab.launch(other, Launch("student-d", "Dee", [LEARNER], **unknown))
        assert refused.status_code == 400
        assert "names no class" in refused.text
    assert lab.counts() == before
