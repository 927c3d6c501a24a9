"""LTI 1.3 platforms, launches, grade passback (issue 9 part 7): registered platforms and
their deployment ids, used launch nonces, the accounts made for platform users (iss + sub),
courses (contexts) and resource links with their service endpoints, and each member's
roles and last grade sent

Revision ID: 0012
Revises: 0011
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _ref(name: str, table: str, **kwargs: Any) -> sa.Column[Any]:
    return sa.Column(
        name, sa.Integer(), sa.ForeignKey(f"{table}.id", ondelete="CASCADE"), nullable=False,
        **kwargs,
    )  # fmt: skip


def _text(name: str, length: int, **kwargs: Any) -> sa.Column[Any]:
    return sa.Column(name, sa.String(length), nullable=False, **kwargs)


def upgrade() -> None:
    op.create_table(
        "lti_platforms",
        sa.Column("id", sa.Integer(), primary_key=True),
        _text("name", 100),
        _text("issuer", 255),
        _text("client_id", 255),
        _text("jwks_url", 1000),
        _text("auth_url", 1000),
        _text("token_url", 1000),
        _when("created_at"),
        sa.UniqueConstraint("issuer", "client_id", name="uq_lti_platforms_client"),
    )
    op.create_table(
        "lti_deployments",
        sa.Column("id", sa.Integer(), primary_key=True),
        _ref("platform_id", "lti_platforms", index=True),
        _text("deployment_id", 255),
        sa.UniqueConstraint("platform_id", "deployment_id", name="uq_lti_deployments_id"),
    )
    op.create_table(
        "lti_nonces",
        _ref("platform_id", "lti_platforms", primary_key=True),
        _text("nonce", 255, primary_key=True),
        _when("expires_at"),
    )
    op.create_index("ix_lti_nonces_expires_at", "lti_nonces", ["expires_at"])
    op.create_table(
        "lti_identities",
        sa.Column("id", sa.Integer(), primary_key=True),
        _ref("platform_id", "lti_platforms", index=True),
        _text("sub", 255),
        _ref("account_id", "users", unique=True),
        _text("name", 200),
        _text("email", 254),
        _when("created_at"),
        _when("last_launch_at"),
        sa.UniqueConstraint("platform_id", "sub", name="uq_lti_identities_sub"),
    )
    op.create_table(
        "lti_contexts",
        sa.Column("id", sa.Integer(), primary_key=True),
        _ref("platform_id", "lti_platforms", index=True),
        _text("context_id", 255),
        _text("title", 255),
        _text("memberships_url", 1000),
        _when("updated_at"),
        sa.UniqueConstraint("platform_id", "context_id", name="uq_lti_contexts_context"),
    )
    op.create_table(
        "lti_links",
        sa.Column("id", sa.Integer(), primary_key=True),
        _ref("context_row_id", "lti_contexts", index=True),
        _text("deployment_id", 255),
        _text("resource_link_id", 255),
        _text("title", 255),
        _text("content_key", 200, index=True),
        _text("lineitem_url", 1000),
        _text("lineitems_url", 1000),
        sa.Column("ags_scopes", sa.JSON(), nullable=False),
        _when("updated_at"),
        sa.UniqueConstraint("context_row_id", "resource_link_id", name="uq_lti_links_link"),
    )
    op.create_table(
        "lti_grades",
        sa.Column("id", sa.Integer(), primary_key=True),
        _ref("link_id", "lti_links", index=True),
        _ref("identity_id", "lti_identities", index=True),
        sa.Column("instructor", sa.Boolean(), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=True),
        sa.Column("total", sa.Integer(), nullable=True),
        _text("status", 16),
        _text("error", 500),
        _when("sent_at", nullable=True),
        _when("updated_at"),
        sa.UniqueConstraint("link_id", "identity_id", name="uq_lti_grades_member"),
    )


def downgrade() -> None:
    for table in (
        "lti_grades",
        "lti_links",
        "lti_contexts",
        "lti_identities",
        "lti_nonces",
        "lti_deployments",
        "lti_platforms",
    ):
        op.drop_table(table)
