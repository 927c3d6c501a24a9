"""Looking over a learner's shoulder: who may watch whose terminal, the log, and the grant.

- A class's instructor (or an admin) may watch the terminal of a member of that class (not
  removed), in the member's class playground only: `locate` checks that and finds the
  terminal; once the view shows, `begin` records the look (class, watcher, learner,
  playground, machine, tab, start) and `finish` its end.
- The view is read-only (look_terminals.py: a read-only tmux client, and no write path in
  the socket). Only the learner watched may `grant` input for one look; the watcher then
  opens a separate input channel (`input_grant`), which ends when the learner `revoke`s it
  or the look finishes. The log says whether input was ever granted during a look.
- The learner's terminal shows a banner while any look at their playground is open: the
  terminal socket `subscribe`s to the playground's changes and reads `at(playground_id)`.

Open looks live in this process's memory (the log is in the database): a look left open
by a crash shows `live: false` with no end. Everything that changes an open look (begin,
finish, grant, revoke) runs on the event loop: it sets the asyncio events sockets wait on.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labyard.errors import Conflict, Forbidden, NotFound
from labyard.services.accounts import User
from labyard.services.class_admission import live_playgrounds
from labyard.services.classes import Classes, may_run, now
from labyard.services.owners import owner_of
from labyard.services.playgrounds import Playgrounds
from labyard.services.terminals import DEFAULT_TAB, check_tab
from labyard.store import PlaygroundRow, UserRow
from labyard.store.models import ClassMemberRow, LookRow


@dataclass(frozen=True)
class Look:
    """One look, as the log records it."""

    id: int
    class_id: str
    watcher_id: int
    watcher: str
    """The watcher's email address."""
    learner_id: int
    learner: str
    """The learner's display name in the class."""
    playground_id: str
    machine: str
    tab: str
    started_at: datetime
    ended_at: datetime | None
    input_granted: bool
    live: bool = False
    """Open now, in this server process."""
    typing: bool = False
    """The watcher may type right now (granted and not revoked)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "class_id": self.class_id,
            "watcher_id": self.watcher_id,
            "watcher": self.watcher,
            "learner_id": self.learner_id,
            "learner": self.learner,
            "playground_id": self.playground_id,
            "machine": self.machine,
            "tab": self.tab,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "input_granted": self.input_granted,
            "live": self.live,
            "typing": self.typing,
        }


@dataclass(frozen=True)
class Target:
    """The terminal a look attaches to, as the learner's own terminal does."""

    playground_id: str
    machine: str
    tab: str
    owner: str
    class_id: str
    learner_id: int
    learner: str
    """The learner's display name in the class."""
    machines: tuple[str, ...] = ()
    """All machines of the playground (the watcher may switch)."""


