"""Running the room: members start the class's content, the instructor broadcasts, gives
extra time, removes members and ends (or deletes) the class.

Starting: class_starts.py (a claim from the class's warm pool, else a queued cold start;
a challenge, tutorial or lesson as an attempt in it). Admission checks the class's seats,
not the member's plan (class_admission.py), and the usage record says `class`.

Ending destroys every machine of the class (in parallel: within seconds, well inside the
promised minute) and keeps the results; members can start nothing of it afterwards.
Presence (who is online) is kept here, in memory: a member's class page or terminal seen
within ONLINE_S.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from labyard.content.loader import Item
from labyard.errors import Conflict, InvalidInput, LabyardError, NotFound
from labyard.manifest import Manifest
from labyard.services.accounts import User
from labyard.services.class_admission import covers, live_playgrounds, not_running_message
from labyard.services.class_starts import ClassStarts, Queued, Started
from labyard.services.classes import CONTENT_KEY, Classes, may_run, now, state_of
from labyard.services.playgrounds import Playgrounds, aware
from labyard.services.pools import Pools
from labyard.services.tasks import Attempts
from labyard.store import AttemptRow, PlaygroundRow
from labyard.store.models import ClassBroadcastRow, ClassMemberRow
from labyard.types import AttemptState, PlaygroundState

ONLINE_S = 30.0
EXTENSIONS_MIN = (10, 30, 60)
MAX_MESSAGE = 1000


@dataclass(frozen=True)
class Broadcast:
    id: int
    account_id: int | None
    """None: to everybody."""
    message: str
    created_at: Any

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "to": self.account_id,
            "message": self.message,
            "created_at": self.created_at.isoformat(),
        }


class Presence:
    """When each member was last seen on a class page (monotonic seconds)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, int], float] = {}

    def seen(self, class_id: str, account_id: int) -> None:
        self._seen[(class_id, account_id)] = time.monotonic()

    def online(self, class_id: str, account_id: int) -> bool:
        last = self._seen.get((class_id, account_id))
        return last is not None and time.monotonic() - last < ONLINE_S


