"""Persistence: what should exist, in SQLite or PostgreSQL."""

from labyard.store.db import Database
from labyard.store.models import (
    Base,
    MachineRow,
    PlaygroundRow,
    PlaygroundState,
    Role,
    ShareRow,
    TokenRow,
    UserRow,
)

__all__ = [
    "Base",
    "Database",
    "MachineRow",
    "PlaygroundRow",
    "PlaygroundState",
    "Role",
    "ShareRow",
    "TokenRow",
    "UserRow",
]
