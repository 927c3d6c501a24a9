"""What playgrounds, attempts and usage record as their owner: `user:<id>` for an account,
'' for the operator on this host (the local CLI). Only this module knows the format."""

from __future__ import annotations

import re

_ACCOUNT = re.compile(r"^user:([0-9]{1,18})$")


def owner_of(account_id: int) -> str:
    return f"user:{account_id}"


def account_of(owner: str) -> int | None:
    """The account an owner label names, or None (the operator, or a test's label)."""
    match = _ACCOUNT.match(owner)
    return int(match.group(1)) if match else None
