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
