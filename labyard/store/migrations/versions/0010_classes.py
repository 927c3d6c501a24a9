"""classes, members, join codes, broadcasts (issue 9): classes, their members (accounts
and guests), the attempts started in them, the instructor's broadcasts, and the class a
usage session's seat came from

Revision ID: 0010
Revises: 0009
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _class() -> sa.Column[Any]:
    return sa.Column(
        "class_id", sa.String(16), sa.ForeignKey("classes.id", ondelete="CASCADE"), nullable=False
    )


def _account(foreign: bool = True) -> sa.Column[Any]:
    if not foreign:
        return sa.Column("account_id", sa.Integer(), nullable=False)
    return sa.Column(
        "account_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "classes",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column(
            "instructor_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=False),
        _when("starts_at"),
        _when("ends_at"),
        sa.Column("guests", sa.Boolean(), nullable=False),
        sa.Column("join_code", sa.String(16), nullable=False, unique=True),
        _when("ended_at", nullable=True),
        sa.Column("changes", sa.Integer(), nullable=False),
        _when("created_at"),
    )
    op.create_index("ix_classes_instructor_id", "classes", ["instructor_id"])
    op.create_table(
        "class_members",
        sa.Column("id", sa.Integer(), primary_key=True),
        _class(),
        _account(),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("guest", sa.Boolean(), nullable=False),
        _when("joined_at"),
        _when("removed_at", nullable=True),
        sa.UniqueConstraint("class_id", "account_id", name="uq_class_members_account"),
    )
    op.create_index("ix_class_members_class_id", "class_members", ["class_id"])
    op.create_index("ix_class_members_account_id", "class_members", ["account_id"])
    op.create_table(
        "class_attempts",
        sa.Column(
            "attempt_id",
            sa.String(16),
            sa.ForeignKey("attempts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        _class(),
        _account(foreign=False),
        sa.Column("hints", sa.JSON(), nullable=False),
        _when("created_at"),
    )
    op.create_index("ix_class_attempts_class_id", "class_attempts", ["class_id"])
    op.create_table(
        "class_broadcasts",
        sa.Column("id", sa.Integer(), primary_key=True),
        _class(),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        _when("created_at"),
    )
    op.create_index("ix_class_broadcasts_class_id", "class_broadcasts", ["class_id"])
    op.add_column("usage_sessions", sa.Column("class_id", sa.String(16), nullable=True))
    op.create_index("ix_usage_sessions_class_id", "usage_sessions", ["class_id"])


def downgrade() -> None:
    op.drop_index("ix_usage_sessions_class_id", table_name="usage_sessions")
    with op.batch_alter_table("usage_sessions") as batch:
        batch.drop_column("class_id")
    for table in ("class_broadcasts", "class_attempts", "class_members", "classes"):
        op.drop_table(table)
