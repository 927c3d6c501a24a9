"""country prices, promo codes, group discounts (issue 8 parts 2, 5)

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("price_tier", sa.String(16), nullable=True))


def downgrade() -> None:
    op.drop_column("orders", "price_tier")
