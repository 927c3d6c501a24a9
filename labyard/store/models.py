"""What should exist: playgrounds and their machines, as the database records them."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class UTCDateTime(TypeDecorator[datetime]):
    """A moment in time, stored in UTC and always read back timezone-aware (UTC).

    SQLite has no time zones: a plain DateTime(timezone=True) drops the offset on write and
    returns naive values, so a non-UTC moment would shift. This converts on the way in."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # A naive value is taken as UTC, the way everything here reads them.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class PlaygroundState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"
    """Its machines vanished under it (host reboot, crash): stop or destroy it."""


class PlaygroundRow(Base):
    __tablename__ = "playgrounds"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200), default="")
    owner: Mapped[str] = mapped_column(String(200), default="", index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    driver: Mapped[str] = mapped_column(String(32))
    driver_state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    client_key: Mapped[str] = mapped_column(Text)
    """Private key the control plane logs into the machines with."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    machines: Mapped[list[MachineRow]] = relationship(
        back_populates="playground", cascade="all, delete-orphan", order_by="MachineRow.position"
    )


class MachineRow(Base):
    __tablename__ = "machines"

    playground_id: Mapped[str] = mapped_column(
        ForeignKey("playgrounds.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(default=0)
    image: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64), default="")
    ssh_port: Mapped[int] = mapped_column(default=22)
    host_key: Mapped[str] = mapped_column(Text)
    """The machine's private host key: injected at start, its public half pinned on connect."""

    playground: Mapped[PlaygroundRow] = relationship(back_populates="machines")


class Role(enum.StrEnum):
    LEARNER = "learner"
    AUTHOR = "author"
    ADMIN = "admin"


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default=Role.LEARNER)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TokenRow(Base):
    """A browser session or an API token; only a hash of the secret is kept."""

    __tablename__ = "tokens"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    """`session` (cookie, expires) or `api` (CLI, until revoked)."""
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ShareRow(Base):
    """A public link to a port a playground exposes."""

    __tablename__ = "shares"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    playground_id: Mapped[str] = mapped_column(
        ForeignKey("playgrounds.id", ondelete="CASCADE"), index=True
    )
    machine: Mapped[str] = mapped_column(String(64))
    port: Mapped[int] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AttemptState(enum.StrEnum):
    ACTIVE = "active"
    SOLVED = "solved"
    FAILED = "failed"
    """A failcheck said the attempt cannot succeed any more; the learner starts over."""
    ENDED = "ended"
    """Given up, or its playground went away before it was solved."""


class TaskState(enum.StrEnum):
    """iximiuz's task status codes, so existing content and clients read them unchanged."""

    CREATED = "created"
    BLOCKED = "blocked"
    """A task it `needs` is not completed yet."""
    RUNNING = "running"
    """Its check is looped in the machine."""
    FAILED = "failed"
    COMPLETED = "completed"


class AttemptRow(Base):
    """One learner's go at a challenge or tutorial, in its own playground."""

    __tablename__ = "attempts"
    __table_args__ = (
        # analytics (migration 0009): attempts started, and solved, in a period
        Index("ix_attempts_started_at", "started_at", "content_key"),
        Index("ix_attempts_state_finished", "state", "finished_at", "content_key"),
    )

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200), index=True)
    content_key: Mapped[str] = mapped_column(String(200))
    """`challenges/<slug>` and the like."""
    playground_id: Mapped[str | None] = mapped_column(
        ForeignKey("playgrounds.id", ondelete="SET NULL"), nullable=True, index=True
    )
    state: Mapped[str] = mapped_column(String(16), index=True)
    message: Mapped[str] = mapped_column(Text, default="")
    """Why it failed or ended, for the learner."""
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The tasks as they were when it started: an author's later edit does not change the
    rules of an attempt already under way, and a restarted server needs no content folder."""
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """What the learner typed into user-input tasks, by task name."""
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    tasks: Mapped[list[TaskResultRow]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )


class TaskResultRow(Base):
    __tablename__ = "task_results"

    attempt_id: Mapped[str] = mapped_column(
        ForeignKey("attempts.id", ondelete="CASCADE"), primary_key=True
    )
    task: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    stdout: Mapped[str] = mapped_column(Text, default="")
    """Of the run that completed it (for `x(.needs.TASK.stdout)`)."""
    hint: Mapped[str] = mapped_column(Text, default="")
    """Latest output of its hintcheck."""
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class EntitlementKind(enum.StrEnum):
    SUBSCRIPTION = "subscription"
    LIFETIME = "lifetime"
    TRIAL = "trial"
    SEAT = "seat"
    """A team's seat: the seat's plan for the seat's dates."""
    EARNED = "earned"
    """Solving challenges (plans.yaml `earned`)."""
    MANUAL = "manual"
    """Set by an admin (`admin create-user --plan`, `Accounts.set_plan`)."""


