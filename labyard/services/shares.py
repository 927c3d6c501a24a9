"""Share links: a public URL for one port of one machine, until its owner revokes it.

The token is the whole credential (anyone holding the link gets in), so it is random and
long; it is kept in the clear because the owner lists and copies their links again.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from labyard.errors import InvalidInput, NotFound
from labyard.services.playgrounds import Playgrounds, aware
from labyard.store import ShareRow


@dataclass(frozen=True)
class Share:
    token: str
    playground_id: str
    machine: str
    port: int
    created_at: datetime

    def to_json(self) -> dict[str, object]:
        return {
            "token": self.token,
            "playground_id": self.playground_id,
            "machine": self.machine,
            "port": self.port,
            "created_at": self.created_at.isoformat(),
        }


def _share(row: ShareRow) -> Share:
    return Share(row.token, row.playground_id, row.machine, row.port, aware(row.created_at))


class Shares:
    def __init__(self, playgrounds: Playgrounds) -> None:
        self.playgrounds = playgrounds
        self.db = playgrounds.db

    async def create(self, playground_id: str, machine: str, port: int, owner: str) -> Share:
        """A new public link to `port` of `machine`; NotFound unless `owner` owns it."""
        playground = await self.playgrounds.get(playground_id, owner)
        names = [m.name for m in playground.machines]
        if machine not in names:
            raise NotFound(
                f"playground {playground_id} has no machine {machine!r} (machines: "
                f"{', '.join(names)})"
            )
        if not 1 <= port <= 65535:
            raise InvalidInput(f"{port} is not a TCP port (1-65535)")
        # Hex: the token may also stand in a host name, where case does not count.
        row = ShareRow(
            token=secrets.token_hex(20),
            playground_id=playground_id,
            machine=machine,
            port=port,
            created_at=datetime.now(UTC),
        )
        with self.db.session() as session:
            session.add(row)
            session.flush()
            return _share(row)

    async def list(self, playground_id: str, owner: str) -> list[Share]:
        await self.playgrounds.get(playground_id, owner)
        with self.db.session() as session:
            rows = session.scalars(
                select(ShareRow)
                .where(ShareRow.playground_id == playground_id)
                .order_by(ShareRow.created_at)
            )
            return [_share(row) for row in rows]

    async def revoke(self, playground_id: str, token: str, owner: str) -> None:
        await self.playgrounds.get(playground_id, owner)
        with self.db.session() as session:
            row = session.get(ShareRow, token)
            if row is None or row.playground_id != playground_id:
                raise NotFound("no such share link")
            session.delete(row)

    def resolve(self, token: str) -> Share:
        """The share a link's token names; NotFound once revoked (or never issued)."""
        with self.db.session() as session:
            row = session.get(ShareRow, token)
            if row is None:
                raise NotFound("no such share link (it may have been revoked)")
            return _share(row)