class ClassRoom:
    def __init__(
        self,
        classes: Classes,
        playgrounds: Playgrounds,
        attempts: Attempts,
        pools: Pools | None = None,
    ) -> None:
        self.classes = classes
        self.playgrounds = playgrounds
        self.attempts = attempts
        self.db = classes.db
        self.starts = ClassStarts(playgrounds, attempts, pools)
        self.presence = Presence()

    # -- starting ------------------------------------------------------------------------

    def _target(self, key: str) -> tuple[Item | None, Manifest]:
        """What `key` starts: a content item (with its playground) or a bare playground."""
        if CONTENT_KEY.match(key):
            item = self.attempts.item(key)
            if item.kind not in ("challenge", "tutorial", "lesson"):
                raise InvalidInput(f"{key!r} is a {item.kind}; start one of its lessons")
            return item, self.attempts.manifest_for(item)
        return None, self.classes.catalog.get(key).manifest

    def _check_start(self, user: User, class_id: str, key: str) -> None:
        self.classes.member_of(user, class_id)  # Forbidden once removed
        with self.db.session() as session:
            row = self.classes.visible(session, user, class_id)
            if state_of(row, now()) != "running":
                raise Conflict(
                    not_running_message(row, now()) + "; its content cannot be started now"
                )
            if not covers(list(row.content), key):
                raise NotFound(f"class {row.title!r} does not use {key!r}")

    async def start(
        self, user: User, class_id: str, key: str, country: str | None = None
    ) -> Started | Queued:
        """Start the member's class content: Started once it runs, else Queued with the
        position (class_starts.py). Starting what runs already gives it; one that failed is
        destroyed and started anew. It runs in the class's region when the class is pinned
        to one, else in that of `country` (where the member is, if known)."""
        self._check_start(user, class_id, key)
        self.presence.seen(class_id, user.id)
        current = await self.current(user, class_id)
        if isinstance(current, Started) and current.playground.state == PlaygroundState.FAILED:
            # Its machines died (a lost server, an init that ended): a new one, not the wreck.
            await self._destroy([current.playground.id])
            current = None
        if isinstance(current, Queued) or (current is not None and current.content_key == key):
            return current
        if current is not None:
            raise Conflict(f"you have {current.content_key} running for this class; end it first")
        item, manifest = self._target(key)
        return await self.starts.start(user, class_id, key, item, manifest, country)

    async def current(self, user: User, class_id: str) -> Started | Queued | None:
        """The member's class start: queued, running, or None (nothing running)."""
        self.classes.member_of(user, class_id)
        return await self.starts.current(user, class_id, self._item_or_none)

    def _item_or_none(self, key: str) -> Item | None:
        try:
            return self._target(key)[0]
        except LabyardError:
            return None

    async def end_mine(self, user: User, class_id: str) -> None:
        """The member ends their class playground (and its attempt), freeing the seat."""
        self.classes.member_of(user, class_id)
        with self.db.session() as session:
            ids = live_playgrounds(session, class_id, user.id)
        if not ids:
            raise NotFound("you have no playground of this class running")
        await self._destroy(ids)

    # -- the room ------------------------------------------------------------------------

    def broadcast(
        self, user: User, class_id: str, message: str, account_id: int | None = None
    ) -> Broadcast:
        message = message.strip()
        with self.db.session() as session:
            self.classes.instructed(session, user, class_id)  # 404/403 before all else
            if not 1 <= len(message) <= MAX_MESSAGE:
                raise InvalidInput(f"a message is 1 to {MAX_MESSAGE} characters")
            if (
                account_id is not None
                and self.classes.membership(session, class_id, account_id) is None
            ):
                raise NotFound(f"no member {account_id} in class {class_id}")
            row = ClassBroadcastRow(
                class_id=class_id, account_id=account_id, message=message, created_at=now()
            )
            session.add(row)
            session.flush()
            return _broadcast(row)

    def broadcasts(self, user: User, class_id: str, after: int = 0) -> builtins.list[Broadcast]:
        """Messages the user may read, oldest first: all of them for the instructor, a
        member's own and everybody's for a member."""
        with self.db.session() as session:
            row = self.classes.visible(session, user, class_id)
            query = select(ClassBroadcastRow).where(
                ClassBroadcastRow.class_id == class_id, ClassBroadcastRow.id > after
            )
            if not may_run(user, row):
                query = query.where(
                    ClassBroadcastRow.account_id.is_(None)
                    | (ClassBroadcastRow.account_id == user.id)
                )
            return [_broadcast(b) for b in session.scalars(query.order_by(ClassBroadcastRow.id))]

    async def extend(
        self, user: User, class_id: str, minutes: int, account_id: int | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Give one member's (or every member's) class playground `minutes` more, never
        past the class's end. Returns each playground's new expiry."""
        with self.db.session() as session:
            row = self.classes.instructed(session, user, class_id)  # 404/403 before all else
            if minutes not in EXTENSIONS_MIN:
                raise InvalidInput(f"extend by {', '.join(map(str, EXTENSIONS_MIN))} minutes")
            if state_of(row, now()) != "running":
                raise Conflict(not_running_message(row, now()) + "; there is nothing to extend")
            ids = live_playgrounds(session, class_id, account_id)
            ends = row.ends_at
            expiries = {
                p.id: aware(p.expires_at)
                for p in session.scalars(select(PlaygroundRow).where(PlaygroundRow.id.in_(ids)))
            }
        extended = []
        for playground_id, expires in expiries.items():
            room = (ends - max(expires, now())).total_seconds()
            seconds = int(min(minutes * 60, room))
            if seconds > 0:
                with contextlib.suppress(NotFound):  # destroyed meanwhile
                    found = await self.playgrounds.extend(playground_id, seconds)
                    extended.append(
                        {"playground_id": found.id, "expires_at": found.expires_at.isoformat()}
                    )
        return extended

    async def remove(self, user: User, class_id: str, account_id: int) -> None:
        """Remove a member: their class machines go, and they start nothing of it again."""
        self.classes.remove(user, class_id, account_id)
        with self.db.session() as session:
            ids = live_playgrounds(session, class_id, account_id)
        await self._destroy(ids)

    async def end(self, user: User, class_id: str) -> None:
        """End the class now: every machine of it is destroyed, the results stay."""
        with self.db.session() as session:
            row = self.classes.instructed(session, user, class_id)
            if row.ended_at is None:
                row.ended_at = now()
        await self.starts.end_class(class_id)
        with self.db.session() as session:
            ids = live_playgrounds(session, class_id)
        await self._destroy(ids)

    async def delete(self, user: User, class_id: str) -> None:
        """End the class and delete it, its results and its guest accounts."""
        await self.end(user, class_id)
        self.classes.delete_rows(class_id)

    async def _destroy(self, playground_ids: builtins.list[str]) -> None:
        """Destroy playgrounds at once, ending their attempts (checks stop, results stay)."""
        with self.db.session() as session:
            found = session.execute(
                select(AttemptRow.playground_id, AttemptRow.id).where(
                    AttemptRow.playground_id.in_(playground_ids),
                    AttemptRow.state == AttemptState.ACTIVE,
                )
            )
            attempts = {str(playground_id): attempt_id for playground_id, attempt_id in found}

        async def one(playground_id: str) -> None:
            with contextlib.suppress(NotFound):
                if playground_id in attempts:
                    await self.attempts.end(attempts[playground_id])
                else:
                    await self.playgrounds.destroy(playground_id)

        await asyncio.gather(*(one(p) for p in playground_ids))


def _broadcast(row: ClassBroadcastRow) -> Broadcast:
    return Broadcast(row.id, row.account_id, row.message, aware(row.created_at))


def members_of(session: Any, class_id: str) -> builtins.list[ClassMemberRow]:
    return list(
        session.scalars(
            select(ClassMemberRow)
            .where(ClassMemberRow.class_id == class_id)
            .order_by(ClassMemberRow.id)
        )
    )
