"""playgrounds and machines

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "playgrounds",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("driver", sa.String(32), nullable=False),
        sa.Column("driver_state", sa.JSON(), nullable=False),
        sa.Column("client_key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_playgrounds_owner", "playgrounds", ["owner"])
    op.create_index("ix_playgrounds_state", "playgrounds", ["state"])
    op.create_index("ix_playgrounds_expires_at", "playgrounds", ["expires_at"])
    op.create_table(
        "machines",
        sa.Column(
            "playground_id",
            sa.String(16),
            sa.ForeignKey("playgrounds.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("image", sa.String(64), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("ssh_port", sa.Integer(), nullable=False),
        sa.Column("host_key", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("machines")
    op.drop_table("playgrounds")
