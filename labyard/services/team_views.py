"""What a team looks like to one viewer (services/teams.py): admins see its seats, code,
members and seat blocks; members their own seat; and what a join code leads to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labyard.services import seats
from labyard.store import SeatBlockRow, TeamMemberRow, TeamRow, UserRow

JOIN_PATH = "/teams/join/"
"""The invite link is this path plus the join code, on the server's own address."""


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


@dataclass(frozen=True)
class Seats:
    total: int
    used: int

    @property
    def free(self) -> int:
        return max(0, self.total - self.used)

    def to_json(self) -> dict[str, int]:
        return {"total": self.total, "used": self.used, "free": self.free}


@dataclass(frozen=True)
class Seat:
    """One member's seat: its plan and dates, and whether it is in force now."""

    plan: str
    since: datetime | None
    ends_at: datetime | None
    in_force: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "since": _iso(self.since),
            "ends_at": _iso(self.ends_at),
            "in_force": self.in_force,
        }


@dataclass(frozen=True)
class Member:
    account_id: int
    email: str
    admin: bool
    seat: Seat | None

    def to_json(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "email": self.email,
            "admin": self.admin,
            "seat": self.seat.to_json() if self.seat else None,
        }


@dataclass(frozen=True)
class Block:
    id: int
    order_id: str | None
    plan: str
    quantity: int
    starts_at: datetime
    ends_at: datetime | None
    state: str
    """`in force`, `not started`, `ended` or `refunded`."""

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data.update(starts_at=_iso(self.starts_at), ends_at=_iso(self.ends_at))
        return data


@dataclass(frozen=True)
class Team:
    """A team as one viewer may see it: admins see everything, members their own seat."""

    id: str
    name: str
    admin: bool
    """Whether the viewer administers it."""
    my_seat: Seat | None
    seats: Seats
    plans: tuple[str, ...]
    """The plans of its seats in force (usually one)."""
    join_code: str
    members: tuple[Member, ...]
    blocks: tuple[Block, ...]

    @property
    def invite_path(self) -> str:
        return f"{JOIN_PATH}{self.join_code}"

    def to_json(self, base_url: str = "") -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "admin": self.admin,
            "my_seat": self.my_seat.to_json() if self.my_seat else None,
        }
        if self.admin:
            data.update(
                seats=self.seats.to_json(),
                plans=list(self.plans),
                join_code=self.join_code,
                invite_url=f"{base_url.rstrip('/')}{self.invite_path}",
                members=[m.to_json() for m in self.members],
                blocks=[b.to_json() for b in self.blocks],
            )
        return data


@dataclass(frozen=True)
class Invitation:
    """What the join page shows to someone holding the code."""

    team_id: str
    name: str
    plans: tuple[str, ...]
    seats: Seats
    member: bool
    """The viewer holds a seat of it already."""


def in_team(member: TeamMemberRow) -> bool:
    """Admins, and whoever holds a seat (or held one that ended: they see it ended)."""
    return member.admin or member.block_id is not None


def holds(member: TeamMemberRow, blocks: list[SeatBlockRow], now: datetime) -> bool:
    return any(b.id == member.block_id and seats.in_force(b, now) for b in blocks)


def seats_now(session: Session, blocks: list[SeatBlockRow], now: datetime) -> Seats:
    usable = [b for b in blocks if seats.in_force(b, now)]
    counts = seats.held(session, [b.id for b in usable])
    return Seats(sum(b.quantity for b in usable), sum(counts.values()))


def plans_now(blocks: list[SeatBlockRow], now: datetime) -> tuple[str, ...]:
    return tuple(sorted({b.plan for b in blocks if seats.in_force(b, now)}))


def seat_of(member: TeamMemberRow, blocks: dict[int, SeatBlockRow], now: datetime) -> Seat | None:
    block = blocks.get(member.block_id) if member.block_id is not None else None
    if block is None:
        return None
    end = block.revoked_at if block.revoked_at is not None else block.ends_at
    return Seat(block.plan, member.seat_since, end, seats.in_force(block, now))


def members_of(
    session: Session, team_id: str, blocks: dict[int, SeatBlockRow], now: datetime
) -> tuple[Member, ...]:
    query = (
        select(TeamMemberRow, UserRow.email)
        .join(UserRow, UserRow.id == TeamMemberRow.account_id)
        .where(TeamMemberRow.team_id == team_id)
        .order_by(TeamMemberRow.joined_at, TeamMemberRow.id)
    )
    return tuple(
        Member(row.account_id, email, row.admin, seat_of(row, blocks, now))
        for row, email in session.execute(query)
        if in_team(row)
    )


def block_view(block: SeatBlockRow, now: datetime) -> Block:
    if block.revoked_at is not None:
        state = "refunded"
    elif block.starts_at > now:
        state = "not started"
    else:
        state = "in force" if seats.in_force(block, now) else "ended"
    return Block(
        block.id, block.order_id, block.plan, block.quantity, block.starts_at, block.ends_at, state
    )


def left(team: TeamRow) -> Team:
    """What someone who is not in the team (any more) is told of it: its id and name."""
    return Team(team.id, team.name, False, None, Seats(0, 0), (), "", (), ())
