"""Teams: an organisation (a company, a university department) buys N seats of a plan, and
its admins hand them out with a join code and an invite link.

- A paid seats order (orders.py `fulfil`) makes the buyer's team, the buyer its admin, or
  adds its seats to the team the order names ("buy more"). Its seats are a block (seats.py)
  for the order's period; renewals move the block's end on, a cancellation ends it at the
  subscription's end, a refund ends it at once, its holders' grants with it.
- Members join with the code (or the link that carries it) while signed in and get the
  seat's plan for the seat's dates; a full team refuses with a 409 that says so.
- Admins see seats used and free, every member, the code and link; they remove members
  (the seat is free at once, the member's seat grant ends then), make a new code (the old
  one and its link stop working), rename the team, add admins and buy more seats.
- Being an admin and holding a seat are separate: the buyer holds no seat until they join
  with the code themselves, and removing an admin's seat leaves them admin.

Whoever is not in a team gets NotFound for it, exactly as for a team that does not exist;
members who are not admins get Forbidden for what only admins do.
"""

from __future__ import annotations

import builtins
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labyard.errors import Conflict, Forbidden, InvalidInput, NotFound
from labyard.services import codes, seats
from labyard.services.accounts import User
from labyard.services.entitlements import Entitlements
from labyard.services.team_views import (
    Invitation,
    Team,
    block_view,
    holds,
    in_team,
    left,
    members_of,
    plans_now,
    seat_of,
    seats_now,
)
from labyard.store import Database, OrderRow, SeatBlockRow, TeamMemberRow, TeamRow, UserRow
from labyard.types import Role

__all__ = [
    "Invitation",
    "Team",
    "Teams",
    "check_buyer",
    "seats_follow",
    "seats_paid",
    "seats_refunded",
    "seats_resized",
]
CODE_LENGTH = 8


def _now() -> datetime:
    return datetime.now(UTC)


# -- what orders call, in their transaction ------------------------------------------------


def check_buyer(session: Session, account_id: int, team_id: str) -> None:
    """Whether the account may buy seats for `team_id` (its admins may)."""
    member = _member(session, team_id, account_id)
    if member is None or not in_team(member):
        raise NotFound(f"no team {team_id}")
    if not member.admin:
        raise Forbidden("only the team's admins buy its seats")


def seats_paid(session: Session, order: OrderRow, at: datetime, ends_at: datetime | None) -> str:
    """A seats order is paid: its seats go to the team it names, or to a new team of the
    buyer's. Paying it again changes nothing."""
    if session.scalar(select(SeatBlockRow.id).where(SeatBlockRow.order_id == order.id)):
        return "paid"
    if ends_at is not None and ends_at <= at:
        return "paid; its period is over already, no seats"
    team = session.get(TeamRow, order.team_id) if order.team_id else None
    if team is None:
        team = _new_team(session, order.account_id, at)
        order.team_id = team.id
    seats.lock_team(session, team.id)
    block = SeatBlockRow(
        team_id=team.id,
        order_id=order.id,
        source=f"order {order.id} ({order.provider})",
        plan=order.plan,
        quantity=order.quantity,
        starts_at=at,
        ends_at=ends_at,
        created_at=_now(),
        updated_at=_now(),
    )
    session.add(block)
    session.flush()
    seats.move_to(session, block, _now())
    return f"paid; {order.quantity} seats for team {team.id}"


def seats_follow(
    session: Session, order: OrderRow, period_end: datetime | None, ended: datetime | None
) -> None:
    """The order's subscription moved on (`period_end`) or ended (`ended`)."""
    block = _block_of(session, order.id)
    if block is not None:
        seats.follow(session, block, period_end, ended)


def seats_resized(session: Session, order: OrderRow, quantity: int, at: datetime) -> str:
    """The order's subscription now pays for `quantity` seats."""
    block = _block_of(session, order.id)
    if block is None or block.quantity == quantity:
        return ""
    before = block.quantity
    unseated = seats.resize(session, block, quantity, at)
    outcome = f"; seats {before} -> {block.quantity}"
    return outcome + (f", {unseated} unseated" if unseated else "")


def seats_refunded(session: Session, order: OrderRow, at: datetime) -> None:
    block = _block_of(session, order.id)
    if block is not None:
        seats.revoke(session, block, at)


