"""billing: orders, provider subscriptions, the webhook inbox

Revision ID: 0005
Revises: 0004
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _ref(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.String(255), nullable=True)


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column(
            "account_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("plan", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("interval", sa.String(16), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        _ref("checkout_session_id"),
        _ref("subscription_id"),
        _ref("customer_id"),
        _ref("invoice_id"),
        _ref("payment_intent_id"),
        _ref("charge_id"),
        sa.Column("quoted_country", sa.String(2), nullable=True),
        sa.Column("card_country", sa.String(2), nullable=True),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("flag_reason", sa.String(200), nullable=False),
        sa.Column(
            "entitlement_id",
            sa.Integer(),
            sa.ForeignKey("entitlements.id", ondelete="SET NULL"),
            nullable=True,
        ),
        _when("created_at"),
        _when("paid_at", nullable=True),
        _when("updated_at"),
    )
    for column in (
        "account_id",
        "status",
        "checkout_session_id",
        "subscription_id",
        "invoice_id",
        "payment_intent_id",
        "charge_id",
    ):
        op.create_index(f"ix_orders_{column}", "orders", [column])
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("provider_id", sa.String(255), nullable=False, unique=True),
        sa.Column(
            "order_id",
            sa.String(24),
            sa.ForeignKey("orders.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("status", sa.String(32), nullable=False),
        _when("current_period_end", nullable=True),
        _when("ended_at", nullable=True),
        _when("payment_failed_at", nullable=True),
        _when("last_event_at"),
        _when("updated_at"),
    )
    op.create_index("ix_subscriptions_order_id", "subscriptions", ["order_id"])
    op.create_table(
        "billing_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        _when("created"),
        sa.Column("payload", sa.JSON(), nullable=False),
        _when("received_at"),
        _when("processed_at", nullable=True),
        sa.Column("outcome", sa.String(200), nullable=False),
        sa.UniqueConstraint("provider", "event_id", name="uq_billing_events_event"),
    )


def downgrade() -> None:
    op.drop_table("billing_events")
    op.drop_table("subscriptions")
    op.drop_table("orders")
