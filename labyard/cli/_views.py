"""Playgrounds as the CLI shows them, and the SSH keys of one, whichever backend it acts on.

Both backends hand these out: the remote one parses the server's JSON, the local one the
same JSON from `labyard.services.Playground.to_json()`, so `--json` prints the same shape
either way. Defined here, not imported from `labyard.services`, so that acting on a server
never loads the server stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Machine:
    name: str
    image: str
    address: str
    state: str


@dataclass(frozen=True)
class Playground:
    id: str
    name: str
    title: str
    owner: str
    state: str
    machines: list[Machine]
    created_at: datetime
    expires_at: datetime

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Playground:
        """From the API's JSON for a playground (fields it does not know are ignored)."""
        machines = [
            Machine(m["name"], m["image"], m["address"], m["state"]) for m in data["machines"]
        ]
        return cls(
            id=data["id"],
            name=data["name"],
            title=data["title"],
            owner=data["owner"],
            state=data["state"],
            machines=machines,
            created_at=datetime.fromisoformat(data["created_at"]),
            expires_at=datetime.fromisoformat(data["expires_at"]),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "title": self.title,
            "owner": self.owner,
            "state": self.state,
            "machines": [m.__dict__ for m in self.machines],
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
        }


@dataclass(frozen=True)
class SshKeys:
    """What OpenSSH needs for one playground: its client key, each machine's host key."""

    user: str
    client_key: str
    host_keys: dict[str, str]
    """Machine name -> OpenSSH public key line, in the playground's machine order."""
