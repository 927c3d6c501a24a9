"""Who watches each attempt: live subscribers get every event, and their presence is what
keeps its checks running.

Pause rule: an attempt's checks run while someone subscribes to its events, and for
`idle_pause_s` after the last subscriber left (or after the attempt was started, looked at
or answered). Past that the learner has left: checks pause and their SSH connections
close. The next subscriber (a page reconnecting) or answer resumes them at once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

Event = dict[str, Any]
QUEUE_SIZE = 256
RESYNC: Event = {"type": "resync"}
"""Queued instead of events a slow subscriber missed: it should fetch the full state."""


@dataclass
class _Room:
    queues: set[asyncio.Queue[Event]] = field(default_factory=set)
    last_seen: float = field(default_factory=time.monotonic)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


class Audience:
    def __init__(self, idle_pause_s: float | None = 60.0) -> None:
        self.idle_pause_s = idle_pause_s
        """None: never pause (the CLI's `content test` has nobody watching)."""
        self._rooms: dict[str, _Room] = {}

    def _room(self, attempt_id: str) -> _Room:
        return self._rooms.setdefault(attempt_id, _Room())

    def subscribe(self, attempt_id: str) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_SIZE)
        room = self._room(attempt_id)
        room.queues.add(queue)
        room.arrived.set()
        return queue

    def unsubscribe(self, attempt_id: str, queue: asyncio.Queue[Event]) -> None:
        room = self._rooms.get(attempt_id)  # gone if the attempt finished meanwhile
        if room is not None:
            room.queues.discard(queue)
            room.last_seen = time.monotonic()

    def touch(self, attempt_id: str) -> None:
        """The learner did something with the attempt: count it as presence."""
        room = self._room(attempt_id)
        room.last_seen = time.monotonic()
        room.arrived.set()

    def subscribers(self, attempt_id: str) -> int:
        return len(self._room(attempt_id).queues)

    def present(self, attempt_id: str) -> bool:
        room = self._room(attempt_id)
        if self.idle_pause_s is None or room.queues:
            return True
        return time.monotonic() - room.last_seen < self.idle_pause_s

    async def wait_present(self, attempt_id: str) -> None:
        room = self._room(attempt_id)
        room.arrived.clear()
        while not self.present(attempt_id):
            await room.arrived.wait()
            room.arrived.clear()

    def publish(self, attempt_id: str, event: Event) -> None:
        for queue in self._room(attempt_id).queues:
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(RESYNC)

    def forget(self, attempt_id: str) -> None:
        """Drop an attempt's room once nobody can subscribe to it any more."""
        room = self._rooms.get(attempt_id)
        if room is not None and not room.queues:
            del self._rooms[attempt_id]
