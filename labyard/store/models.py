"""What should exist: playgrounds and their machines, as the database records them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
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

from labyard.types import (
    Role,
)


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
    pool_key: Mapped[str | None] = mapped_column(String(160), nullable=True, index=True)
    """The pool that pre-started it (services/pools.py, migration 0011); None: started for
    its owner. Warm (claimable) while `claimed_at` is None."""
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """When a learner claimed it from its pool; its lifetime and usage count from here."""
    notice: Mapped[str] = mapped_column(Text, default="", server_default="")
    """A sentence for its owner on why it stopped (its server drained: services/cluster/
    members.py, migration 0017); "" for none. Cleared when it starts again."""

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
    class_id: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)
    """The class whose seats paid for it (launched_by `class`), or None. Not a foreign key:
    the usage record outlives the class (migration 0010)."""


class UsageDayRow(Base):
    """The closed usage sessions that started on one UTC day, by plan at start and what
    launched them, summed: what the analytics reads for a period instead of every session.
    Added to in the transaction that closes a session (usage.close_sessions)."""

    __tablename__ = "usage_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    plan: Mapped[str] = mapped_column(String(32), primary_key=True)
    launched_by: Mapped[str] = mapped_column(String(16), primary_key=True)
    launches: Mapped[int] = mapped_column(default=0)
    """The sessions that were no restart."""
    machine_minutes: Mapped[float] = mapped_column(Float, default=0.0)


class PlaygroundDayRow(Base):
    """Like UsageDayRow, by playground name: the analytics' most popular playgrounds."""

    __tablename__ = "playground_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    playground_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    launches: Mapped[int] = mapped_column(default=0)
    machine_minutes: Mapped[float] = mapped_column(Float, default=0.0)


class StartLockRow(Base):
    """One row per owner, updated first in every plan-checked start: the row lock (a write
    lock on SQLite) makes an owner's starts take turns, so the count of their playgrounds
    and the insert of a new one cannot interleave, across processes too."""

    __tablename__ = "start_locks"

    owner: Mapped[str] = mapped_column(String(200), primary_key=True)
    starts: Mapped[int] = mapped_column(default=0)


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
    promo_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    """The promo code the order was bought with (promo_redemptions has the redemption)."""
    discount: Mapped[int] = mapped_column(default=0)
    """What discounts took off `amount` (promo code, group discount), in minor units."""
    entitlement_id: Mapped[int | None] = mapped_column(
        ForeignKey("entitlements.id", ondelete="SET NULL"), nullable=True
    )
    team_id: Mapped[str | None] = mapped_column(
        ForeignKey("teams.id", ondelete="SET NULL"), nullable=True, index=True
    )
    """A seats order's team: named at checkout ("buy more"), or the team its payment made."""
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


class TeamRow(Base):
    """An organisation that buys seats (services/teams.py). `changes` is bumped first in
    every transaction that hands out, frees or ends its seats: the row lock (SQLite: the
    write lock) makes those take turns, so two joins cannot both take the last seat."""

    __tablename__ = "teams"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    """`tm_<random>`."""
    name: Mapped[str] = mapped_column(String(100))
    join_code: Mapped[str] = mapped_column(String(16), unique=True)
    """Upper case, from services/codes.py's alphabet; a new one invalidates the old link."""
    changes: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SeatBlockRow(Base):
    """N seats of a plan for dates: what one paid seats order (or, later, a class) brings a
    team. Each seat is held by at most one member at a time (TeamMemberRow.block_id)."""

    __tablename__ = "seat_blocks"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    order_id: Mapped[str | None] = mapped_column(
        ForeignKey("orders.id", ondelete="SET NULL"), nullable=True, unique=True
    )
    source: Mapped[str] = mapped_column(String(200), default="")
    plan: Mapped[str] = mapped_column(String(32))
    quantity: Mapped[int] = mapped_column()
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """Follows the order's subscription: renewals move it on, a cancellation ends it."""
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """A refund: the seats (and their holders' grants) ended then."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TeamMemberRow(Base):
    """An account in a team: an admin, a seat holder, or both. A row with neither (a
    removed member) is not in the team any more."""

    __tablename__ = "team_members"
    __table_args__ = (UniqueConstraint("team_id", "account_id", name="uq_team_members_account"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    admin: Mapped[bool] = mapped_column(default=False)
    block_id: Mapped[int | None] = mapped_column(
        ForeignKey("seat_blocks.id", ondelete="SET NULL"), nullable=True, index=True
    )
    """The seat block the member holds a seat of (None: no seat)."""
    entitlement_id: Mapped[int | None] = mapped_column(
        ForeignKey("entitlements.id", ondelete="SET NULL"), nullable=True
    )
    """The member's `seat` grant for the seat held now."""
    seats_taken: Mapped[int] = mapped_column(default=0)
    """How often the member took a seat (each grant's once key counts with it)."""
    seat_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BillingProfileRow(Base):
    """Whom an account's invoices are made out to; the learner edits it (account page,
    `PUT /api/billing/profile`). An invoice copies it when issued, so an edit changes only
    the invoices issued after it."""

    __tablename__ = "billing_profiles"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(Text, default="")
    """The postal address, one line per line."""
    vat_id: Mapped[str] = mapped_column(String(32), default="")
    country: Mapped[str] = mapped_column(String(2))
    """ISO 3166-1 alpha-2, upper case."""
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class InvoiceCounterRow(Base):
    """The last number taken in a series (invoices, credit notes) in a year. A number is
    taken by one `INSERT ... ON CONFLICT DO UPDATE SET last = last + 1 RETURNING last` in
    the transaction that stores its invoice: the row lock holds concurrent payments back
    until that commits, and a rollback gives the number back, so numbers are unique and
    leave no gaps."""

    __tablename__ = "invoice_counters"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    year: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column()