def _block_of(session: Session, order_id: str) -> SeatBlockRow | None:
    return session.scalar(select(SeatBlockRow).where(SeatBlockRow.order_id == order_id))


def _new_team(session: Session, account_id: int, at: datetime) -> TeamRow:
    buyer = session.get(UserRow, account_id)
    name = f"Team of {buyer.email}" if buyer else "Team"
    team = TeamRow(
        id=f"tm_{secrets.token_hex(6)}",
        name=name[:100],
        join_code=_unused_code(session),
        changes=0,
        created_at=at,
        updated_at=at,
    )
    session.add(team)
    session.flush()  # no relationship() tells the unit of work to insert it first
    session.add(TeamMemberRow(team_id=team.id, account_id=account_id, admin=True, joined_at=at))
    session.flush()
    return team


def _unused_code(session: Session) -> str:
    while True:
        code = codes.new_code(CODE_LENGTH)
        if session.scalar(select(TeamRow.id).where(TeamRow.join_code == code)) is None:
            return code


def _member(session: Session, team_id: str, account_id: int) -> TeamMemberRow | None:
    if not 0 < account_id < 2**63:  # no such account; SQLite would overflow on it
        return None
    query = select(TeamMemberRow).where(
        TeamMemberRow.team_id == team_id, TeamMemberRow.account_id == account_id
    )
    return session.scalar(query)


# -- the service -------------------------------------------------------------------------


