"""The billing profile: whom an account's invoices are made out to (name, postal address,
country, and a VAT ID for businesses). The learner keeps it up to date; each invoice copies
it when issued (invoices.py), so editing it never changes an invoice already issued."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from labyard.errors import InvalidInput
from labyard.services.accounts import User
from labyard.services.countries import NAMES as COUNTRIES
from labyard.store import BillingProfileRow, Database

MAX_NAME = 200
MAX_ADDRESS_LINES = 6
MAX_LINE = 100
VAT_ID = re.compile(r"[A-Z0-9][A-Z0-9 .\-/]{2,28}[A-Z0-9]")
"""Loosely: 4-30 letters and digits, with the spaces, dots, dashes and slashes people
write in them (DE123456789, ATU12345678, CHE-123.456.789 MWST, GB 123 4567 89). No
checksum and no registry lookup: the seller checks a VAT ID that matters to them."""


@dataclass(frozen=True)
class BillingProfile:
    name: str
    address: str
    """One line per line."""
    country: str
    vat_id: str = ""
    updated_at: datetime | None = None

    @property
    def complete(self) -> bool:
        return bool(self.name and self.country)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["updated_at"] = self.updated_at.isoformat() if self.updated_at else None
        return data


EMPTY = BillingProfile("", "", "")


def _one_line(value: str) -> str:
    return " ".join(value.split())


def validated(name: str, address: str, country: str, vat_id: str = "") -> BillingProfile:
    """The profile as stored (trimmed, upper-case country and VAT ID), or InvalidInput
    saying every field that is wrong."""
    problems = []
    name = _one_line(name)
    if not 1 <= len(name) <= MAX_NAME:
        problems.append(f"name: give the name invoices are made out to (1-{MAX_NAME} characters)")
    lines = [_one_line(line) for line in address.replace("\r", "").split("\n")]
    lines = [line for line in lines if line]
    if len(lines) > MAX_ADDRESS_LINES or any(len(line) > MAX_LINE for line in lines):
        problems.append(
            f"address: at most {MAX_ADDRESS_LINES} lines of at most {MAX_LINE} characters"
        )
    country = country.strip().upper()
    if country not in COUNTRIES:
        problems.append(
            f"country: {country!r} is not an ISO 3166-1 alpha-2 country code (like DE, US, JP)"
        )
    vat_id = _one_line(vat_id).upper()
    if vat_id and (not VAT_ID.fullmatch(vat_id) or sum(c.isdigit() for c in vat_id) < 2):
        problems.append(f"vat_id: {vat_id!r} does not look like a VAT ID (like DE123456789)")
    if problems:
        raise InvalidInput("; ".join(problems))
    return BillingProfile(name, "\n".join(lines), country, vat_id)


def _profile(row: BillingProfileRow | None) -> BillingProfile:
    if row is None:
        return EMPTY
    return BillingProfile(row.name, row.address, row.country, row.vat_id, row.updated_at)


def profile_in(session: Session, account_id: int) -> BillingProfile:
    """The account's profile in the caller's transaction (EMPTY when it has none)."""
    return _profile(session.get(BillingProfileRow, account_id))


class Profiles:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, user: User) -> BillingProfile:
        with self.db.session() as session:
            return profile_in(session, user.id)

    def put(
        self, user: User, name: str, address: str, country: str, vat_id: str = ""
    ) -> BillingProfile:
        """Set the user's own profile; invoices issued from now on use it."""
        wanted = validated(name, address, country, vat_id)
        now = datetime.now(UTC)
        with self.db.session() as session:
            row = session.get(BillingProfileRow, user.id, with_for_update=True)
            if row is None:
                row = BillingProfileRow(account_id=user.id)
                session.add(row)
            row.name, row.address, row.country = wanted.name, wanted.address, wanted.country
            row.vat_id, row.updated_at = wanted.vat_id, now
            return _profile(row)
