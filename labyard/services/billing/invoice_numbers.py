"""Invoice numbers: one series per kind and year, counted without gaps.

    invoice       2026-000001, 2026-000002, ...
    credit note   CN-2026-000001, ...

A number is taken in the transaction that stores its invoice, by one statement on the
series' counter row: `INSERT ... ON CONFLICT (kind, year) DO UPDATE SET last = last + 1
RETURNING last` (SQLite and PostgreSQL both have it). On PostgreSQL the statement locks the
row until the transaction ends, so a concurrent payment waits for this one to commit; on
SQLite the transaction holds the database's write lock from it on. If the transaction
rolls back, so does the count: no number is skipped, none is given twice.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from labyard.store import InvoiceCounterRow
from labyard.types import InvoiceKind

PREFIXES = {InvoiceKind.INVOICE: "", InvoiceKind.CREDIT_NOTE: "CN-"}
DIGITS = 6


def number(kind: str, year: int, sequence: int) -> str:
    return f"{PREFIXES[InvoiceKind(kind)]}{year}-{sequence:0{DIGITS}d}"


def take(session: Session, kind: str, year: int) -> int:
    """The next sequence number of `kind` in `year`, in the caller's transaction."""
    dialect = session.get_bind().dialect.name
    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(InvoiceCounterRow)
        .values(kind=kind, year=year, last=1)
        .on_conflict_do_update(
            index_elements=["kind", "year"], set_={"last": InvoiceCounterRow.last + 1}
        )
        .returning(InvoiceCounterRow.last)
    )
    taken = session.execute(statement).scalar_one()
    return int(taken)