class InvoiceRow(Base):
    """An issued invoice or credit note. `content` is everything it says (seller, buyer,
    lines, taxes, totals) as it was when issued, and the PDF is drawn from it alone; rows
    are never changed or deleted."""

    __tablename__ = "invoices"
    __table_args__ = (UniqueConstraint("kind", "year", "sequence", name="uq_invoices_sequence"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    """`2026-000123`; credit notes `CN-2026-000007`."""
    kind: Mapped[str] = mapped_column(String(16))
    year: Mapped[int] = mapped_column()
    sequence: Mapped[int] = mapped_column()
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    order_id: Mapped[str | None] = mapped_column(
        ForeignKey("orders.id", ondelete="SET NULL"), nullable=True, index=True
    )
    credited_id: Mapped[int | None] = mapped_column(
        ForeignKey("invoices.id", ondelete="SET NULL"), nullable=True, index=True
    )
    """A credit note's invoice."""
    once_key: Mapped[str] = mapped_column(String(255), unique=True)
    """What it is for, so it is issued once however often that is reported: `order:<id>`
    (an order's first payment), `stripe:<invoice id>` (a renewal), `credit:<invoice id>`."""
    provider_invoice_id: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    charge_id: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[int] = mapped_column()
    """In the currency's minor unit, tax included; negative on a credit note."""
    tax: Mapped[int] = mapped_column()
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    content: Mapped[dict[str, Any]] = mapped_column(JSON)


class PromoCodeRow(Base):
    """A promo code an admin made (services/billing/promos.py). `used` counts the
    redemptions that hold it (reserved at checkout, or paid); it is only changed by one
    conditional UPDATE (`... WHERE max_redemptions IS NULL OR used < max_redemptions`), so
    concurrent checkouts cannot take it past `max_redemptions`."""

    __tablename__ = "promo_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    """Upper case: codes are matched case-insensitively."""
    percent: Mapped[int | None] = mapped_column(nullable=True)
    """Percent off (1-99); or else `amount_off` in `currency`."""
    amount_off: Mapped[int | None] = mapped_column(nullable=True)
    """Minor units off each unit (each seat)."""
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    max_redemptions: Mapped[int | None] = mapped_column(nullable=True)
    used: Mapped[int] = mapped_column(default=0)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    first_purchase_only: Mapped[bool] = mapped_column(default=False)
    plans: Mapped[list[str]] = mapped_column(JSON, default=list)
    """The plans it is good for; empty: every plan."""
    note: Mapped[str] = mapped_column(String(200), default="")
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    """The admin who made it (None: the operator's local CLI)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PromoRedemptionRow(Base):
    """One use of a promo code by one order."""

    __tablename__ = "promo_redemptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    promo_id: Mapped[int] = mapped_column(
        ForeignKey("promo_codes.id", ondelete="CASCADE"), index=True
    )
    code: Mapped[str] = mapped_column(String(40))
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    discount: Mapped[int] = mapped_column()
    """What it took off the order, in minor units of `currency`."""
    currency: Mapped[str] = mapped_column(String(3))
    reserved_at: Mapped[datetime] = mapped_column(UTCDateTime())
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """When it was redeemed (paid) or released."""


class ClassRow(Base):
    """A class or workshop an instructor runs (services/classes.py). `changes` is bumped
    first in every class start's admission: the row lock (SQLite: the write lock) makes
    starts of one class take turns, so its seats cannot be overrun."""

    __tablename__ = "classes"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    """`cl_<random>`."""
    title: Mapped[str] = mapped_column(String(200))
    instructor_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    content: Mapped[list[str]] = mapped_column(JSON)
    """Content keys (`challenges/x`, `tutorials/x`, `courses/x`) or bare playground names."""
    seats: Mapped[int] = mapped_column()
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    guests: Mapped[bool] = mapped_column(default=False)
    join_code: Mapped[str] = mapped_column(String(16), unique=True)
    """Upper case, from services/codes.py's alphabet."""
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """Ended early by its instructor; None: runs to `ends_at`."""
    changes: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    region: Mapped[str] = mapped_column(String(32), default="", server_default="")
    """A region of the regions file every start of the class runs in (migration 0016); "":
    each learner's own country decides."""


class ClassMemberRow(Base):
    """A learner in a class: an account that joined with the code, or a guest account made
    for it. A removed member keeps the row (and results), with `removed_at` set."""

    __tablename__ = "class_members"
    __table_args__ = (UniqueConstraint("class_id", "account_id", name="uq_class_members_account"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    class_id: Mapped[str] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    display_name: Mapped[str] = mapped_column(String(100))
    guest: Mapped[bool] = mapped_column(default=False)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime())
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ClassAttemptRow(Base):
    """An attempt started as a class member: what the board and the exports read."""

    __tablename__ = "class_attempts"

    attempt_id: Mapped[str] = mapped_column(
        ForeignKey("attempts.id", ondelete="CASCADE"), primary_key=True
    )
    class_id: Mapped[str] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column()
    hints: Mapped[list[str]] = mapped_column(JSON, default=list)
    """Tasks whose hintcheck showed a hint, noted whenever the class's results are read (a
    task result keeps only its latest hint, cleared once the task completes)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ClassBroadcastRow(Base):
    """A message from the instructor to every member (`account_id` None) or one."""

    __tablename__ = "class_broadcasts"

    id: Mapped[int] = mapped_column(primary_key=True)
    class_id: Mapped[str] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int | None] = mapped_column(nullable=True)
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# -- LTI 1.3 (issue 9 part 7; services/lti/) ----------------------------------------------


class LtiPlatformRow(Base):
    """An LMS registered by an admin: whose id_tokens labyard accepts, and where its keys,
    sign-in and token endpoints are."""

    __tablename__ = "lti_platforms"
    __table_args__ = (UniqueConstraint("issuer", "client_id", name="uq_lti_platforms_client"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    issuer: Mapped[str] = mapped_column(String(255))
    client_id: Mapped[str] = mapped_column(String(255))
    """The id the platform gave labyard: the `aud` of its id_tokens."""
    jwks_url: Mapped[str] = mapped_column(String(1000))
    auth_url: Mapped[str] = mapped_column(String(1000))
    """The OIDC authorization endpoint the login initiation redirects to."""
    token_url: Mapped[str] = mapped_column(String(1000))
    """OAuth2 client-credentials endpoint, for grades (AGS) and the roster (NRPS)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    deployments: Mapped[list[LtiDeploymentRow]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="LtiDeploymentRow.id"
    )


class LtiDeploymentRow(Base):
    """A deployment id of a platform; launches naming any other are refused."""

    __tablename__ = "lti_deployments"
    __table_args__ = (
        UniqueConstraint("platform_id", "deployment_id", name="uq_lti_deployments_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_id: Mapped[int] = mapped_column(
        ForeignKey("lti_platforms.id", ondelete="CASCADE"), index=True
    )
    deployment_id: Mapped[str] = mapped_column(String(255))


class LtiNonceRow(Base):
    """A launch's nonce, kept until its id_token expires: a second launch with it is a
    replay. The primary key makes "seen already" one failed INSERT, race-free."""

    __tablename__ = "lti_nonces"

    platform_id: Mapped[int] = mapped_column(
        ForeignKey("lti_platforms.id", ondelete="CASCADE"), primary_key=True
    )
    nonce: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class LtiIdentityRow(Base):
    """A platform's user (`iss` + `sub`) and the labyard account made for them. Such an
    account has no usable password: it signs in only through the LMS."""

    __tablename__ = "lti_identities"
    __table_args__ = (UniqueConstraint("platform_id", "sub", name="uq_lti_identities_sub"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_id: Mapped[int] = mapped_column(
        ForeignKey("lti_platforms.id", ondelete="CASCADE"), index=True
    )
    sub: Mapped[str] = mapped_column(String(255))
    account_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    """As the LMS last said (its `name` claim), for rosters and grade lists."""
    email: Mapped[str] = mapped_column(String(254), default="")
    """The LMS's `email` claim, shown only; never used to match an account."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_launch_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LtiContextRow(Base):
    """A course (LTI context) of a platform, with its service endpoints from the launches."""

    __tablename__ = "lti_contexts"
    __table_args__ = (
        UniqueConstraint("platform_id", "context_id", name="uq_lti_contexts_context"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_id: Mapped[int] = mapped_column(
        ForeignKey("lti_platforms.id", ondelete="CASCADE"), index=True
    )
    context_id: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(255), default="")
    memberships_url: Mapped[str] = mapped_column(String(1000), default="")
    """NRPS `context_memberships_url` ('' when the platform offers no roster)."""
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LtiLinkRow(Base):
    """A resource link in a course: what it opens (`challenges/<slug>`) and its line item."""

    __tablename__ = "lti_links"
    __table_args__ = (
        UniqueConstraint("context_row_id", "resource_link_id", name="uq_lti_links_link"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    context_row_id: Mapped[int] = mapped_column(
        ForeignKey("lti_contexts.id", ondelete="CASCADE"), index=True
    )
    deployment_id: Mapped[str] = mapped_column(String(255))
    resource_link_id: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(255), default="")
    content_key: Mapped[str] = mapped_column(String(200), index=True)
    lineitem_url: Mapped[str] = mapped_column(String(1000), default="")
    """AGS `lineitem` of the link ('' : found or made under `lineitems_url` when needed)."""
    lineitems_url: Mapped[str] = mapped_column(String(1000), default="")
    ags_scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LtiGradeRow(Base):
    """One identity on one resource link: its roles at the latest launch (instructors may
    read the course's grades and roster) and the score last sent to the platform."""

    __tablename__ = "lti_grades"
    __table_args__ = (UniqueConstraint("link_id", "identity_id", name="uq_lti_grades_member"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("lti_links.id", ondelete="CASCADE"), index=True)
    identity_id: Mapped[int] = mapped_column(
        ForeignKey("lti_identities.id", ondelete="CASCADE"), index=True
    )
    instructor: Mapped[bool] = mapped_column(default=False)
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    completed: Mapped[int | None] = mapped_column(nullable=True)
    """Tasks completed in the best attempt, as last sent (None: nothing sent yet)."""
    total: Mapped[int | None] = mapped_column(nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="")
    """'' (never sent), `sent` or `failed`."""
    error: Mapped[str] = mapped_column(String(500), default="")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PoolRow(Base):
    """A warm pool (services/pools.py, migration 0011): playgrounds of one manifest kept
    pre-started so a start is a claim. Its warm playgrounds point here by `pool_key`."""

    __tablename__ = "pools"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    count: Mapped[int] = mapped_column()
    """Warm playgrounds to have before claims begin."""
    reserve: Mapped[int] = mapped_column()
    """Warm playgrounds kept topped up once claims have used up `count`."""
    claimed: Mapped[int] = mapped_column(default=0)
    """Claims made from it so far."""
    operator: Mapped[bool] = mapped_column(default=False)
    """Made from LABYARD_POOLS (released once the setting no longer names it)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    region: Mapped[str] = mapped_column(String(32), default="", server_default="")
    """The region its playgrounds are warmed in (a pinned class's, migration 0016); "": the
    default region."""


# -- looking over a learner's shoulder (issue 9 part 4; services/looks.py) ---------------


class LookRow(Base):
    """One look at a class member's terminal: who watched whom, in which class, playground,
    machine and tab, from when to when (`ended_at` None: still watching), and whether the
    learner let the watcher type during it."""

    __tablename__ = "looks"

    id: Mapped[int] = mapped_column(primary_key=True)
    class_id: Mapped[str] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"), index=True)
    watcher_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    learner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    playground_id: Mapped[str] = mapped_column(String(16), index=True)
    """Not a foreign key: the log outlives the playground."""
    machine: Mapped[str] = mapped_column(String(64))
    tab: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    input_granted: Mapped[bool] = mapped_column(default=False)


# -- saved playgrounds and forks (issue 10 part 3; services/saved.py) --------------------


class SavedPlaygroundRow(Base):
    """A playground's machines saved as images (`images`, in machine order) with the
    manifest that starts them. `kind` `saved`: in its owner's catalog under `name`; `fork`:
    made for one fork, started as `playground_id`, removed once that playground is gone."""

    __tablename__ = "saved_playgrounds"
    __table_args__ = (UniqueConstraint("owner", "name", name="uq_saved_playgrounds_owner_name"),)

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    images: Mapped[list[str]] = mapped_column(JSON)
    source_playground_id: Mapped[str] = mapped_column(String(16))
    """Not a foreign key: the saved playground outlives the one it came from."""
    playground_id: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