class Teams:
    def __init__(self, db: Database, entitlements: Entitlements) -> None:
        self.db = db
        self.entitlements = entitlements

    def list(self, user: User) -> builtins.list[Team]:
        """The teams the user administers or holds a seat of, by name."""
        now = _now()
        query = select(TeamMemberRow.team_id).where(TeamMemberRow.account_id == user.id)
        with self.db.session() as session:
            teams = [self._view(session, team_id, user, now) for team_id in session.scalars(query)]
        return sorted((t for t in teams if t is not None), key=lambda t: (t.name, t.id))

    def get(self, user: User, team_id: str) -> Team:
        with self.db.session() as session:
            team = self._view(session, team_id, user, _now())
        if team is None:
            raise NotFound(f"no team {team_id}")
        return team

    def invitation(self, user: User, code: str) -> Invitation:
        """What a join code leads to (the join page), without joining."""
        now = _now()
        with self.db.session() as session:
            team = self._by_code(session, code)
            blocks = seats.blocks_of(session, team.id)
            member = _member(session, team.id, user.id)
            seated = member is not None and holds(member, blocks, now)
            return Invitation(
                team.id, team.name, plans_now(blocks, now), seats_now(session, blocks, now), seated
            )

    def join(self, user: User, code: str) -> Team:
        """Take a seat of the team whose join code this is (case-insensitive); one held
        already is kept. Conflict when every seat is taken or none is in force."""
        if user.role == Role.GUEST:  # a class's guest exists for that class only
            raise Forbidden("a guest of a class cannot join a team; sign up first")
        with self.db.session() as session:
            team_id, normal = self._by_code(session, code).id, codes.normalise(code)
        now = _now()
        with self.db.session() as session:
            if not seats.lock_team(session, team_id, normal):  # first: see seats.py
                raise NotFound("no team has this join code (it may have been replaced)")
            team = _team(session, team_id)
            blocks = seats.blocks_of(session, team_id)
            member = _member(session, team_id, user.id)
            if member is None or not holds(member, blocks, now):
                block = seats.free_block(session, blocks, now)
                if block is None:
                    raise _no_seat(team, session, blocks, now)
                if member is None:
                    member = TeamMemberRow(team_id=team_id, account_id=user.id, joined_at=now)
                    session.add(member)
                    session.flush()
                seats.take(session, self.entitlements, member, block, now)
            return self._view(session, team_id, user, now) or left(team)

    def remove_member(self, user: User, team_id: str, account_id: int) -> Team:
        """Free the member's seat now (their seat grant ends now); an admin stays admin."""
        return self._admin_change(
            user, team_id, lambda s, now: self._free(s, team_id, account_id, now)
        )

    def new_code(self, user: User, team_id: str) -> Team:
        """A new join code: the old one, and invite links with it, stop working."""

        def change(session: Session, now: datetime) -> None:
            team = _team(session, team_id)
            team.join_code, team.updated_at = _unused_code(session), now

        return self._admin_change(user, team_id, change)

    def rename(self, user: User, team_id: str, name: str) -> Team:
        name = " ".join(name.split())
        if not 1 <= len(name) <= 100:
            raise InvalidInput("a team's name has 1 to 100 characters")

        def change(session: Session, now: datetime) -> None:
            team = _team(session, team_id)
            team.name, team.updated_at = name, now

        return self._admin_change(user, team_id, change)

    def set_admin(self, user: User, team_id: str, account_id: int, admin: bool) -> Team:
        """Make a member an admin, or step an admin down (never the last one)."""

        def change(session: Session, now: datetime) -> None:
            member = _member(session, team_id, account_id)
            if member is None or not in_team(member):
                raise NotFound(f"account {account_id} is not in this team")
            if not admin and member.admin and _admins(session, team_id) == 1:
                raise Conflict("a team keeps at least one admin: make another member admin first")
            member.admin = admin

        return self._admin_change(user, team_id, change)

    # -- helpers ---------------------------------------------------------------------------

    def _admin_change(self, user: User, team_id: str, change: Any) -> Team:
        now = _now()
        with self.db.session() as session:
            if not seats.lock_team(session, team_id):
                raise NotFound(f"no team {team_id}")
            self._require_admin(session, user, team_id)
            change(session, now)
            # An admin without a seat who stepped down is out of the team now.
            return self._view(session, team_id, user, now) or left(_team(session, team_id))

    @staticmethod
    def _require_admin(session: Session, user: User, team_id: str) -> None:
        member = _member(session, team_id, user.id)
        if member is None or not in_team(member):
            raise NotFound(f"no team {team_id}")
        if not member.admin:
            raise Forbidden("only the team's admins may do this")

    @staticmethod
    def _free(session: Session, team_id: str, account_id: int, now: datetime) -> None:
        member = _member(session, team_id, account_id)
        if member is None or member.block_id is None:
            raise NotFound(f"account {account_id} holds no seat in this team")
        seats.free(session, member, now)

    @staticmethod
    def _by_code(session: Session, code: str) -> TeamRow:
        normal = codes.normalise(code)
        team = None
        if codes.plausible(normal, CODE_LENGTH):
            team = session.scalar(select(TeamRow).where(TeamRow.join_code == normal))
        if team is None:
            raise NotFound("no team has this join code (it may have been replaced)")
        return team

    def _view(self, session: Session, team_id: str, user: User, now: datetime) -> Team | None:
        team = session.get(TeamRow, team_id)
        me = _member(session, team_id, user.id) if team else None
        if team is None or me is None or not in_team(me):
            return None
        blocks = seats.blocks_of(session, team_id)
        by_id = {b.id: b for b in blocks}
        members = members_of(session, team_id, by_id, now) if me.admin else ()
        return Team(
            team.id,
            team.name,
            me.admin,
            seat_of(me, by_id, now),
            seats_now(session, blocks, now),
            plans_now(blocks, now),
            team.join_code if me.admin else "",
            members,
            tuple(block_view(b, now) for b in blocks) if me.admin else (),
        )


def _admins(session: Session, team_id: str) -> int:
    query = select(TeamMemberRow.id).where(
        TeamMemberRow.team_id == team_id, TeamMemberRow.admin.is_(True)
    )
    return len(session.scalars(query).all())


def _no_seat(
    team: TeamRow, session: Session, blocks: list[SeatBlockRow], now: datetime
) -> Conflict:
    total = seats_now(session, blocks, now).total
    if total == 0:
        message = f"{team.name} has no seats in force; ask its admin to renew them"
        return Conflict(message, reason="no_seats")
    taken = "its one seat is taken" if total == 1 else f"all {total} seats are taken"
    message = f"{team.name} is full: {taken}; ask its admin to free one or buy more seats"
    return Conflict(message, reason="team_full")


def _team(session: Session, team_id: str) -> TeamRow:
    team = session.get(TeamRow, team_id)
    if team is None:
        raise NotFound(f"no team {team_id}")
    return team
