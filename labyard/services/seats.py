"""Seats: a seat is a right to a plan for dates, held by one member at a time.

Seats come in blocks (`seat_blocks`): N seats of a plan from a start to an end, brought by
one paid seats order (teams.py), later by a class. A member who takes a seat gets a `seat`
entitlement to the block's plan until the block's end; the grant follows the block (a
renewal moves both on, a cancellation ends both, a refund revokes both) and ends at once
when the seat is freed.

Everything here runs in the caller's transaction, after `lock_team` (an UPDATE of the team's
row as the transaction's first write: a row lock on PostgreSQL, the write lock on SQLite),
so two transactions that count, take or free a team's seats take turns: two joins for the
last seat cannot both win, and a refund cannot miss a seat being taken meanwhile.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from labyard.services.entitlements import Entitlements
from labyard.store import EntitlementRow, SeatBlockRow, TeamMemberRow, TeamRow
from labyard.types import EntitlementKind


def lock_team(session: Session, team_id: str, code: str | None = None) -> bool:
    """Take the team's lock for the rest of the transaction; False if there is no such team
    (or, given `code`, its join code is another one now)."""
    statement = update(TeamRow).where(TeamRow.id == team_id)
    if code is not None:
        statement = statement.where(TeamRow.join_code == code)
    result: Any = session.execute(statement.values(changes=TeamRow.changes + 1))
    return bool(result.rowcount)


def in_force(block: SeatBlockRow, at: datetime) -> bool:
    return (
        block.revoked_at is None
        and block.starts_at <= at
        and (block.ends_at is None or block.ends_at > at)
    )


def blocks_of(session: Session, team_id: str) -> list[SeatBlockRow]:
    """Every block the team ever had, oldest first."""
    query = select(SeatBlockRow).where(SeatBlockRow.team_id == team_id)
    return list(session.scalars(query.order_by(SeatBlockRow.starts_at, SeatBlockRow.id)))


def held(session: Session, block_ids: list[int]) -> dict[int, int]:
    """Seats held in each block."""
    query = (
        select(TeamMemberRow.block_id, func.count())
        .where(TeamMemberRow.block_id.in_(block_ids))
        .group_by(TeamMemberRow.block_id)
    )
    return {int(block): int(n) for block, n in session.execute(query) if block is not None}


def _latest_first(block: SeatBlockRow) -> tuple[bool, float, int]:
    return (
        block.ends_at is not None,
        -(block.ends_at.timestamp() if block.ends_at else 0),
        block.id,
    )


def free_block(session: Session, blocks: list[SeatBlockRow], at: datetime) -> SeatBlockRow | None:
    """The block in force with a free seat that lasts longest, or None (all taken)."""
    usable = sorted((b for b in blocks if in_force(b, at)), key=_latest_first)
    counts = held(session, [b.id for b in usable])
    return next((b for b in usable if counts.get(b.id, 0) < b.quantity), None)


def take(
    session: Session,
    entitlements: Entitlements,
    member: TeamMemberRow,
    block: SeatBlockRow,
    at: datetime,
) -> EntitlementRow:
    """Give `member` a seat of `block` from `at` (after `lock_team`, `block` in force)."""
    member.seats_taken += 1
    grant = entitlements.grant_in(
        session,
        member.account_id,
        block.plan,
        EntitlementKind.SEAT,
        source=f"seat in team {block.team_id}",
        starts_at=at,
        ends_at=block.ends_at,
        once_key=f"seat:{member.id}:{member.seats_taken}",
    )
    member.block_id, member.entitlement_id, member.seat_since = block.id, grant.id, at
    return grant


def free(session: Session, member: TeamMemberRow, at: datetime) -> None:
    """The member's seat is free from `at`, and their seat grant ends then."""
    grant = _grant(session, member)
    if grant is not None:
        grant.revoked_at = at
    member.block_id, member.entitlement_id, member.seat_since = None, None, None


def _grant(session: Session, member: TeamMemberRow) -> EntitlementRow | None:
    if member.entitlement_id is None:
        return None
    grant = session.get(EntitlementRow, member.entitlement_id)
    return grant if grant is not None and grant.revoked_at is None else None


def _holders(session: Session, block: SeatBlockRow) -> list[TeamMemberRow]:
    query = select(TeamMemberRow).where(TeamMemberRow.block_id == block.id)
    return list(session.scalars(query.order_by(TeamMemberRow.id)))


def follow(
    session: Session, block: SeatBlockRow, period_end: datetime | None, ended: datetime | None
) -> None:
    """Make the block (and its holders' grants) match its subscription: `ended` (cancelled)
    ends them then; otherwise a later `period_end` (a renewal) moves them on. A refunded
    block stays so."""
    if block.revoked_at is not None or not lock_team(session, block.team_id):
        return
    if ended is not None:
        end = max(ended, block.starts_at)
        if block.ends_at is not None and end >= block.ends_at:
            return
        block.ends_at = end
    elif period_end is not None and block.ends_at is not None and period_end > block.ends_at:
        block.ends_at = period_end
    else:
        return
    for member in _holders(session, block):
        grant = _grant(session, member)
        if grant is not None:
            grant.ends_at = max(block.ends_at, grant.starts_at) if block.ends_at else None


def resize(session: Session, block: SeatBlockRow, quantity: int, at: datetime) -> int:
    """The block now has `quantity` seats (its subscription's quantity changed, say in the
    provider's portal). More seats are free at once; fewer free the seats taken last, and
    those holders' grants end at `at`. Returns how many holders lost their seat."""
    if block.revoked_at is not None or quantity == block.quantity:
        return 0
    if not lock_team(session, block.team_id):
        return 0
    block.quantity, block.updated_at = quantity, at
    holders = _holders(session, block)
    excess = max(0, len(holders) - quantity)
    latest_first = sorted(holders, key=lambda m: (m.seat_since or at, m.id), reverse=True)
    for member in latest_first[:excess]:
        free(session, member, at)
    return excess


def revoke(session: Session, block: SeatBlockRow, at: datetime) -> None:
    """A refund: the block's seats and its holders' grants end at `at`."""
    if block.revoked_at is not None or not lock_team(session, block.team_id):
        return
    block.revoked_at = at
    for member in _holders(session, block):
        grant = _grant(session, member)
        if grant is not None:
            grant.revoked_at = at


def move_to(session: Session, block: SeatBlockRow, at: datetime) -> int:
    """Move holders of the team's seats that end sooner (same plan) into the new `block`
    while it has free seats, so a renewal bought as a new order keeps people seated: their
    grants run to the new block's end. Returns how many moved."""
    if not in_force(block, at):
        return 0
    others = [
        b
        for b in blocks_of(session, block.team_id)
        if b.id != block.id and b.plan == block.plan and in_force(b, at) and _sooner(b, block)
    ]
    free_seats = block.quantity - held(session, [block.id]).get(block.id, 0)
    moved = 0
    for older in sorted(others, key=lambda b: (b.ends_at, b.id)):
        for member in _holders(session, older):
            if moved >= free_seats:
                return moved
            grant = _grant(session, member)
            if grant is not None:
                grant.ends_at = block.ends_at
            member.block_id = block.id
            moved += 1
    return moved


def _sooner(a: SeatBlockRow, b: SeatBlockRow) -> bool:
    return a.ends_at is not None and (b.ends_at is None or a.ends_at < b.ends_at)
