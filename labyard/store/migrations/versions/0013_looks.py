"""looks over a learner's shoulder (issue 9 part 4): who watched which class member's
terminal (playground, machine, tab), from when to when, and whether input was granted

Revision ID: 0013
Revises: 0012
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _user(name: str) -> sa.Column[Any]:
    return sa.Column(
        name, sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "looks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "class_id",
            sa.String(16),
            sa.ForeignKey("classes.id", ondelete="CASCADE"),
            nullable=False,
        ),
        _user("watcher_id"),
        _user("learner_id"),
        sa.Column("playground_id", sa.String(16), nullable=False),
        sa.Column("machine", sa.String(64), nullable=False),
        sa.Column("tab", sa.String(32), nullable=False),
        _when("started_at"),
        _when("ended_at", nullable=True),
        sa.Column("input_granted", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_looks_class_id", "looks", ["class_id"])
    op.create_index("ix_looks_playground_id", "looks", ["playground_id"])


def downgrade() -> None:
    op.drop_table("looks")
