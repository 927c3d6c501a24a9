"""Names and Role Provisioning Services: a course's members, fetched from the platform (every
page of them, following its `Link: rel="next"` headers) for the course's teachers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from labyard.errors import ProviderFailure
from labyard.services.accounts import User
from labyard.services.lti.courses import check_teaches
from labyard.services.lti.registrations import Registrations
from labyard.services.lti.roles import is_teacher
from labyard.services.lti.service_tokens import MEMBERSHIPS, TIMEOUT_S, ServiceTokens
from labyard.store import Database

MEMBERSHIP_TYPE = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
MAX_PAGES = 50


@dataclass(frozen=True)
class Member:
    user_id: str
    name: str
    email: str
    roles: list[str]
    status: str

    def to_json(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "name": self.name,
            "email": self.email,
            "roles": self.roles,
            "teacher": is_teacher(self.roles),
            "status": self.status,
        }


def _member(entry: dict[str, Any]) -> Member:
    name = entry.get("name") or " ".join(
        str(entry[k]) for k in ("given_name", "family_name") if entry.get(k)
    )
    return Member(
        str(entry.get("user_id", "")),
        str(name or ""),
        str(entry.get("email") or ""),
        [str(r) for r in entry.get("roles") or []],
        str(entry.get("status") or "Active"),
    )


class Roster:
    def __init__(self, db: Database, registrations: Registrations, tokens: ServiceTokens) -> None:
        self.db = db
        self.registrations = registrations
        self.tokens = tokens

    def members(self, actor: User, context_row_id: int) -> list[Member]:
        with self.db.session() as session:
            context = check_teaches(session, actor, context_row_id)
            url, platform_id = context.memberships_url, context.platform_id
        if not url:
            raise ProviderFailure(
                "the LMS offers no roster for this course (enable Names and Role Provisioning "
                "for the tool)",
                reason="lti_no_roster",
            )
        platform = self.registrations.get(platform_id)
        found: list[Member] = []
        next_url: str | None = url
        for _ in range(MAX_PAGES):
            if next_url is None:
                break
            token = self.tokens.token(platform, [MEMBERSHIPS])
            headers = {"Authorization": f"Bearer {token}", "Accept": MEMBERSHIP_TYPE}
            try:
                response = httpx.get(next_url, headers=headers, timeout=TIMEOUT_S)
                response.raise_for_status()
                found += [_member(m) for m in response.json().get("members", [])]
            except (httpx.HTTPError, ValueError, AttributeError, TypeError) as exc:
                raise ProviderFailure(
                    f"the platform {platform.issuer} did not give the roster",
                    detail=f"{next_url}: {exc}",
                ) from exc
            next_url = response.links.get("next", {}).get("url")
        return found
