"""Launches that must be refused, each with a page saying why and nothing created: no
account, no session, no cookie. Against the real app and the test platform, on SQLite and
PostgreSQL."""

from __future__ import annotations

import pytest

from tests.lti.conftest import Lab
from tests.lti.platform import LEARNER, Launch

CONTENT = {"content": "challenges/touch-done"}


def _student(tamper: str = "") -> Launch:
    return Launch(sub=f"student-{tamper or 'ok'}", name="Stu Dent", roles=[LEARNER],
                  custom=CONTENT, tamper=tamper)  # fmt: skip


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ("forged", "the launch&#39;s signature is not the platform&#39;s"),
        ("aud", "for a client id labyard does not know"),
        ("azp", "several audiences but no azp"),
        ("expired", "the launch has expired"),
        ("deployment", "deployment &#39;deployment-x&#39;"),
    ],
)
async def test_a_bad_id_token_is_refused_and_creates_nothing(
    lab: Lab, tamper: str, message: str
) -> None:
    before = lab.counts()
    async with lab.browser() as browser:
        refused = await lab.launch(browser, _student(tamper))
        assert refused.status_code == 400, refused.text
        assert "The launch from your LMS was refused" in refused.text
        assert message in refused.text, refused.text
        assert "labyard_session" not in refused.headers.get("set-cookie", "")
        assert (await browser.get("/api/me")).status_code == 401
    assert lab.counts() == before


async def test_a_launch_this_browser_did_not_start_is_refused(lab: Lab) -> None:
    before = lab.counts()
    async with lab.browser() as browser:
        fields = await lab.authorize(await lab.initiate(browser, _student()))
        browser.cookies.clear()
        refused = await browser.post("/lti/launch", data=fields)
    assert refused.status_code == 400
    assert "this browser did not start the sign-in" in refused.text
    assert lab.counts() == before


async def test_a_replayed_launch_is_refused(lab: Lab) -> None:
    async with lab.browser() as browser:
        redirect = await lab.initiate(browser, _student("replay"))
        state_cookie = next(c for c in browser.cookies.jar if c.name.startswith("labyard_lti_"))
        fields = await lab.authorize(redirect)
        first = await browser.post("/lti/launch", data=fields)
        assert first.status_code == 303, first.text
        after_first = lab.counts()
    async with lab.browser() as attacker:  # the same form post and state cookie, again
        attacker.cookies.set(state_cookie.name, state_cookie.value or "", path="/lti")
        again = await attacker.post("/lti/launch", data=fields)
        assert again.status_code == 400, again.text
        assert "this launch was used already" in again.text
        assert "labyard_session" not in again.headers.get("set-cookie", "")
        assert (await attacker.get("/api/me")).status_code == 401
    assert lab.counts() == after_first


async def test_a_login_initiation_from_an_unknown_platform_is_refused(lab: Lab) -> None:
    async with lab.browser() as browser:
        params = {"iss": "https://lms.example.edu", "login_hint": "x", "target_link_uri": "/"}
        refused = await browser.get("/lti/login", params=params)
        assert refused.status_code == 400
        assert "no LTI platform &#39;https://lms.example.edu&#39;" in refused.text
        posted = await browser.post("/lti/login", data={"iss": lab.platform.issuer})
        assert posted.status_code == 400
        assert "needs iss and login_hint" in posted.text
        assert not any(c.name.startswith("labyard_lti_") for c in browser.cookies.jar)