class EntitlementRow(Base):
    """One grant of a plan to an account, for a time. The account's plan is the best one in
    force (see services/entitlements.py); rows are revoked, never deleted."""

    __tablename__ = "entitlements"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    plan: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(200), default="")
    """Where it comes from, for people: a subscription or order id, `admin`, ..."""
    once_key: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    """Makes a grant idempotent: a second grant with the same key is the first one (earned
    premium: `earned:<account>:<n>`; a payment provider's event or subscription id)."""
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """None: no end."""
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LaunchedBy(enum.StrEnum):
    FREE_PLAY = "free-play"
    CHALLENGE = "challenge"
    TUTORIAL = "tutorial"
    COURSE = "course"
    """A course's lesson."""
    CLASS = "class"
    """A training or class an instructor runs."""


class EndReason(enum.StrEnum):
    STOPPED = "stopped"
    DESTROYED = "destroyed"
    EXPIRED = "expired"
    CRASHED = "crashed"
    """Its machines went away while it ran (host reboot, crash), seen by the reconciler."""
    RECONCILED = "reconciled"
    """Removed by the reconciler for another reason (a start whose process died)."""
    FAILED = "failed"
    """The start (or restart) failed and was rolled back."""


class UsageSessionRow(Base):
    """One stretch of a playground running: from a start (or restart) to its stop, destroy,
    expiry, crash or rollback. Opened in the transaction that records the start, closed once
    (`UPDATE ... WHERE ended_at IS NULL`)."""

    __tablename__ = "usage_sessions"
    __table_args__ = (
        Index("ix_usage_sessions_account_started", "account_id", "started_at"),
        Index("ix_usage_sessions_started_at", "started_at"),
        # analytics (migration 0009; docs/analytics.md says which query reads which)
        Index(
            "ix_usage_sessions_period",
            "started_at",
            "restart",
            "machine_minutes",
            "plan",
            "launched_by",
            "playground_name",
            "account_id",
        ),
        Index(
            "ix_usage_sessions_dims",
            "plan",
            "launched_by",
            "playground_name",
            "restart",
            "started_at",
            "machine_minutes",
        ),
        Index("ix_usage_sessions_accounts", "account_id", "plan", "started_at"),
        Index("ix_usage_sessions_ended", "ended_at", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    """None: no account (the operator's local CLI)."""
    owner: Mapped[str] = mapped_column(String(200), default="")
    plan: Mapped[str] = mapped_column(String(32), default="")
    """The account's plan when the session started ('' when no plan applied)."""
    launched_by: Mapped[str] = mapped_column(String(16))
    content_key: Mapped[str] = mapped_column(String(200), default="")
    """The challenge, tutorial or lesson it was started for (`challenges/<slug>`), or ''."""
    playground_id: Mapped[str] = mapped_column(String(16), index=True)
    """Not a foreign key: the session outlives its playground's row."""
    playground_name: Mapped[str] = mapped_column(String(64))
    machines: Mapped[int] = mapped_column()
    restart: Mapped[bool] = mapped_column(default=False)
    """A restart of a playground that ran before (count launches without these)."""
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    machine_minutes: Mapped[float | None] = mapped_column(Float, nullable=True)
    """machines x minutes from start to end, set when it ends."""


class StartLockRow(Base):
    """One row per owner, updated first in every plan-checked start: the row lock (a write
    lock on SQLite) makes an owner's starts take turns, so the count of their playgrounds
    and the insert of a new one cannot interleave, across processes too."""

    __tablename__ = "start_locks"

    owner: Mapped[str] = mapped_column(String(200), primary_key=True)
    starts: Mapped[int] = mapped_column(default=0)


class OrderKind(enum.StrEnum):
    SUBSCRIPTION = "subscription"
    LIFETIME = "lifetime"
    SEATS = "seats"
    """A team's seats (issue 8 part 4 hands them out); a subscription with a quantity."""


class OrderStatus(enum.StrEnum):
    PENDING = "pending"
    """Created, not paid yet (the manual provider: awaiting payment)."""
    PAID = "paid"
    FAILED = "failed"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"


class OrderRow(Base):
    """One purchase of a plan: what, how much (integer minor units), and the provider's ids."""

    __tablename__ = "orders"
    __table_args__ = (
        # analytics (migration 0009): paid orders by payment time, and by account
        Index(
            "ix_orders_status_paid_at",
            "status",
            "paid_at",
            "currency",
            "amount",
            "price_tier",
            "account_id",
        ),
        Index(
            "ix_orders_standing",
            "status",
            "account_id",
            "currency",
            "paid_at",
            "kind",
            "interval",
            "amount",
            "entitlement_id",
            "id",
        ),
    )

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    """`ord_<random>`: also the provider's client reference and the entitlement's once key."""
    account_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    plan: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    interval: Mapped[str] = mapped_column(String(16))
    """`monthly`, `yearly` or `lifetime`."""
    quantity: Mapped[int] = mapped_column(default=1)
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column()
    """Total in the currency's minor unit (cents)."""
    status: Mapped[str] = mapped_column(String(16), index=True)
    provider: Mapped[str] = mapped_column(String(16))
    checkout_session_id: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    subscription_id: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    customer_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    invoice_id: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    """The latest invoice paid for it."""
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    charge_id: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    quoted_country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    """The buyer's country when the price was quoted (issue 8 part 2: country prices)."""
    price_tier: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """The country price tier the order was quoted in (pricing.yaml); None: not tiered
    (team seats, or no country known)."""
    card_country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    """The card's country as the provider reported it at payment."""
    flagged: Mapped[bool] = mapped_column(default=False)
    flag_reason: Mapped[str] = mapped_column(String(200), default="")
    entitlement_id: Mapped[int | None] = mapped_column(
        ForeignKey("entitlements.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SubscriptionRow(Base):
    """A provider's subscription as the webhooks last described it. Events are applied only
    if not older than `last_event_at`, and `canceled` is terminal, so a late update never
    brings a cancelled subscription back."""

    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    provider_id: Mapped[str] = mapped_column(String(255), unique=True)
    order_id: Mapped[str | None] = mapped_column(
        ForeignKey("orders.id", ondelete="SET NULL"), nullable=True, index=True
    )
    status: Mapped[str] = mapped_column(String(32))
    """The provider's word: active, trialing, past_due, unpaid, canceled, ..."""
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    payment_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_event_at: Mapped[datetime] = mapped_column(UTCDateTime())
    """`created` of the newest event applied to it."""
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BillingEventRow(Base):
    """The webhook inbox: every verified event, stored (and committed) before it is acted on;
    `processed_at` is set in the transaction that acts on it."""

    __tablename__ = "billing_events"
    __table_args__ = (UniqueConstraint("provider", "event_id", name="uq_billing_events_event"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(100))
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    """When the provider made the event (its `created`)."""
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    outcome: Mapped[str] = mapped_column(String(200), default="")
    """What processing did, for the operator: `granted`, `ignored: ...`."""
