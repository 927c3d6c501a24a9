"""invoices and credit notes (issue 8 part 6)

Revision ID: 0008
Revises: 0007
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _when(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def _ref(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.String(255), nullable=True)


def _link(name: str, target: str, kind: Any = sa.Integer) -> sa.Column[Any]:
    return sa.Column(name, kind, sa.ForeignKey(target, ondelete="SET NULL"), nullable=True)


def upgrade() -> None:
    op.create_table(
        "billing_profiles",
        sa.Column(
            "account_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("vat_id", sa.String(32), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        _when("updated_at"),
    )
    op.create_table(
        "invoice_counters",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("year", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("last", sa.Integer(), nullable=False),
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("number", sa.String(32), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        _link("account_id", "users.id"),
        _link("order_id", "orders.id", sa.String(24)),
        _link("credited_id", "invoices.id"),
        sa.Column("once_key", sa.String(255), nullable=False, unique=True),
        _ref("provider_invoice_id"),
        _ref("charge_id"),
        _ref("payment_intent_id"),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("tax", sa.Integer(), nullable=False),
        _when("issued_at"),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.UniqueConstraint("kind", "year", "sequence", name="uq_invoices_sequence"),
    )
    for column in (
        "account_id",
        "order_id",
        "credited_id",
        "provider_invoice_id",
        "charge_id",
        "payment_intent_id",
    ):
        op.create_index(f"ix_invoices_{column}", "invoices", [column])


def downgrade() -> None:
    op.drop_table("invoices")
    op.drop_table("invoice_counters")
    op.drop_table("billing_profiles")
