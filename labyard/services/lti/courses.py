"""Courses (LTI contexts) as labyard saw them in launches, and who may look at one: an
admin, or an account that launched one of its links as a teacher."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labyard.errors import NotFound
from labyard.services.accounts import User
from labyard.store import Database
from labyard.store.models import (
    LtiContextRow,
    LtiGradeRow,
    LtiIdentityRow,
    LtiLinkRow,
    LtiPlatformRow,
)
from labyard.types import Role


@dataclass(frozen=True)
class Course:
    id: int
    platform: str
    context_id: str
    title: str
    roster: bool
    """Whether the platform offers its roster (NRPS)."""
    links: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "platform": self.platform,
            "context_id": self.context_id,
            "title": self.title,
            "roster": self.roster,
            "links": self.links,
        }


def taught_by(session: Session, user: User) -> set[int]:
    """The context rows `user` launched a link of as a teacher (every one for admins)."""
    if user.role == Role.ADMIN:
        return set(session.scalars(select(LtiContextRow.id)))
    query = (
        select(LtiLinkRow.context_row_id)
        .join(LtiGradeRow, LtiGradeRow.link_id == LtiLinkRow.id)
        .join(LtiIdentityRow, LtiIdentityRow.id == LtiGradeRow.identity_id)
        .where(LtiIdentityRow.account_id == user.id, LtiGradeRow.instructor.is_(True))
    )
    return set(session.scalars(query))


def check_teaches(session: Session, user: User, context_row_id: int) -> LtiContextRow:
    """The course, if `user` may see it; NotFound (like a course that does not exist) for
    anyone else, so learners learn nothing about other courses."""
    row = session.get(LtiContextRow, context_row_id)
    if row is None or context_row_id not in taught_by(session, user):
        raise NotFound(f"no LTI course {context_row_id}")
    return row


def course_of(session: Session, row: LtiContextRow) -> Course:
    platform = session.get_one(LtiPlatformRow, row.platform_id)
    links = session.scalars(
        select(LtiLinkRow).where(LtiLinkRow.context_row_id == row.id).order_by(LtiLinkRow.id)
    )
    return Course(
        row.id,
        platform.name,
        row.context_id,
        row.title,
        bool(row.memberships_url),
        [
            {"id": link.id, "resource_link_id": link.resource_link_id, "title": link.title,
             "content": link.content_key, "grades": bool(link.lineitem_url or link.lineitems_url)}
            for link in links
        ],
    )  # fmt: skip


class Courses:
    def __init__(self, db: Database) -> None:
        self.db = db

    def list(self, actor: User) -> list[Course]:
        """The courses `actor` teaches (every one for admins), newest launch first."""
        with self.db.session() as session:
            ids = taught_by(session, actor)
            query = select(LtiContextRow).where(LtiContextRow.id.in_(ids))
            rows = session.scalars(query.order_by(LtiContextRow.updated_at.desc()))
            return [course_of(session, row) for row in rows]

    def get(self, actor: User, context_row_id: int) -> Course:
        with self.db.session() as session:
            return course_of(session, check_teaches(session, actor, context_row_id))
