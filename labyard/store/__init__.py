"""Persistence: what should exist, in SQLite or PostgreSQL."""

from labyard.store.db import Database
from labyard.store.models import (
    AttemptRow,
    AttemptState,
    Base,
    MachineRow,
    PlaygroundRow,
    PlaygroundState,
    Role,
    ShareRow,
    TaskResultRow,
    TaskState,
    TokenRow,
    UserRow,
)

__all__ = [
    "AttemptRow",
    "AttemptState",
    "Base",
    "Database",
    "MachineRow",
    "PlaygroundRow",
    "PlaygroundState",
    "Role",
    "ShareRow",
    "TaskResultRow",
    "TaskState",
    "TokenRow",
    "UserRow",
]
