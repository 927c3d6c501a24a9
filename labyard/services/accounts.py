"""Accounts: sign-up, sign-in, browser sessions and API tokens.

Secrets (session cookies, API tokens) are random 32-byte strings; only their SHA-256 is
stored, so a leaked database does not leak working credentials.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from labyard.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    TooManyAttempts,
    Unauthenticated,
)
from labyard.services.entitlements import Entitlements, effective_plan
from labyard.services.owners import owner_of
from labyard.services.plans import Plan, PlanBook, builtin_plans
from labyard.services.usage import Launch
from labyard.store import Database, TokenRow, UserRow
from labyard.types import Role

SESSION_LIFETIME = timedelta(days=14)
MIN_PASSWORD = 8
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$")
_hasher = PasswordHasher()


@dataclass(frozen=True)
class User:
    id: int
    email: str
    role: str
    plan: str
    """The effective plan's name when this was read (from the entitlements in force)."""
    limits: Plan

    @property
    def owner(self) -> str:
        """What playgrounds record as their owner."""
        return owner_of(self.id)

    @property
    def plan_limits(self) -> Plan:
        return self.limits

    def launch(self, own_manifest: bool = False, country: str | None = None) -> Launch:
        """A free-play start by this account, its plan checked (see admission.py), from
        `country` when it is known (it picks the region)."""
        return Launch(
            account_id=self.id, role=self.role, own_manifest=own_manifest, country=country
        )

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "email": self.email, "role": self.role, "plan": self.plan}


def _user(session: Session, plans: PlanBook, row: UserRow) -> User:
    plan = effective_plan(session, plans, row.id, _now())
    return User(row.id, row.email, row.role, plan.name, plan)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


class LoginThrottle:
    """At most `limit` failed sign-ins per email and per client address in `window_s`."""

    def __init__(self, limit: int = 5, window_s: float = 300.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str) -> deque[float]:
        failures = self._failures[key]
        while failures and failures[0] < time.monotonic() - self.window_s:
            failures.popleft()
        return failures

    def check(self, *keys: str) -> None:
        if any(len(self._recent(k)) >= self.limit for k in keys):
            raise TooManyAttempts("too many failed sign-ins; wait a few minutes and try again")

    def failed(self, *keys: str) -> None:
        for key in keys:
            self._recent(key).append(time.monotonic())


class Accounts:
    def __init__(self, db: Database, plans: PlanBook | None = None) -> None:
        self.db = db
        self.plans = plans or builtin_plans()
        self.entitlements = Entitlements(db, self.plans)
        self.throttle = LoginThrottle()

    def create_user(
        self, email: str, password: str, role: str = Role.LEARNER, plan: str | None = None
    ) -> User:
        """A new account; a `plan` other than the default is a manual entitlement."""
        email = email.strip().lower()
        if not _EMAIL.match(email):
            raise InvalidInput(f"{email!r} is not an email address")
        if len(password) < MIN_PASSWORD:
            raise InvalidInput(f"a password needs at least {MIN_PASSWORD} characters")
        if role not in set(Role) or role == Role.GUEST:
            roles = ", ".join(r for r in Role if r != Role.GUEST)
            raise InvalidInput(f"unknown role {role!r} (roles: {roles}; guests join a class)")
        plan = plan or self.plans.default
        self.plans.get(plan)
        with self.db.session() as session:
            if session.scalar(select(UserRow).where(UserRow.email == email)) is not None:
                raise Conflict(f"an account for {email} exists already")
            row = UserRow(
                email=email, password_hash=_hasher.hash(password), role=role, created_at=_now()
            )
            session.add(row)
            session.flush()
            self.entitlements.set_manual(session, row.id, plan, "admin")
            session.flush()
            return _user(session, self.plans, row)

    def user_count(self) -> int:
        with self.db.session() as session:
            return int(session.scalar(select(func.count()).select_from(UserRow)) or 0)

    def authenticate(self, email: str, password: str, client: str = "") -> User:
        email = email.strip().lower()
        keys = (f"email:{email}", f"client:{client}")
        self.throttle.check(*keys)
        if _EMAIL.match(email):  # no account has any other: skip the lookup
            with self.db.session() as session:
                row = session.scalar(select(UserRow).where(UserRow.email == email))
                if row is not None and _verify(row.password_hash, password):
                    return _user(session, self.plans, row)
        self.throttle.failed(*keys)
        raise Unauthenticated("wrong email or password")

    def get(self, user_id: int) -> User:
        with self.db.session() as session:
            row = session.get(UserRow, user_id)
            if row is None:
                raise NotFound(f"no user {user_id}")
            return _user(session, self.plans, row)

    def by_email(self, email: str) -> User:
        with self.db.session() as session:
            row = session.scalar(select(UserRow).where(UserRow.email == email.strip().lower()))
            if row is None:
                raise NotFound(f"no account for {email}")
            return _user(session, self.plans, row)

    def emails(self, account_ids: set[int]) -> dict[int, str]:
        """Account id -> email, for admin views that list many accounts' records."""
        if not account_ids:
            return {}
        query = select(UserRow.id, UserRow.email).where(UserRow.id.in_(account_ids))
        with self.db.session() as session:
            return {row.id: row.email for row in session.execute(query)}

    def operator(self) -> User:
        """Whoever runs `labyard admin` on the server's host: an admin with no account of
        their own (root there could change the database anyway)."""
        plan = self.plans.default_plan
        return User(0, "operator", Role.ADMIN, plan.name, plan)

    def set_plan(self, user_id: int, plan: str, source: str = "admin") -> User:
        """An admin sets the account's plan: its manual entitlement (see
        `Entitlements.set_manual`; a subscription or an earned grant in force still counts)."""
        with self.db.session() as session:
            row = session.get(UserRow, user_id)
            if row is None:
                raise NotFound(f"no user {user_id}")
            self.entitlements.set_manual(session, user_id, plan, source)
            session.flush()
            return _user(session, self.plans, row)

    def issue(self, user: User, kind: str, name: str = "") -> str:
        """A new session (kind `session`) or API token (kind `api`); returns the secret."""
        secret = secrets.token_urlsafe(32)
        expires = _now() + SESSION_LIFETIME if kind == "session" else None
        with self.db.session() as session:
            session.add(
                TokenRow(
                    hash=_hash(secret),
                    user_id=user.id,
                    kind=kind,
                    name=name,
                    created_at=_now(),
                    expires_at=expires,
                )
            )
        return secret

    def user_for(self, secret: str) -> User:
        """The user a session cookie or API token belongs to."""
        with self.db.session() as session:
            token = session.get(TokenRow, _hash(secret))
            if token is None:
                raise Unauthenticated("not signed in")
            expires = token.expires_at
            if (
                expires is not None
                and (expires.replace(tzinfo=UTC) if not expires.tzinfo else expires) < _now()
            ):
                session.delete(token)
                raise Unauthenticated("the session has expired; sign in again")
            row = session.get(UserRow, token.user_id)
            if row is None:
                raise Unauthenticated("not signed in")
            return _user(session, self.plans, row)

    def revoke(self, secret: str) -> None:
        with self.db.session() as session:
            session.execute(delete(TokenRow).where(TokenRow.hash == _hash(secret)))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
