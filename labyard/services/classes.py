"""Classes and workshops: an instructor's class, its join code, and who is in it.

- Instructors (and admins) create a class: title, content (challenges, tutorials, courses
  or bare playgrounds), seats, start and end, guests allowed or not, and optionally a region
  of the regions file (services/cluster/regions.py) that every start of the class runs in,
  whatever the learner's country (the instructor may change it later). It gets a join link
  and a 6-character join code (services/codes.py: unambiguous, case-insensitive).
- Learners join signed in, or (when the class allows) as a guest with a display name: a
  guest account made for the class, with no password, that starts nothing else and is
  deleted with the class. Members are at most `seats`; a removed member cannot rejoin.
- While the class runs, members start its content on the class's seats, not their plans
  (class_admission.py; starting is class_starts.py). The room (broadcasts, extra time, the
  end) is class_room.py; the board and the exports are class_results.py.

Who may see what: the class's instructor and admins see everything of it; a member sees
the class and their own membership only; anyone else gets NotFound, as for a class that
does not exist.
"""

from __future__ import annotations

import builtins
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labyard.errors import Conflict, Forbidden, InvalidInput, LabyardError, NotFound
from labyard.services import codes
from labyard.services.accounts import Accounts, User
from labyard.services.catalog import Catalog
from labyard.services.class_admission import not_running_message, running
from labyard.services.class_spec import ClassChanges, ClassSpec, checked
from labyard.services.cluster.regions import Regions
from labyard.services.owners import owner_of
from labyard.services.tasks.content import find_item
from labyard.store import AttemptRow, Database, UserRow
from labyard.store.models import ClassAttemptRow, ClassMemberRow, ClassRow
from labyard.types import Role

CODE_LENGTH = 6
JOIN_PATH = "/classes/join/"
RUN_CLASSES = (Role.INSTRUCTOR, Role.ADMIN)
_ID = re.compile(r"^cl_[0-9a-f]{12}$")
CONTENT_KEY = re.compile(r"^(challenges|tutorials|courses)/")
GUEST_DOMAIN = "guests.invalid"
"""Guest accounts' made-up email addresses end in this reserved domain (RFC 2606)."""
GUEST_PASSWORD_HASH = "!guest"
"""Matches no password: argon2 refuses it as a hash, so a guest can never sign in."""
Problems = list[tuple[tuple[int | str, ...], str]]
"""(field path, message) of each problem of a class's fields."""


def now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def state_of(row: ClassRow, at: datetime) -> str:
    """`scheduled`, `running` or `ended`."""
    if row.ended_at is not None or at >= row.ends_at:
        return "ended"
    return "running" if running(row, at) else "scheduled"


@dataclass(frozen=True)
class Member:
    account_id: int
    display_name: str
    guest: bool
    joined_at: datetime
    removed_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "display_name": self.display_name,
            "guest": self.guest,
            "joined_at": _iso(self.joined_at),
            "removed_at": _iso(self.removed_at),
        }


def _member(row: ClassMemberRow) -> Member:
    return Member(row.account_id, row.display_name, row.guest, row.joined_at, row.removed_at)


@dataclass(frozen=True)
class ClassView:
    """A class as one user may see it: `members` only for its instructor (and admins),
    `me` for a member."""

    id: str
    title: str
    instructor_id: int
    content: list[str]
    seats: int
    starts_at: datetime
    ends_at: datetime
    guests: bool
    join_code: str
    ended_at: datetime | None
    state: str
    members: list[Member] | None
    me: Member | None
    region: str = ""
    """The region every start of the class runs in; "": each learner's own."""

    @property
    def join_path(self) -> str:
        return JOIN_PATH + self.join_code

    @property
    def running(self) -> bool:
        return self.state == "running"

    def to_json(self, base_url: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "instructor_id": self.instructor_id,
            "content": self.content,
            "seats": self.seats,
            "starts_at": _iso(self.starts_at),
            "ends_at": _iso(self.ends_at),
            "guests": self.guests,
            "region": self.region,
            "join_code": self.join_code,
            "join_url": base_url.rstrip("/") + self.join_path,
            "ended_at": _iso(self.ended_at),
            "state": self.state,
        }
        if self.members is not None:
            data["members"] = [m.to_json() for m in self.members]
        if self.me is not None:
            data["me"] = self.me.to_json()
        return data


