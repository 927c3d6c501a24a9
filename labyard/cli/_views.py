"""The SSH keys of a playground as the CLI's OpenSSH commands need them, whichever backend
it acts on (playgrounds themselves are `labyard.types.Playground`, for both backends)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SshKeys:
    """What OpenSSH needs for one playground: its client key, each machine's host key."""

    user: str
    client_key: str
    host_keys: dict[str, str]
    """Machine name -> OpenSSH public key line, in the playground's machine order."""
