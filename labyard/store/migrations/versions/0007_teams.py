"""teams and their seats (issue 8 part 4): teams, seat blocks (one per paid seats order),
team members (admins and seat holders), and the team a seats order is for

Revision ID: 0007
Revises: 0006
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _team() -> sa.Column[Any]:
    return sa.Column(
        "team_id", sa.String(16), sa.ForeignKey("teams.id", ondelete="CASCADE"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("join_code", sa.String(16), nullable=False, unique=True),
        sa.Column("changes", sa.Integer(), nullable=False),
        _when("created_at"),
        _when("updated_at"),
    )
    op.create_table(
        "seat_blocks",
        sa.Column("id", sa.Integer(), primary_key=True),
        _team(),
        sa.Column(
            "order_id",
            sa.String(24),
            sa.ForeignKey("orders.id", ondelete="SET NULL"),
            nullable=True,
            unique=True,
        ),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("plan", sa.String(32), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        _when("starts_at"),
        _when("ends_at", nullable=True),
        _when("revoked_at", nullable=True),
        _when("created_at"),
        _when("updated_at"),
    )
    op.create_index("ix_seat_blocks_team_id", "seat_blocks", ["team_id"])
    op.create_table(
        "team_members",
        sa.Column("id", sa.Integer(), primary_key=True),
        _team(),
        sa.Column(
            "account_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.Column(
            "block_id",
            sa.Integer(),
            sa.ForeignKey("seat_blocks.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column(
            "entitlement_id",
            sa.Integer(),
            sa.ForeignKey("entitlements.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("seats_taken", sa.Integer(), nullable=False),
        _when("seat_since", nullable=True),
        _when("joined_at"),
        sa.UniqueConstraint("team_id", "account_id", name="uq_team_members_account"),
    )
    for column in ("team_id", "account_id", "block_id"):
        op.create_index(f"ix_team_members_{column}", "team_members", [column])
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("team_id", sa.String(16), nullable=True))
        batch.create_foreign_key(
            "fk_orders_team_id", "teams", ["team_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_index("ix_orders_team_id", ["team_id"])


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_index("ix_orders_team_id")
        batch.drop_constraint("fk_orders_team_id", type_="foreignkey")
        batch.drop_column("team_id")
    op.drop_table("team_members")
    op.drop_table("seat_blocks")
    op.drop_table("teams")
