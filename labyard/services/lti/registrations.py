"""Platform registrations: the LMSs an admin trusts, with their deployment ids and endpoints.

A platform is an issuer plus the client id it gave labyard; one issuer may register several
client ids (Canvas: one per developer key). Only admins (and the operator's local CLI) add,
list or remove them; removing one removes its accounts' LMS identities, links and grades.
"""

from __future__ import annotations

import builtins
import ipaddress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from labyard.errors import Conflict, Forbidden, InvalidInput, NotFound
from labyard.services.accounts import User
from labyard.store import Database
from labyard.store.models import LtiDeploymentRow, LtiPlatformRow
from labyard.types import Role


@dataclass(frozen=True)
class Platform:
    id: int
    name: str
    issuer: str
    client_id: str
    deployment_ids: tuple[str, ...]
    jwks_url: str
    auth_url: str
    token_url: str
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "deployment_ids": list(self.deployment_ids),
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class NewPlatform:
    issuer: str
    client_id: str
    deployment_ids: tuple[str, ...]
    jwks_url: str
    auth_url: str
    token_url: str
    name: str = ""


def _platform(row: LtiPlatformRow) -> Platform:
    return Platform(
        row.id,
        row.name,
        row.issuer,
        row.client_id,
        tuple(d.deployment_id for d in row.deployments),
        row.jwks_url,
        row.auth_url,
        row.token_url,
        row.created_at,
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(field: str, value: str) -> str:
    """An https URL (plain http only to this host itself, for a test platform)."""
    value = value.strip()
    parts = urlsplit(value)
    host = parts.hostname or ""
    if not host or parts.scheme not in ("https", "http") or len(value) > 1000:
        raise InvalidInput(f"{field}: {value!r} is not an http(s) URL of at most 1000 characters")
    if parts.scheme == "http" and not _loopback(host):
        raise InvalidInput(f"{field}: {value!r} must use https (http only for 127.0.0.1)")
    return value


def _check_text(field: str, value: str, longest: int = 255) -> str:
    value = value.strip()
    if not value or len(value) > longest or any(ord(c) < 32 for c in value):
        raise InvalidInput(f"{field}: give 1 to {longest} printable characters")
    return value


def _checked(new: NewPlatform) -> NewPlatform:
    deployments = tuple(dict.fromkeys(_check_text("deployment_ids", d) for d in new.deployment_ids))
    if not deployments:
        raise InvalidInput("deployment_ids: give at least one deployment id")
    return NewPlatform(
        issuer=check_url("issuer", new.issuer),
        client_id=_check_text("client_id", new.client_id),
        deployment_ids=deployments,
        jwks_url=check_url("jwks_url", new.jwks_url),
        auth_url=check_url("auth_url", new.auth_url),
        token_url=check_url("token_url", new.token_url),
        name=new.name.strip()[:100] if new.name.strip() else "",
    )


def _admin(actor: User | None) -> None:
    """None is the operator's local CLI, an admin by being root on the host."""
    if actor is not None and actor.role != Role.ADMIN:
        raise Forbidden("only admins manage LTI platforms")


class Registrations:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, actor: User | None, new: NewPlatform) -> Platform:
        _admin(actor)
        new = _checked(new)
        with self.db.session() as session:
            found = select(LtiPlatformRow).where(
                LtiPlatformRow.issuer == new.issuer, LtiPlatformRow.client_id == new.client_id
            )
            if session.scalar(found) is not None:
                raise Conflict(f"{new.issuer} with client id {new.client_id} is registered")
            row = LtiPlatformRow(
                name=new.name or urlsplit(new.issuer).hostname or new.issuer,
                issuer=new.issuer,
                client_id=new.client_id,
                jwks_url=new.jwks_url,
                auth_url=new.auth_url,
                token_url=new.token_url,
                created_at=datetime.now(UTC),
            )
            row.deployments = [LtiDeploymentRow(deployment_id=d) for d in new.deployment_ids]
            session.add(row)
            session.flush()
            return _platform(row)

    def list(self, actor: User | None) -> list[Platform]:
        _admin(actor)
        with self.db.session() as session:
            rows = session.scalars(select(LtiPlatformRow).order_by(LtiPlatformRow.id))
            return [_platform(row) for row in rows]

    def remove(self, actor: User | None, platform_id: int) -> Platform:
        _admin(actor)
        with self.db.session() as session:
            row = session.get(LtiPlatformRow, platform_id)
            if row is None:
                raise NotFound(f"no LTI platform {platform_id}")
            gone = _platform(row)
            session.delete(row)
            return gone

    def get(self, platform_id: int) -> Platform:
        with self.db.session() as session:
            row = session.get(LtiPlatformRow, platform_id)
            if row is None:
                raise NotFound(f"no LTI platform {platform_id}")
            return _platform(row)

    def of_issuer(self, session: Session, issuer: str) -> builtins.list[Platform]:
        """Every registration of `issuer` (for a launch: which client ids it may be for)."""
        query = select(LtiPlatformRow).where(LtiPlatformRow.issuer == issuer[:255])
        return [_platform(row) for row in session.scalars(query.order_by(LtiPlatformRow.id))]

    def find(self, issuer: str, client_id: str | None) -> Platform | None:
        """The registration a login initiation or launch names; None when there is none, or
        when the issuer has several and no client id says which."""
        with self.db.session() as session:
            found = self.of_issuer(session, issuer)
        if client_id:
            return next((p for p in found if p.client_id == client_id), None)
        return found[0] if len(found) == 1 else None
