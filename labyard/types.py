"""labyard's shared vocabulary: the states and kinds that the store keeps, the services
decide, the API serves and the CLI shows, and the playground as all of them see it.

Plain enums and dataclasses with no labyard imports, so that every layer (and the remote
CLI, which loads no server code) can use them. Starlette's `types.py` is the model.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any


class MachineState(enum.StrEnum):
    """A machine as its runtime driver sees it (runtime/base.py)."""

    PENDING = "pending"
    """Being created, booting, or its image still arriving: not to be started again."""
    RUNNING = "running"
    STOPPED = "stopped"
    """Halted, with its writable layer kept: `start` brings it back as it was."""
    FAILED = "failed"
    """It ended by itself or could not be made; a reason says why."""
    MISSING = "missing"
    """Nothing of it exists."""


class PlaygroundState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"
    """Its machines vanished under it (host reboot, crash): stop or destroy it."""


class Role(enum.StrEnum):
    LEARNER = "learner"
    AUTHOR = "author"
    ADMIN = "admin"
    INSTRUCTOR = "instructor"
    """Runs classes (services/classes.py); admins may do everything an instructor may."""
    GUEST = "guest"
    """A class's guest: no password, starts nothing but its class's content, deleted with it."""


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


class InvoiceKind(enum.StrEnum):
    INVOICE = "invoice"
    CREDIT_NOTE = "credit_note"
    """A refund's: the invoice it credits, negated."""


class RedemptionStatus(enum.StrEnum):
    RESERVED = "reserved"
    """Taken at checkout; the order is not paid yet."""
    REDEEMED = "redeemed"
    """The order was paid."""
    RELEASED = "released"
    """The order was cancelled or failed before payment: the code's use was given back."""


@dataclass(frozen=True)
class MachineView:
    name: str
    image: str
    address: str
    """On its playground network, for the user to see (the control plane never dials it)."""
    state: str
    reason: str = ""
    """Why it failed (a `failed` machine), in a sentence for its user."""


@dataclass(frozen=True)
class Playground:
    """A playground as the API serves it and the CLI shows it (JSON both ways)."""

    id: str
    name: str
    title: str
    owner: str
    state: str
    machines: list[MachineView]
    created_at: datetime
    expires_at: datetime
    notice: str = ""
    """A sentence for its owner: in a start's response, where it runs when that is not the
    learner's region (theirs was full or down), said once and not stored; otherwise the
    stored one on why it stopped (its server drained), kept until it starts again."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "title": self.title,
            "owner": self.owner,
            "state": self.state,
            "machines": [asdict(m) for m in self.machines],
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            **({"notice": self.notice} if self.notice else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Playground:
        """From the API's JSON (fields it does not know are ignored)."""
        machines = [
            MachineView(m["name"], m["image"], m["address"], m["state"], m.get("reason", ""))
            for m in data["machines"]
        ]
        return cls(
            id=data["id"],
            name=data["name"],
            title=data["title"],
            owner=data["owner"],
            state=data["state"],
            machines=machines,
            created_at=datetime.fromisoformat(data["created_at"]),
            expires_at=datetime.fromisoformat(data["expires_at"]),
            notice=str(data.get("notice", "")),
        )
