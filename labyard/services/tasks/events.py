"""The events an attempt's subscribers receive (the SSE stream carries them as JSON).

state    the whole attempt (always the first event of a stream)
task     one task's state or hint changed
attempt  the attempt was solved, failed or ended (the stream's last event)
"""

from __future__ import annotations

from labyard.services.tasks.audience import Event
from labyard.services.tasks.records import AttemptRecord


def state_event(record: AttemptRecord) -> Event:
    return {"type": "state", "attempt": record.to_json()}


def task_event(record: AttemptRecord, task: str) -> Event:
    return {
        "type": "task",
        "attempt_id": record.id,
        "task": record.tasks[task].to_json(task, record.spec),
    }


def attempt_event(record: AttemptRecord) -> Event:
    return {
        "type": "attempt",
        "attempt_id": record.id,
        "state": record.state,
        "message": record.message,
        "finished_at": record.finished_at.isoformat() if record.finished_at else None,
    }
