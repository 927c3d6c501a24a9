"""attempts at challenges and tutorials, and the state of each of their tasks

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attempts",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("content_key", sa.String(200), nullable=False),
        sa.Column(
            "playground_id",
            sa.String(16),
            sa.ForeignKey("playgrounds.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_attempts_owner", "attempts", ["owner"])
    op.create_index("ix_attempts_state", "attempts", ["state"])
    op.create_index("ix_attempts_playground_id", "attempts", ["playground_id"])
    op.create_table(
        "task_results",
        sa.Column(
            "attempt_id",
            sa.String(16),
            sa.ForeignKey("attempts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("task", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("stdout", sa.Text(), nullable=False),
        sa.Column("hint", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("task_results")
    op.drop_table("attempts")
