"""Join codes people read aloud and type: teams' (8 characters) and, later, classes' (6).

The alphabet leaves out what is easily misread (0/O, 1/I/L), and codes are compared
case-insensitively, with spaces and dashes ignored (`abcd-efgh` is `ABCDEFGH`)."""

from __future__ import annotations

import secrets

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
"""31 characters: an 8-character code is one of about 8.5 * 10^11."""


def new_code(length: int = 8) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def normalise(typed: str) -> str:
    """A code as stored: upper case, without the spaces and dashes people type."""
    return "".join(typed.split()).replace("-", "").upper()


def plausible(code: str, length: int = 8) -> bool:
    """Whether a normalised code could be one at all (skips a lookup for junk)."""
    return len(code) == length and all(c in ALPHABET for c in code)
