"""country prices, promo codes, group discounts (issue 8 parts 2, 5)

Revision ID: 0006
Revises: 0005
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _user(name: str, nullable: bool, ondelete: str) -> sa.Column[Any]:
    key = sa.ForeignKey("users.id", ondelete=ondelete)
    return sa.Column(name, sa.Integer(), key, nullable=nullable)


def upgrade() -> None:
    op.add_column("orders", sa.Column("price_tier", sa.String(16), nullable=True))
    op.add_column("orders", sa.Column("promo_code", sa.String(40), nullable=True))
    op.add_column("orders", sa.Column("discount", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "promo_codes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("code", sa.String(40), nullable=False, unique=True),
        sa.Column("percent", sa.Integer(), nullable=True),
        sa.Column("amount_off", sa.Integer(), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("max_redemptions", sa.Integer(), nullable=True),
        sa.Column("used", sa.Integer(), nullable=False),
        _when("expires_at", nullable=True),
        sa.Column("first_purchase_only", sa.Boolean(), nullable=False),
        sa.Column("plans", sa.JSON(), nullable=False),
        sa.Column("note", sa.String(200), nullable=False),
        _when("disabled_at", nullable=True),
        _user("created_by", True, "SET NULL"),
        _when("created_at"),
    )
    op.create_table(
        "promo_redemptions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "promo_id",
            sa.Integer(),
            sa.ForeignKey("promo_codes.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("code", sa.String(40), nullable=False),
        sa.Column(
            "order_id",
            sa.String(24),
            sa.ForeignKey("orders.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        _user("account_id", False, "CASCADE"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("discount", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        _when("reserved_at"),
        _when("settled_at", nullable=True),
    )
    op.create_index("ix_promo_redemptions_promo_id", "promo_redemptions", ["promo_id"])
    op.create_index("ix_promo_redemptions_account_id", "promo_redemptions", ["account_id"])


def downgrade() -> None:
    op.drop_table("promo_redemptions")
    op.drop_table("promo_codes")
    op.drop_column("orders", "discount")
    op.drop_column("orders", "promo_code")
    op.drop_column("orders", "price_tier")