@dataclass
class _Open:
    """An open look: its log entry, and the events its sockets wait on."""

    look: Look
    target: Target
    granted: bool = False
    grant_ended: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the current grant ends (revoked, or the look finished)."""


class Looks:
    def __init__(self, classes: Classes, playgrounds: Playgrounds) -> None:
        self.classes = classes
        self.playgrounds = playgrounds
        self.db = classes.db
        self._open: dict[int, _Open] = {}
        self._listeners: dict[str, set[asyncio.Queue[None]]] = {}

    # -- watching ------------------------------------------------------------------------

    async def locate(
        self,
        user: User,
        class_id: str,
        account_id: int,
        machine: str | None = None,
        tab: str = DEFAULT_TAB,
    ) -> Target:
        """Where a look at member `account_id`'s class terminal attaches. NotFound for
        anyone but the class's instructor (or an admin: Forbidden for its members), for a
        non-member, and for a machine the playground lacks; Conflict while the member has
        no class playground running."""
        check_tab(tab)
        with self.db.session() as session:
            self.classes.instructed(session, user, class_id)
            member = self._member(session, class_id, account_id)
            owner = owner_of(account_id)
            ids = [
                p
                for p in live_playgrounds(session, class_id, account_id)
                if (found := session.get(PlaygroundRow, p)) is not None and found.owner == owner
            ]
            if not ids:
                raise Conflict(f"{member.display_name} has no playground of this class running")
            learner = member.display_name
        playground = await self.playgrounds.get(ids[0], owner)
        names = [m.name for m in playground.machines]
        name = machine or names[0]
        if name not in names:
            raise NotFound(f"playground {playground.id} has no machine {name!r}")
        return Target(playground.id, name, tab, owner, class_id, account_id, learner, tuple(names))

    def begin(self, user: User, target: Target) -> Look:
        """Log a look at `target` (from `locate`) once its view shows; the learner's
        banner appears."""
        with self.db.session() as session:
            row = LookRow(
                class_id=target.class_id,
                watcher_id=user.id,
                learner_id=target.learner_id,
                playground_id=target.playground_id,
                machine=target.machine,
                tab=target.tab,
                started_at=now(),
                input_granted=False,
            )
            session.add(row)
            session.flush()
            look = replace(_look(row, user.email, target.learner), live=True)
        self._open[look.id] = _Open(look, target)
        self._changed(target.playground_id)
        return look

    @staticmethod
    def _member(session: Session, class_id: str, account_id: int) -> ClassMemberRow:
        found = session.scalar(
            select(ClassMemberRow).where(
                ClassMemberRow.class_id == class_id, ClassMemberRow.account_id == account_id
            )
        )
        if found is None or found.removed_at is not None:
            raise NotFound(f"no member {account_id} in class {class_id}")
        return found

    def finish(self, look_id: int) -> None:
        """The look's view closed: log its end; any grant ends with it."""
        opened = self._open.pop(look_id, None)
        with self.db.session() as session:
            row = session.get(LookRow, look_id)
            if row is not None and row.ended_at is None:
                row.ended_at = now()
        if opened is not None:
            opened.granted = False
            opened.grant_ended.set()
            self._changed(opened.target.playground_id)

    # -- the grant -----------------------------------------------------------------------

    def _learners_open(self, user: User, class_id: str, look_id: int) -> _Open:
        """An open look at `user`, in that class: NotFound for anyone else (the watcher
        included: only the learner watched decides) and for a look that has ended."""
        opened = self._open.get(look_id)
        if opened is None or opened.look.class_id != class_id:
            raise NotFound(f"no open look {look_id} in class {class_id}")
        if opened.look.learner_id != user.id:
            raise NotFound(f"no open look {look_id} at you in class {class_id}")
        return opened

    def grant(self, user: User, class_id: str, look_id: int) -> Look:
        """The learner lets the watcher type, for this look only."""
        opened = self._learners_open(user, class_id, look_id)
        if not opened.granted:
            with self.db.session() as session:
                row = session.get(LookRow, look_id)
                if row is not None:
                    row.input_granted = True
            opened.granted = True
            opened.grant_ended = asyncio.Event()
            opened.look = replace(opened.look, input_granted=True, typing=True)
            self._changed(opened.target.playground_id)
        return opened.look

    def revoke(self, user: User, class_id: str, look_id: int) -> Look:
        """The learner takes the keyboard back: the watcher's input channel closes."""
        opened = self._learners_open(user, class_id, look_id)
        if opened.granted:
            opened.granted = False
            opened.grant_ended.set()
            opened.look = replace(opened.look, typing=False)
            self._changed(opened.target.playground_id)
        return opened.look

    def input_grant(self, user: User, class_id: str, look_id: int) -> tuple[Target, asyncio.Event]:
        """For the watcher's input channel: where to type, and the event that ends the
        grant. NotFound unless it is the user's own open look; Forbidden until granted."""
        opened = self._open.get(look_id)
        if opened is None or opened.look.class_id != class_id or opened.look.watcher_id != user.id:
            raise NotFound(f"no open look {look_id} of yours in class {class_id}")
        if not opened.granted:
            raise Forbidden("the learner has not let you type in this terminal")
        return opened.target, opened.grant_ended

    # -- reading -------------------------------------------------------------------------

    def at(self, playground_id: str) -> builtins.list[Look]:
        """The open looks at a playground (for its owner's banner), oldest first."""
        found = [o.look for o in self._open.values() if o.target.playground_id == playground_id]
        return sorted(found, key=lambda look: look.id)

    def look(self, look_id: int) -> Look | None:
        opened = self._open.get(look_id)
        return opened.look if opened else None

    def log(self, user: User, class_id: str) -> builtins.list[Look]:
        """Every look of the class, newest first, for its instructor and admins; a member
        sees the looks at them. NotFound for anyone else."""
        with self.db.session() as session:
            row = self.classes.visible(session, user, class_id)
            query = select(LookRow).where(LookRow.class_id == class_id)
            if not may_run(user, row):
                query = query.where(LookRow.learner_id == user.id)
            rows = list(session.scalars(query.order_by(LookRow.id.desc())))
            emails = _emails(session, {r.watcher_id for r in rows})
            names = {
                m.account_id: m.display_name
                for m in session.scalars(
                    select(ClassMemberRow).where(ClassMemberRow.class_id == class_id)
                )
            }
            logged = [
                _look(r, emails.get(r.watcher_id, ""), names.get(r.learner_id, "")) for r in rows
            ]
        return [self.look(x.id) or x for x in logged]

    # -- change notices ------------------------------------------------------------------

    @contextlib.contextmanager
    def subscribe(self, playground_id: str) -> Iterator[asyncio.Queue[None]]:
        """A queue that gets an item whenever the open looks at the playground change."""
        queue: asyncio.Queue[None] = asyncio.Queue(maxsize=1)
        listeners = self._listeners.setdefault(playground_id, set())
        listeners.add(queue)
        try:
            yield queue
        finally:
            listeners.discard(queue)
            if not listeners:
                self._listeners.pop(playground_id, None)

    def _changed(self, playground_id: str) -> None:
        for queue in self._listeners.get(playground_id, ()):
            with contextlib.suppress(asyncio.QueueFull):  # one pending notice is enough
                queue.put_nowait(None)


def _emails(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    query = select(UserRow.id, UserRow.email).where(UserRow.id.in_(ids))
    return {user_id: email for user_id, email in session.execute(query)}


def _look(row: LookRow, watcher: str, learner: str) -> Look:
    return Look(
        row.id,
        row.class_id,
        row.watcher_id,
        watcher,
        row.learner_id,
        learner,
        row.playground_id,
        row.machine,
        row.tab,
        row.started_at,
        row.ended_at,
        row.input_granted,
    )