@dataclass(frozen=True)
class Invitation:
    """What the join page shows before joining."""

    class_id: str
    title: str
    state: str
    guests: bool
    seats_free: int
    member: bool


def may_run(user: User, row: ClassRow) -> bool:
    return user.role == Role.ADMIN or (
        user.role == Role.INSTRUCTOR and row.instructor_id == user.id
    )


def problems_message(problems: Problems) -> str:
    """`content[1]: ...; region: ...`: each problem after the field it is about."""
    return "; ".join(
        f"{loc[0]}{''.join(f'[{part}]' for part in loc[1:])}: {message}"
        for loc, message in problems
    )


class Classes:
    def __init__(
        self, db: Database, accounts: Accounts, catalog: Catalog, regions: Regions
    ) -> None:
        self.db = db
        self.accounts = accounts
        self.catalog = catalog
        self.regions = regions

    # -- creating ------------------------------------------------------------------------

    def problems(self, spec: ClassSpec) -> Problems:
        """What of the class this server cannot run: its content keys, its region."""
        return self.content_problems(spec.content) + self.region_problems(spec.region)

    def region_problems(self, region: str) -> Problems:
        """A region that is not in the regions file ("" is none: always fine)."""
        if not region or region in self.regions.regions:
            return []
        known = ", ".join(self.regions.regions)
        return [(("region",), f"no region {region!r} in this server's regions (regions: {known})")]

    def content_problems(self, content: list[str]) -> Problems:
        """(field path, message) for each key that names nothing this server has."""
        problems: Problems = []
        for i, key in enumerate(content):
            try:
                if CONTENT_KEY.match(key):
                    item = find_item(self.catalog.content_dir, key)
                    if item.kind not in ("challenge", "tutorial", "course"):
                        raise InvalidInput(f"{key!r} is a {item.kind}; use its lessons' course")
                else:
                    self.catalog.get(key)
            except LabyardError as exc:
                problems.append((("content", i), exc.message))
        return problems

    def create(self, user: User, spec: ClassSpec) -> ClassView:
        """A new class (Forbidden unless the user is an instructor or an admin)."""
        if user.role not in RUN_CLASSES:
            raise Forbidden("only instructors and admins create classes")
        spec = checked(spec)
        problems = self.problems(spec)
        if problems:
            raise InvalidInput(problems_message(problems))
        for _ in range(5):  # a code taken already (1 in 887 million): draw again
            try:
                with self.db.session() as session:
                    row = ClassRow(
                        id="cl_" + secrets.token_hex(6),
                        title=spec.title,
                        instructor_id=user.id,
                        content=list(spec.content),
                        seats=spec.seats,
                        starts_at=spec.starts_at,
                        ends_at=spec.ends_at,
                        guests=spec.guests,
                        region=spec.region,
                        join_code=codes.new_code(CODE_LENGTH),
                        changes=0,
                        created_at=now(),
                    )
                    session.add(row)
                    session.flush()
                    return self.view_of(session, row, user)
            except IntegrityError:
                continue
        raise Conflict("could not draw a free join code; try again")

    def change(self, user: User, class_id: str, changes: ClassChanges) -> ClassView:
        """The instructor (or an admin) changes the class: its region, for now. Starts from
        then on run in the new region; playgrounds running already stay where they are."""
        with self.db.session() as session:
            row = self.instructed(session, user, class_id)
            if changes.region is not None:
                problems = self.region_problems(changes.region)
                if problems:
                    raise InvalidInput(problems_message(problems))
                row.region = changes.region
            session.flush()
            return self.view_of(session, row, user)

    # -- reading -------------------------------------------------------------------------

    def _row(self, session: Session, class_id: str) -> ClassRow:
        row = session.get(ClassRow, class_id) if _ID.match(class_id) else None
        if row is None:
            raise NotFound(f"no class {class_id!r}")
        return row

    def membership(self, session: Session, class_id: str, account_id: int) -> ClassMemberRow | None:
        return session.scalar(
            select(ClassMemberRow).where(
                ClassMemberRow.class_id == class_id, ClassMemberRow.account_id == account_id
            )
        )

    def view_of(self, session: Session, row: ClassRow, user: User) -> ClassView:
        members = None
        if may_run(user, row):
            query = select(ClassMemberRow).where(ClassMemberRow.class_id == row.id)
            members = [_member(m) for m in session.scalars(query.order_by(ClassMemberRow.id))]
        mine = self.membership(session, row.id, user.id)
        return ClassView(
            row.id,
            row.title,
            row.instructor_id,
            list(row.content),
            row.seats,
            row.starts_at,
            row.ends_at,
            row.guests,
            row.join_code,
            row.ended_at,
            state_of(row, now()),
            members,
            _member(mine) if mine is not None else None,
            row.region,
        )

    def visible(self, session: Session, user: User, class_id: str) -> ClassRow:
        """The class, for its instructor, an admin or a member (removed ones included:
        they still see it, and that they were removed); NotFound for anyone else."""
        row = self._row(session, class_id)
        if not may_run(user, row) and self.membership(session, class_id, user.id) is None:
            raise NotFound(f"no class {class_id!r}")
        return row

    def instructed(self, session: Session, user: User, class_id: str) -> ClassRow:
        """The class, for its instructor or an admin: Forbidden for a member, else NotFound."""
        row = self.visible(session, user, class_id)
        if not may_run(user, row):
            raise Forbidden("only the class's instructor may do that")
        return row

    def get(self, user: User, class_id: str) -> ClassView:
        with self.db.session() as session:
            return self.view_of(session, self.visible(session, user, class_id), user)

    def list(self, user: User) -> builtins.list[ClassView]:
        """Classes the user runs (every class, for admins: no) or is a member of."""
        with self.db.session() as session:
            mine = select(ClassMemberRow.class_id).where(ClassMemberRow.account_id == user.id)
            query = select(ClassRow).where(
                (ClassRow.instructor_id == user.id) | ClassRow.id.in_(mine)
            )
            rows = session.scalars(query.order_by(ClassRow.starts_at.desc()))
            return [self.view_of(session, row, user) for row in rows]

    def running_with(self, user: User, content_key: str) -> builtins.list[str]:
        """The running classes the user is a member of whose content has this key: a
        learning page shows their broadcasts while the learner works there."""
        at = now()
        with self.db.session() as session:
            query = (
                select(ClassRow)
                .join(ClassMemberRow, ClassMemberRow.class_id == ClassRow.id)
                .where(
                    ClassMemberRow.account_id == user.id,
                    ClassMemberRow.removed_at.is_(None),
                    ClassRow.ended_at.is_(None),
                    ClassRow.ends_at > at,
                )
            )
            return [
                row.id
                for row in session.scalars(query)
                if state_of(row, at) == "running" and content_key in row.content
            ]

    def member_of(self, user: User, class_id: str) -> Member:
        """The user's membership in force (Forbidden once removed; NotFound: none)."""
        with self.db.session() as session:
            row = self.visible(session, user, class_id)
            found = self.membership(session, class_id, user.id)
            if found is None:
                raise Forbidden(f"you are not a member of class {row.title!r}")
            if found.removed_at is not None:
                raise Forbidden(f"the instructor removed you from class {row.title!r}")
            return _member(found)

    # -- joining -------------------------------------------------------------------------

    def _by_code(self, session: Session, code: str) -> ClassRow:
        code = codes.normalise(code)
        row = None
        if codes.plausible(code, CODE_LENGTH):
            row = session.scalar(select(ClassRow).where(ClassRow.join_code == code))
        if row is None:
            raise NotFound("no class has this join code; check it with your instructor")
        return row

    def invitation(self, user: User | None, code: str) -> Invitation:
        with self.db.session() as session:
            row = self._by_code(session, code)
            member = user is not None and self.membership(session, row.id, user.id) is not None
            return Invitation(
                row.id,
                row.title,
                state_of(row, now()),
                row.guests,
                max(0, row.seats - self._members(session, row.id)),
                member,
            )

    @staticmethod
    def _members(session: Session, class_id: str) -> int:
        query = select(func.count()).where(
            ClassMemberRow.class_id == class_id, ClassMemberRow.removed_at.is_(None)
        )
        return int(session.scalar(query) or 0)

    def _admit_member(self, session: Session, row: ClassRow) -> None:
        """Lock the class (seats are counted, then taken) and check it can take one more."""
        row.changes += 1
        session.flush()
        at = now()
        if row.ended_at is not None or at >= row.ends_at:
            raise Conflict(not_running_message(row, at) + "; it takes no new members")
        if self._members(session, row.id) >= row.seats:
            raise Conflict(f"all {row.seats} seats of class {row.title!r} are taken")

    def join(self, user: User, code: str) -> ClassView:
        """Join the class whose code this is; joining again changes nothing."""
        if user.role == Role.GUEST:
            raise Forbidden("a guest account belongs to its own class; sign up to join another")
        with self.db.session() as session:
            row = self._by_code(session, code)
            found = self.membership(session, row.id, user.id)
            if found is not None and found.removed_at is not None:
                raise Forbidden(f"the instructor removed you from class {row.title!r}")
            if found is None:
                self._admit_member(session, row)
                session.add(
                    ClassMemberRow(
                        class_id=row.id,
                        account_id=user.id,
                        display_name=user.email,
                        guest=False,
                        joined_at=now(),
                    )
                )
                session.flush()
            return self.view_of(session, row, user)

    def join_as_guest(self, code: str, name: str) -> tuple[User, ClassView]:
        """A guest account for the class, joined to it (the caller signs it in)."""
        name = " ".join(name.split())
        if not 1 <= len(name) <= 60 or any(ord(c) < 32 for c in name):
            raise InvalidInput("a display name is 1 to 60 characters of text")
        with self.db.session() as session:
            row = self._by_code(session, code)
            if not row.guests:
                raise Forbidden(f"class {row.title!r} takes no guests; sign in to join")
            self._admit_member(session, row)
            guest = UserRow(
                email=f"guest-{secrets.token_hex(8)}@{row.id.replace('_', '-')}.{GUEST_DOMAIN}",
                password_hash=GUEST_PASSWORD_HASH,
                role=Role.GUEST,
                created_at=now(),
            )
            session.add(guest)
            session.flush()
            session.add(
                ClassMemberRow(
                    class_id=row.id,
                    account_id=guest.id,
                    display_name=name,
                    guest=True,
                    joined_at=now(),
                )
            )
            class_id, guest_id = row.id, guest.id
        user = self.accounts.get(guest_id)
        return user, self.get(user, class_id)

    # -- members and deletion ------------------------------------------------------------

    def remove(self, user: User, class_id: str, account_id: int) -> Member:
        """The instructor removes a member: they can start nothing of it any more (their
        class playgrounds are the room's to destroy: class_room.py)."""
        with self.db.session() as session:
            self.instructed(session, user, class_id)
            found = self.membership(session, class_id, account_id)
            if found is None:
                raise NotFound(f"no member {account_id} in class {class_id}")
            if found.removed_at is None:
                found.removed_at = now()
            return _member(found)

    def delete_rows(self, class_id: str) -> None:
        """Delete the class, its records, its guests and their attempts (the room has
        destroyed its machines first)."""
        with self.db.session() as session:
            guests = list(
                session.scalars(
                    select(ClassMemberRow.account_id).where(
                        ClassMemberRow.class_id == class_id, ClassMemberRow.guest.is_(True)
                    )
                )
            )
            owners = [owner_of(g) for g in guests]
            if owners:
                session.execute(delete(AttemptRow).where(AttemptRow.owner.in_(owners)))
            session.execute(delete(ClassAttemptRow).where(ClassAttemptRow.class_id == class_id))
            session.execute(delete(ClassRow).where(ClassRow.id == class_id))
            if guests:
                session.execute(delete(UserRow).where(UserRow.id.in_(guests)))
