"""warm playground pools and the start queue (issue 9 part 2): the pools, and on each
playground the pool that pre-started it and when it was claimed

Revision ID: 0011
Revises: 0010
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "pools",
        sa.Column("key", sa.String(160), primary_key=True),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("reserve", sa.Integer(), nullable=False),
        sa.Column("claimed", sa.Integer(), nullable=False),
        sa.Column("operator", sa.Boolean(), nullable=False),
        _when("created_at"),
        _when("updated_at"),
    )
    op.add_column("playgrounds", sa.Column("pool_key", sa.String(160), nullable=True))
    op.add_column("playgrounds", _when("claimed_at", nullable=True))
    op.create_index("ix_playgrounds_pool_key", "playgrounds", ["pool_key"])


def downgrade() -> None:
    op.drop_index("ix_playgrounds_pool_key", table_name="playgrounds")
    with op.batch_alter_table("playgrounds") as batch:
        batch.drop_column("claimed_at")
        batch.drop_column("pool_key")
    op.drop_table("pools")
