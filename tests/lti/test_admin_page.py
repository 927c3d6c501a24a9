"""The admin's LTI page: labyard's URLs for the LMS, the platforms, add and remove."""

from __future__ import annotations

import re

import httpx

from labyard.services import User
from tests.lti.conftest import PASSWORD, Lab


async def _sign_in(lab: Lab, browser: httpx.AsyncClient, role: str) -> User:
    user, _ = lab.account(role=role)
    r = await browser.post("/api/login", json={"email": user.email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return user


async def test_admins_register_and_remove_platforms_on_the_page(lab: Lab) -> None:
    async with lab.browser() as browser:
        await _sign_in(lab, browser, "admin")
        page = await browser.get("/admin/lti")
        assert page.status_code == 200
        for path in ("/lti/login", "/lti/launch", "/lti/jwks"):
            assert f"{lab.url}{path}" in page.text
        assert lab.platform.issuer in page.text  # registered by the fixture
        csrf = browser.cookies.get("labyard_csrf")
        form = {
            "csrf": csrf, "name": "Uni Moodle", "issuer": "https://moodle.uni.example",
            "client_id": "page-1", "deployment_ids": "1, 2",
            "jwks_url": "https://moodle.uni.example/mod/lti/certs.php",
            "auth_url": "https://moodle.uni.example/mod/lti/auth.php",
            "token_url": "https://moodle.uni.example/mod/lti/token.php",
        }  # fmt: skip
        added = await browser.post("/admin/lti", data=form)
        assert added.status_code == 303, added.text
        page = await browser.get("/admin/lti")
        assert "Uni Moodle" in page.text and "1, 2" in page.text
        again = await browser.post("/admin/lti", data=form)
        assert again.status_code == 409 and "is registered" in again.text
        bad = await browser.post(
            "/admin/lti", data={**form, "client_id": "page-2", "token_url": "http://x.example/t"}
        )
        assert bad.status_code == 422 and "token_url" in bad.text
        platform_id = re.search(r'data-platform="(\d+)">\s*<td>Uni Moodle', page.text).group(1)  # type: ignore[union-attr]
        removed = await browser.post(f"/admin/lti/{platform_id}/remove", data={"csrf": csrf})
        assert removed.status_code == 303
        assert "Uni Moodle" not in (await browser.get("/admin/lti")).text


async def test_learners_get_403_on_the_admin_page(lab: Lab) -> None:
    async with lab.browser() as browser:
        await _sign_in(lab, browser, "learner")
        assert (await browser.get("/admin/lti")).status_code == 403
        csrf = browser.cookies.get("labyard_csrf")
        r = await browser.post("/admin/lti", data={"csrf": csrf, "issuer": "https://e.x"})
        assert r.status_code == 403
