"""The cold-start queue: starts that found no warm playground wait their turn here.

At most `cap` of them boot at a time (a room of forty joining in the same minute must not
make forty boots fight over two cores until all of them time out); the rest wait in the
order they came, each with a ticket whose position the learner sees ("you are 4th"). A
ticket ends `ready` (its playground id) or `failed` (the error the start raised), and is
kept for `KEEP_S` after that so a slow poller still finds it.

Tickets live in this process only: a server that restarts loses its queue, and the
reconciler removes what the starts under way had made (they are `starting` rows no process
holds the lock of). The learner starts again and queues anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from labyard.errors import LabyardError, NotFound, RuntimeFailure

log = logging.getLogger(__name__)

COLD_STARTS_AT_A_TIME = 20
KEEP_S = 600.0
"""How long a finished ticket can still be polled."""
_TICKET_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"

Job = Callable[[], Awaitable[str]]
"""A cold start: returns the id of the playground it started (or claimed)."""


class TicketState:
    WAITING = "waiting"
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class Queued:
    """A start that is not done yet: where it is in the queue."""

    ticket: str
    key: str
    state: str
    """`waiting` (for a slot), `starting` (booting now) or `failed`."""
    position: int
    """1 for the next to start, 2 after it, ...; 0 once it is starting."""
    error: str = ""

    @property
    def message(self) -> str:
        if self.state == TicketState.WAITING:
            return f"you are {ordinal(self.position)} in the queue; your playground starts soon"
        if self.state == TicketState.STARTING:
            return "your playground is starting"
        return f"your playground could not be started: {self.error}"

    def to_json(self) -> dict[str, Any]:
        return {
            "ticket": self.ticket,
            "key": self.key,
            "state": self.state,
            "position": self.position,
            "message": self.message,
        }


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@dataclass
class Ticket:
    id: str
    owner: str
    key: str
    job: Job
    state: str = TicketState.WAITING
    playground_id: str = ""
    error: BaseException | None = None
    finished_at: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class StartQueue:
    def __init__(self, cap: int = COLD_STARTS_AT_A_TIME) -> None:
        if cap < 1:
            raise ValueError("a start queue needs room for at least one start")
        self.cap = cap
        self._tickets: dict[str, Ticket] = {}
        self._waiting: deque[Ticket] = deque()
        self._running: set[asyncio.Task[None]] = set()
        self.most_at_once = 0
        """The most starts that ran at the same time (the tests check the cap with it)."""

    @property
    def starting(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def pending(self, owner: str, key: str) -> Ticket | None:
        """The owner's ticket for `key` still waiting or starting (a second start joins it)."""
        self._purge()
        for ticket in self._tickets.values():
            if (ticket.owner, ticket.key) == (owner, key) and ticket.finished_at is None:
                return ticket
        return None

    def submit(self, owner: str, key: str, job: Job) -> Ticket:
        ticket = Ticket(_new_ticket_id(), owner, key, job)
        self._tickets[ticket.id] = ticket
        self._waiting.append(ticket)
        self._dispatch()
        return ticket

    def get(self, ticket_id: str, owner: str | None = None) -> Ticket:
        self._purge()
        ticket = self._tickets.get(ticket_id)
        if ticket is None or (owner is not None and ticket.owner != owner):
            raise NotFound(f"no queued start {ticket_id!r}")
        return ticket

    def view(self, ticket: Ticket) -> Queued:
        position = 0
        if ticket.state == TicketState.WAITING:
            position = self._waiting.index(ticket) + 1
        error = ""
        if ticket.error is not None:
            error = ticket.error.message if isinstance(ticket.error, LabyardError) else "it failed"
        return Queued(ticket.id, ticket.key, ticket.state, position, error)

    async def wait(self, ticket: Ticket, timeout_s: float) -> None:
        """Until the ticket is ready or failed, or `timeout_s` passed (no error then)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await ticket.done.wait()

    async def close(self) -> None:
        """Cancel the starts under way (each rolls itself back) and drop the waiting ones."""
        self._waiting.clear()
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.wait(self._running)

    def _dispatch(self) -> None:
        while self._waiting and len(self._running) < self.cap:
            ticket = self._waiting.popleft()
            ticket.state = TicketState.STARTING
            task = asyncio.create_task(self._run(ticket), name=f"queued-start-{ticket.id}")
            self._running.add(task)
            task.add_done_callback(self._finished)
            self.most_at_once = max(self.most_at_once, len(self._running))

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._dispatch()

    async def _run(self, ticket: Ticket) -> None:
        try:
            ticket.playground_id = await ticket.job()
            ticket.state = TicketState.READY
        except asyncio.CancelledError:
            ticket.error = RuntimeFailure("the server stopped while your playground started")
            ticket.state = TicketState.FAILED
            raise
        except Exception as exc:  # the learner's poll gets it; the log keeps the detail
            log.warning("queued start %s of %s failed: %r", ticket.id, ticket.key, exc)
            ticket.error, ticket.state = exc, TicketState.FAILED
        finally:
            ticket.finished_at = time.monotonic()
            ticket.done.set()

    def _purge(self) -> None:
        cutoff = time.monotonic() - KEEP_S
        for ticket_id, ticket in list(self._tickets.items()):
            if ticket.finished_at is not None and ticket.finished_at < cutoff:
                del self._tickets[ticket_id]


def _new_ticket_id() -> str:
    return "".join(secrets.choice(_TICKET_ALPHABET) for _ in range(12))
