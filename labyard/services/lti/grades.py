"""Assignment and Grade Services: a learner's score on a resource link, sent to the
platform's line item. The score is tasks completed / tasks to solve, of the learner's best
attempt at the link's content; it is sent when an attempt is solved (`after_solve`, from
the task engine's solve hook) and when a teacher asks (`send_link`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from sqlalchemy import select

from labyard.errors import LabyardError, ProviderFailure
from labyard.services.accounts import User
from labyard.services.lti.courses import check_teaches
from labyard.services.lti.registrations import Platform, Registrations
from labyard.services.lti.service_tokens import LINEITEM, SCORE, TIMEOUT_S, ServiceTokens
from labyard.services.owners import account_of, owner_of
from labyard.services.tasks.records import AttemptRecord, AttemptStore
from labyard.store import Database
from labyard.store.models import (
    LtiContextRow,
    LtiGradeRow,
    LtiIdentityRow,
    LtiLinkRow,
)
from labyard.types import TaskState

log = logging.getLogger(__name__)
SCORE_TYPE = "application/vnd.ims.lis.v1.score+json"
LINEITEM_TYPE = "application/vnd.ims.lis.v2.lineitem+json"
CONTAINER_TYPE = "application/vnd.ims.lis.v2.lineitemcontainer+json"


@dataclass(frozen=True)
class Grade:
    id: int
    link_id: int
    name: str
    sub: str
    instructor: bool
    completed: int | None
    total: int | None
    status: str
    error: str
    sent_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "link_id": self.link_id,
            "name": self.name,
            "user_id": self.sub,
            "instructor": self.instructor,
            "completed": self.completed,
            "total": self.total,
            "score": None if not self.total else round((self.completed or 0) / self.total, 4),
            "status": self.status,
            "error": self.error,
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
        }


def best_score(records: list[AttemptRecord], content_key: str) -> tuple[int, int] | None:
    """(completed, total) of the best attempt at `content_key`, or None without one."""
    best: tuple[int, int] | None = None
    for record in records:
        if record.content_key != content_key:
            continue
        checks = record.spec.check_tasks
        done = sum(
            1 for name in checks if (t := record.tasks.get(name)) and t.state == TaskState.COMPLETED
        )
        if best is None or done / max(len(checks), 1) > best[0] / max(best[1], 1):
            best = (done, len(checks))
    return best


def _scores_url(lineitem: str) -> str:
    parts = urlsplit(lineitem)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/scores"))


class Grades:
    def __init__(self, db: Database, registrations: Registrations, tokens: ServiceTokens) -> None:
        self.db = db
        self.registrations = registrations
        self.tokens = tokens
        self.attempts = AttemptStore(db)

    def after_solve(self, record: AttemptRecord) -> list[Grade]:
        """Send the learner's score on every LMS link that opens the solved content."""
        account_id = account_of(record.owner)
        if account_id is None:
            return []
        query = (
            select(LtiGradeRow.id)
            .join(LtiLinkRow, LtiLinkRow.id == LtiGradeRow.link_id)
            .join(LtiIdentityRow, LtiIdentityRow.id == LtiGradeRow.identity_id)
            .where(
                LtiIdentityRow.account_id == account_id,
                LtiLinkRow.content_key == record.content_key,
            )
        )
        with self.db.session() as session:
            grade_ids = list(session.scalars(query))
        return [self.send(grade_id) for grade_id in grade_ids]

    def send_link(self, actor: User, link_id: int) -> list[Grade]:
        """A teacher's "send grades now": every learner of the link who attempted it."""
        with self.db.session() as session:
            link = session.get(LtiLinkRow, link_id)
            check_teaches(session, actor, link.context_row_id if link else -1)
            query = select(LtiGradeRow.id).where(
                LtiGradeRow.link_id == link_id, LtiGradeRow.instructor.is_(False)
            )
            grade_ids = list(session.scalars(query.order_by(LtiGradeRow.id)))
        return [self.send(grade_id) for grade_id in grade_ids]

    def of_course(self, actor: User, context_row_id: int) -> list[Grade]:
        with self.db.session() as session:
            check_teaches(session, actor, context_row_id)
            query = (
                select(LtiGradeRow, LtiIdentityRow)
                .join(LtiLinkRow, LtiLinkRow.id == LtiGradeRow.link_id)
                .join(LtiIdentityRow, LtiIdentityRow.id == LtiGradeRow.identity_id)
                .where(LtiLinkRow.context_row_id == context_row_id)
                .order_by(LtiGradeRow.link_id, LtiIdentityRow.name, LtiGradeRow.id)
            )
            return [_grade(g, i) for g, i in session.execute(query).all()]

    def send(self, grade_id: int) -> Grade:
        """Compute the grade's score now and send it; the row records the outcome."""
        with self.db.session() as session:
            grade = session.get_one(LtiGradeRow, grade_id)
            link = session.get_one(LtiLinkRow, grade.link_id)
            identity = session.get_one(LtiIdentityRow, grade.identity_id)
            context = session.get_one(LtiContextRow, link.context_row_id)
            platform = self.registrations.get(context.platform_id)
            snapshot = (
                link.id,
                link.title,
                link.content_key,
                link.lineitem_url,
                link.lineitems_url,
            )
            sub, account_id = identity.sub, identity.account_id
        score = best_score(self.attempts.list(owner=owner_of(account_id)), snapshot[2])
        status, error = "sent", ""
        if score is None:
            return self._record(grade_id, None, "", "")  # nothing attempted: nothing to send
        try:
            lineitem = snapshot[3] or self._lineitem(platform, *snapshot[:3], snapshot[4], score)
            self._post_score(platform, lineitem, sub, score)
        except LabyardError as exc:
            log.warning("LTI grade %s not sent: %s (%s)", grade_id, exc.message, exc.detail)
            status, error = "failed", exc.message[:500]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # a malformed answer
            log.warning("LTI grade %s not sent: the platform's answer: %r", grade_id, exc)
            status, error = "failed", "the platform's answer about line items was not AGS JSON"
        return self._record(grade_id, score, status, error)

    def _record(
        self, grade_id: int, score: tuple[int, int] | None, status: str, error: str
    ) -> Grade:
        now = datetime.now(UTC)
        with self.db.session() as session:
            grade = session.get_one(LtiGradeRow, grade_id)
            if score is not None:
                grade.completed, grade.total = score
                grade.status, grade.error = status, error
                grade.sent_at = now if status == "sent" else grade.sent_at
            grade.updated_at = now
            session.flush()
            return _grade(grade, session.get_one(LtiIdentityRow, grade.identity_id))

    def _post_score(
        self, platform: Platform, lineitem: str, sub: str, score: tuple[int, int]
    ) -> None:
        completed, total = score
        body = {
            "userId": sub,
            "scoreGiven": completed,
            "scoreMaximum": max(total, 1),
            "activityProgress": "Completed" if completed >= total else "InProgress",
            "gradingProgress": "FullyGraded",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        headers = {"Content-Type": SCORE_TYPE}
        self._call(platform, "POST", _scores_url(lineitem), [SCORE], json=body, headers=headers)

    def _lineitem(
        self,
        platform: Platform,
        link_id: int,
        title: str,
        content_key: str,
        lineitems: str,
        score: tuple[int, int],
    ) -> str:
        """The link's line item, found under the course's line items or made there."""
        if not lineitems:
            raise ProviderFailure(
                "the LMS gave no line item for this link (enable grades for the tool)",
                reason="lti_no_lineitem",
            )
        with self.db.session() as session:
            resource_link_id = session.get_one(LtiLinkRow, link_id).resource_link_id
        parts = urlsplit(lineitems)
        query = "&".join(
            q for q in (parts.query, urlencode({"resource_link_id": resource_link_id})) if q
        )
        found = self._call(
            platform, "GET", urlunsplit(parts._replace(query=query)), [LINEITEM],
            headers={"Accept": CONTAINER_TYPE},
        ).json()  # fmt: skip
        url = next((str(item["id"]) for item in found if item.get("id")), "")
        if not url:
            new = {
                "scoreMaximum": max(score[1], 1),
                "label": title or content_key,
                "resourceLinkId": resource_link_id,
                "resourceId": content_key,
            }
            headers = {"Content-Type": LINEITEM_TYPE}
            url = str(
                self._call(
                    platform, "POST", lineitems, [LINEITEM], json=new, headers=headers
                ).json()["id"]
            )
        with self.db.session() as session:
            session.get_one(LtiLinkRow, link_id).lineitem_url = url[:1000]
        return url

    def _call(
        self,
        platform: Platform,
        method: str,
        url: str,
        scopes: list[str],
        *,
        headers: dict[str, str],
        json: Any = None,
    ) -> httpx.Response:
        """One AGS request with a bearer token; a 401 gets one more try with a new token
        (the platform revoked it, or let it expire early)."""
        response = self._request(platform, method, url, scopes, headers, json)
        if response.status_code == 401:
            self.tokens.forget(platform)
            response = self._request(platform, method, url, scopes, headers, json)
        if response.status_code >= 400:
            raise ProviderFailure(
                f"the platform {platform.issuer} refused the request ({response.status_code})",
                detail=f"{method} {url}: {response.text[:300]}",
            )
        return response

    def _request(
        self,
        platform: Platform,
        method: str,
        url: str,
        scopes: list[str],
        headers: dict[str, str],
        json: Any,
    ) -> httpx.Response:
        token = self.tokens.token(platform, scopes)
        headers = {**headers, "Authorization": f"Bearer {token}"}
        try:
            return httpx.request(method, url, headers=headers, json=json, timeout=TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise ProviderFailure(
                f"the platform {platform.issuer} did not answer", detail=f"{url}: {exc}"
            ) from exc


def _grade(grade: LtiGradeRow, identity: LtiIdentityRow) -> Grade:
    return Grade(
        grade.id,
        grade.link_id,
        identity.name,
        identity.sub,
        grade.instructor,
        grade.completed,
        grade.total,
        grade.status,
        grade.error,
        grade.sent_at,
    )
