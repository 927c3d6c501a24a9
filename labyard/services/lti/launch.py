"""The LTI 1.3 sign-in: OIDC third-party login initiation, then the launch (the id_token
form post). A launch that passes verify.py uses its nonce up (a second one is a replay),
creates or matches the account of the platform's user (`iss` + `sub`), records the course
and resource link with their service endpoints, and says where the browser goes.

Launch targets, in this order: the custom parameter `class` (a class, see targets.py),
the custom parameter `content` (`challenges/<slug>`, what deep linking sets), a labyard
page as the link's `target_link_uri` (`/challenges/<slug>`), or what the link opened before.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labyard.errors import NotFound
from labyard.services.accounts import Accounts, User
from labyard.services.lti import targets
from labyard.services.lti.keys import ToolKeys
from labyard.services.lti.registrations import Platform, Registrations
from labyard.services.lti.roles import is_teacher
from labyard.services.lti.verify import (
    DEEP_LINKING,
    LTI,
    LaunchRefused,
    PlatformKeys,
    audiences,
    unverified_claims,
    verify_id_token,
)
from labyard.store import Database, UserRow
from labyard.store.models import (
    LtiContextRow,
    LtiGradeRow,
    LtiIdentityRow,
    LtiLinkRow,
    LtiNonceRow,
)
from labyard.types import Role

AGS = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
NRPS = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
DL_SETTINGS = "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"
NO_PASSWORD = "!lti"
"""The password hash of an LMS account: no password verifies against it (not argon2)."""
NONCE_KEPT = timedelta(hours=2)
"""At least as long as any id_token lives (their `exp` is minutes away), plus leeway."""
DEEP_LINK_AUDIENCE = "labyard:lti-deep-link"


@dataclass(frozen=True)
class Login:
    """Where the login initiation sends the browser, and what to remember in a cookie."""

    redirect_url: str
    state: str
    nonce: str


@dataclass(frozen=True)
class Launched:
    user: User
    target: str
    """The path the browser goes to now."""
    deep_link: str | None = None
    """A deep-linking request (signed by labyard, for the picker page), or None."""


def _now() -> datetime:
    return datetime.now(UTC)


class Launches:
    def __init__(
        self,
        db: Database,
        accounts: Accounts,
        registrations: Registrations,
        keys: PlatformKeys,
        tool_keys: ToolKeys,
        content: targets.ContentFinder,
        class_links: targets.ClassLinks,
    ) -> None:
        self.db = db
        self.accounts = accounts
        self.registrations = registrations
        self.keys = keys
        self.tool_keys = tool_keys
        self.content = content
        self.class_links = class_links

    # -- login initiation ----------------------------------------------------------------

    def login(self, params: dict[str, str], launch_url: str) -> Login:
        """The platform's login initiation (`iss`, `login_hint`, `target_link_uri`,
        optionally `client_id`, `lti_message_hint`, `lti_deployment_id`): the redirect to
        the platform's authorization endpoint, with a fresh state and nonce."""
        issuer, hint = params.get("iss", ""), params.get("login_hint", "")
        if not issuer or not hint:
            raise LaunchRefused("the login initiation needs iss and login_hint")
        platform = self.registrations.find(issuer, params.get("client_id"))
        if platform is None:
            raise LaunchRefused(
                f"no LTI platform {issuer!r}"
                + (f" with client id {params['client_id']!r}" if params.get("client_id") else "")
                + " is registered with labyard; the administrator registers it first"
            )
        deployment = params.get("lti_deployment_id")
        if deployment and deployment not in platform.deployment_ids:
            raise LaunchRefused(f"deployment {deployment!r} of {issuer} is not registered")
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        query = {
            "scope": "openid",
            "response_type": "id_token",
            "response_mode": "form_post",
            "prompt": "none",
            "client_id": platform.client_id,
            "redirect_uri": launch_url,
            "login_hint": hint,
            "state": state,
            "nonce": nonce,
        }
        if params.get("lti_message_hint"):
            query["lti_message_hint"] = params["lti_message_hint"]
        separator = "&" if urlsplit(platform.auth_url).query else "?"
        return Login(platform.auth_url + separator + urlencode(query), state, nonce)

    # -- launch --------------------------------------------------------------------------

    def launch(self, id_token: str, nonce: str | None) -> Launched:
        """Verify the id_token (against the nonce the browser's state cookie holds), then
        sign its user in. Nothing is written unless every check passed."""
        if not id_token:
            raise LaunchRefused("the launch carries no id_token")
        if not nonce:
            raise LaunchRefused(
                "this browser did not start the sign-in (no state cookie matches the "
                "launch's state); open the link in the LMS again"
            )
        platform = self._platform_of(id_token)
        claims = verify_id_token(id_token, platform, self.keys, nonce)
        teacher = is_teacher(claims.get(LTI + "roles"))
        kind = claims[LTI + "message_type"]
        if kind == DEEP_LINKING and not teacher:
            raise LaunchRefused("only teachers pick content for the course (deep linking)")
        target = None if kind == DEEP_LINKING else self._target(claims)
        with self.db.session() as session:
            self._use_nonce(session, platform, claims)
            user_row, identity = self._account(session, platform, claims, teacher)
            if target is not None:
                self._record_link(session, platform, claims, identity, teacher, target)
            session.flush()
            account_id = user_row.id
        user = self.accounts.get(account_id)
        if target is None:  # deep linking: the teacher picks content on labyard's page
            return Launched(user, "/lti/deep-link", self._deep_link_request(platform, claims, user))
        if target.key.startswith(targets.CLASS_KEY):
            return Launched(user, self.class_links.join(user, target))
        return Launched(user, target.path)

    def _platform_of(self, id_token: str) -> Platform:
        _, claims = unverified_claims(id_token)
        issuer = claims.get("iss")
        if not isinstance(issuer, str):
            raise LaunchRefused("the launch names no issuer (iss)")
        for client_id in audiences(claims):
            platform = self.registrations.find(issuer, client_id)
            if platform is not None:
                return platform
        raise LaunchRefused(f"the launch is from {issuer!r} for a client id labyard does not know")

    def _target(self, claims: dict[str, Any]) -> targets.Target:
        custom = claims.get(LTI + "custom") or {}
        if isinstance(custom, dict) and custom.get("class"):
            return self.class_links.target(str(custom["class"]))
        key = str(custom.get("content") or "") if isinstance(custom, dict) else ""
        key = key or targets.key_of_url(str(claims.get(LTI + "target_link_uri") or ""))
        if not key:
            raise LaunchRefused(
                "the link names no labyard content: set its custom parameter "
                "content=challenges/<slug>, or pick a challenge through deep linking"
            )
        try:
            return self.content.target(key)
        except NotFound as exc:
            raise LaunchRefused(
                f"the link opens {key!r}, which this labyard does not have"
            ) from exc

    def _use_nonce(self, session: Session, platform: Platform, claims: dict[str, Any]) -> None:
        now = _now()
        session.execute(delete(LtiNonceRow).where(LtiNonceRow.expires_at < now))
        try:
            with session.begin_nested():
                session.add(
                    LtiNonceRow(
                        platform_id=platform.id,
                        nonce=str(claims["nonce"])[:255],
                        expires_at=now + NONCE_KEPT,
                    )
                )
        except IntegrityError as exc:
            raise LaunchRefused(
                "this launch was used already (its nonce is spent); open the link in the LMS again"
            ) from exc

    def _account(
        self, session: Session, platform: Platform, claims: dict[str, Any], teacher: bool
    ) -> tuple[UserRow, LtiIdentityRow]:
        now = _now()
        sub = str(claims["sub"])[:255]
        found = select(LtiIdentityRow).where(
            LtiIdentityRow.platform_id == platform.id, LtiIdentityRow.sub == sub
        )
        identity = session.scalar(found)
        role = _role(teacher)
        if identity is None:
            user = UserRow(
                email=f"lti-{secrets.token_hex(8)}@lti.invalid",
                password_hash=NO_PASSWORD,
                role=role,
                created_at=now,
            )
            session.add(user)
            session.flush()
            identity = LtiIdentityRow(
                platform_id=platform.id, sub=sub, account_id=user.id, created_at=now
            )
            session.add(identity)
        else:
            user = session.get_one(UserRow, identity.account_id)
            if user.role == Role.LEARNER and role != Role.LEARNER:
                user.role = role  # a student who became a teacher; never the other way
        identity.name = str(claims.get("name") or "")[:200]
        identity.email = str(claims.get("email") or "")[:254]
        identity.last_launch_at = now
        session.flush()
        return user, identity

    def _record_link(
        self,
        session: Session,
        platform: Platform,
        claims: dict[str, Any],
        identity: LtiIdentityRow,
        teacher: bool,
        target: targets.Target,
    ) -> None:
        now = _now()
        context = claims.get(LTI + "context") or {}
        context_id = str(context.get("id") or "")[:255]
        row = session.scalar(
            select(LtiContextRow).where(
                LtiContextRow.platform_id == platform.id, LtiContextRow.context_id == context_id
            )
        )
        if row is None:
            row = LtiContextRow(platform_id=platform.id, context_id=context_id)
            session.add(row)
        row.title = str(context.get("title") or context.get("label") or "")[:255]
        nrps = claims.get(NRPS) or {}
        row.memberships_url = str(nrps.get("context_memberships_url") or row.memberships_url or "")
        row.updated_at = now
        session.flush()
        link = _link(session, row, platform, claims, target, now)
        grade = session.scalar(
            select(LtiGradeRow).where(
                LtiGradeRow.link_id == link.id, LtiGradeRow.identity_id == identity.id
            )
        )
        if grade is None:
            grade = LtiGradeRow(link_id=link.id, identity_id=identity.id, status="", error="")
            session.add(grade)
        grade.instructor = teacher
        grade.roles = [str(r) for r in claims.get(LTI + "roles") or []][:20]
        grade.updated_at = now

    def _deep_link_request(self, platform: Platform, claims: dict[str, Any], user: User) -> str:
        settings = claims[DL_SETTINGS]
        request = {
            "aud": DEEP_LINK_AUDIENCE,
            "account": user.id,
            "platform": platform.id,
            "deployment_id": claims[LTI + "deployment_id"],
            "return_url": settings["deep_link_return_url"],
            "data": settings.get("data"),
            "accept_multiple": bool(settings.get("accept_multiple", False)),
            "context": (claims.get(LTI + "context") or {}).get("title", ""),
        }
        return self.tool_keys.sign(request, lifetime_s=3600)


