"""What should exist: playgrounds and their machines, as the database records them."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

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
    plan: Mapped[str] = mapped_column(String(32), default="free")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TokenRow(Base):
    """A browser session or an API token; only a hash of the secret is kept."""

    __tablename__ = "tokens"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    """`session` (cookie, expires) or `api` (CLI, until revoked)."""
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ShareRow(Base):
    """A public link to a port a playground exposes."""

    __tablename__ = "shares"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    playground_id: Mapped[str] = mapped_column(
        ForeignKey("playgrounds.id", ondelete="CASCADE"), index=True
    )
    machine: Mapped[str] = mapped_column(String(64))
    port: Mapped[int] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
