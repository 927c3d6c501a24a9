"""Teams over HTTP: join with a code, the teams I am in, and what their admins do. Policy
(who may see or change what, seats, codes) lives in services/teams.py; seats are bought
through `POST /api/billing/checkout` with `seats` (and `team_id` to buy more)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from labyard.api.deps import LabyardDep, UserDep

router = APIRouter(prefix="/api/teams", tags=["teams"])
MAX_ID = 2**31 - 1
AccountId = Annotated[int, Path(ge=1, le=MAX_ID)]


class JoinBody(BaseModel):
    code: str = Field(min_length=1, max_length=32)
    """The team's join code, in any case (`abcd-efgh` is `ABCDEFGH`)."""


class RenameBody(BaseModel):
    name: str = Field(min_length=1, max_length=100)


class AdminBody(BaseModel):
    account_id: int = Field(ge=1, le=MAX_ID)
    """A member of the team."""


def _base(request: Request) -> str:
    return str(request.base_url)


@router.post("/join")
def join(body: JoinBody, request: Request, user: UserDep, labyard: LabyardDep) -> dict[str, Any]:
    """Take a seat of the team whose code this is (a seat held already is kept). 409 when
    every seat is taken."""
    return labyard.teams.join(user, body.code).to_json(_base(request))


@router.get("")
def my_teams(request: Request, user: UserDep, labyard: LabyardDep) -> list[dict[str, Any]]:
    """The teams I administer or hold a seat of."""
    return [team.to_json(_base(request)) for team in labyard.teams.list(user)]


@router.get("/{team_id}")
def team(team_id: str, request: Request, user: UserDep, labyard: LabyardDep) -> dict[str, Any]:
    """Admins: seats used and free, members, the join code and invite link, the seat
    blocks bought. Members: their own seat. Anyone else: 404."""
    return labyard.teams.get(user, team_id).to_json(_base(request))


@router.patch("/{team_id}")
def rename(
    team_id: str, body: RenameBody, request: Request, user: UserDep, labyard: LabyardDep
) -> dict[str, Any]:
    """Rename the team (admins)."""
    return labyard.teams.rename(user, team_id, body.name).to_json(_base(request))


@router.delete("/{team_id}/members/{account_id}")
def remove_member(
    team_id: str, account_id: AccountId, request: Request, user: UserDep, labyard: LabyardDep
) -> dict[str, Any]:
    """Free a member's seat now (admins): their seat's plan ends at once."""
    return labyard.teams.remove_member(user, team_id, account_id).to_json(_base(request))


@router.post("/{team_id}/code")
def new_code(team_id: str, request: Request, user: UserDep, labyard: LabyardDep) -> dict[str, Any]:
    """A new join code (admins): the old code and invite link stop working."""
    return labyard.teams.new_code(user, team_id).to_json(_base(request))


@router.post("/{team_id}/admins")
def add_admin(
    team_id: str, body: AdminBody, request: Request, user: UserDep, labyard: LabyardDep
) -> dict[str, Any]:
    """Make a member an admin too (admins)."""
    return labyard.teams.set_admin(user, team_id, body.account_id, True).to_json(_base(request))


@router.delete("/{team_id}/admins/{account_id}")
def drop_admin(
    team_id: str, account_id: AccountId, request: Request, user: UserDep, labyard: LabyardDep
) -> dict[str, Any]:
    """An admin steps down, or is stepped down (admins; never the last one)."""
    return labyard.teams.set_admin(user, team_id, account_id, False).to_json(_base(request))