def _role(teacher: bool) -> str:
    """An LMS teacher becomes a labyard instructor where that role exists (classes)."""
    instructor = getattr(Role, "INSTRUCTOR", None)
    return str(instructor) if teacher and instructor is not None else str(Role.LEARNER)


def _link(
    session: Session,
    context: LtiContextRow,
    platform: Platform,
    claims: dict[str, Any],
    target: targets.Target,
    now: datetime,
) -> LtiLinkRow:
    resource = claims.get(LTI + "resource_link") or {}
    link_id = str(resource["id"])[:255]
    link = session.scalar(
        select(LtiLinkRow).where(
            LtiLinkRow.context_row_id == context.id, LtiLinkRow.resource_link_id == link_id
        )
    )
    if link is None:
        link = LtiLinkRow(context_row_id=context.id, resource_link_id=link_id)
        session.add(link)
    ags = claims.get(AGS) or {}
    link.deployment_id = str(claims[LTI + "deployment_id"])[:255]
    link.title = str(resource.get("title") or "")[:255]
    link.content_key = target.key
    link.lineitem_url = str(ags.get("lineitem") or "")[:1000]
    link.lineitems_url = str(ags.get("lineitems") or "")[:1000]
    link.ags_scopes = [str(s) for s in ags.get("scope") or []][:10]
    link.updated_at = now
    session.flush()
    return link
